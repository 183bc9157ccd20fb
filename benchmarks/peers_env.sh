#!/usr/bin/env bash
# A virtual environment with the peer packages (surmise 1.0.0, SEPIA 1.2) for
# benchmarks/peer_runs.py, kept apart from the project's .venv: the peers are optional
# tools for one benchmark (benchmarks/peers.py), not dependencies of calib, and neither
# `make install` nor `make test` runs this script.
#
# Usage: benchmarks/peers_env.sh [VENV]            (VENV defaults to /tmp/peers-venv)
# Environment:
#   PYTHON        the interpreter that makes the venv (default python3; surmise 1.0.0
#                 needs Python >= 3.11)
#   SEPIA_SRC     a local copy of SEPIA's source (a folder with its setup.py); without it
#                 SEPIA is installed from git+https://github.com/lanl/SEPIA
#   SURMISE_WHEEL a local surmise wheel; without it, the first of
#                 /tmp/peerwheels/surmise-1.0.0-*.whl, else surmise==1.0.0 from PyPI
#
# A copy of SEPIA's source from a bare git mirror (its large example data may be absent,
# so archive only what the install and the ball-drop examples need):
#   git --git-dir=MIRROR archive HEAD -- setup.py sepia examples/Ball_Drop \
#       | tar -x -C /tmp/sepia-src
set -euo pipefail

VENV="${1:-/tmp/peers-venv}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "surmise 1.0.0 needs Python >= 3.11"'
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)

# SEPIA's setup.py requirements (pandas, seaborn, statsmodels) beside the brief's four
"${PIP[@]}" numpy scipy matplotlib tqdm pandas seaborn statsmodels

if [[ -n "${SURMISE_WHEEL:-}" ]]; then
    "${PIP[@]}" "$SURMISE_WHEEL"
else
    shopt -s nullglob
    wheels=(/tmp/peerwheels/surmise-1.0.0-*.whl)
    shopt -u nullglob
    if ((${#wheels[@]})); then
        "${PIP[@]}" "${wheels[0]}"
    else
        "${PIP[@]}" "surmise==1.0.0"
    fi
fi

if [[ -n "${SEPIA_SRC:-}" ]]; then
    "${PIP[@]}" "$SEPIA_SRC"
else
    "${PIP[@]}" "git+https://github.com/lanl/SEPIA"
fi

"$VENV/bin/python" -c '
import importlib.metadata as md
import sepia.SepiaModel, surmise.calibration, surmise.emulation
print("peers ready:", {p: md.version(p) for p in ("surmise", "sepia", "numpy", "scipy")})
'
