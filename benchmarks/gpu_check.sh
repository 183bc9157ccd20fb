#!/usr/bin/env bash
# The GPU check of Calibrator(device="cuda") (issue 16, item 5), run once on a CUDA machine.
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh        # in the repository root
#
# Needs python3 with torch (CUDA), gpytorch, h5py, numpy, scipy, pytest and emcee; the
# repository is used from PYTHONPATH, uninstalled (nothing is installed here). Runs the
# device tests (test_device.py, and the emulator's CUDA tests) and then benchmarks/gpu.py
# (1024 walkers, an emulator on 2000 runs), each under its own time limit so that the
# whole takes under 6 minutes on an H100 host with 16 cores. Writes to $OUT: env.log,
# pytest.log, gpu.log, gpu.json. Exit status: 0 when both steps succeeded.
# GPU_BENCH_ARGS: more arguments for benchmarks/gpu.py (e.g. --quick, for a dry run).
set -u
OUT="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  nproc
  python3 -c 'import sys, torch, gpytorch, emcee, numpy, scipy; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("gpytorch", gpytorch.__version__, "emcee", emcee.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)'
  python3 -c 'import calib, emulators, simulators; print("calib from", calib.__file__)'
} 2>&1 | tee "$OUT/env.log"

# about 1 minute on an H100 (the CUDA sampling tests are bound by kernel-launch latency)
timeout 150 python3 -m pytest -q -ra -p no:cacheprovider \
  tests/calib/test_device.py tests/emulators/test_gp.py -k "cuda or device" \
  2>&1 | tee "$OUT/pytest.log"
rc_tests=${PIPESTATUS[0]}

# about 2 minutes: the CPU's 1024-walker calls take seconds each (capped by --budget-s)
# shellcheck disable=SC2086  # GPU_BENCH_ARGS is split on purpose
timeout 190 python3 benchmarks/gpu.py --output "$OUT/gpu.json" ${GPU_BENCH_ARGS:-} 2>&1 \
  | tee "$OUT/gpu.log"
rc_bench=${PIPESTATUS[0]}

echo "tests exit $rc_tests, benchmark exit $rc_bench (124: ran out of time)" | tee -a "$OUT/gpu.log"
[ "$rc_tests" -eq 0 ] && [ "$rc_bench" -eq 0 ]
