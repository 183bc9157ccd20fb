# calib — set-up, demo, tests, benchmarks. Every target installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test test-slow test-manual bench lint docs clean

# Debian's chromium renders the HTML report in tests/test_report.py (skipped without it):
# installed through apt only where apt exists and we are root (CI), and never fatal
install: $(STAMP)
	command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && apt-get install -y --no-install-recommends chromium) || true

# torch==2.13.0 first: a CPU build of it lies on the development machines' disk, and a plain
# `torch` requirement would otherwise pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,arviz,docs]"
	touch $(STAMP)

# the beam study (examples/beam/): field data from a fixed seed, then design, runs, emulator,
# calibration and archive; a second `make demo` resumes from examples/beam/beam.h5. Then the
# figures and the self-contained HTML report beside the archive (each command prints its paths)
demo: install
	$(BIN)/python examples/beam/make_data.py
	$(BIN)/calib run examples/beam/study.toml
	$(BIN)/calib plot examples/beam/beam.h5 --out examples/beam/figures
	$(BIN)/calib report examples/beam/beam.h5 -o examples/beam/report.html

# pytest-xdist: two worker processes, one torch thread each. calib's sampling runs one
# torch thread on small problems anyway (calib/_threads.py), so the tests are bound by one
# core each, and two workers use a 2-core machine fully instead of half of it.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n 2

# the suite without the long statistical tests (under 15 minutes on 2 cores)
test: install
	$(PYTEST) -m "not slow and not manual"

# the long statistical tests (simulation-based calibration, ...); CI runs both
test-slow: install
	$(PYTEST) -m slow

# statistical checks longer than CI's 45 minutes allow (run before a release; ~25 minutes)
test-manual: install
	$(PYTEST) -m manual

# the documentation site (mkdocs.yml) into site/; strict: any warning fails the build
docs: install
	$(BIN)/mkdocs build --strict -d site

bench: install
	$(BIN)/python benchmarks/logpost.py
	$(BIN)/python benchmarks/runs.py

lint: install
	$(BIN)/ruff check calib emulators simulators tests benchmarks examples
	$(BIN)/ruff format --check calib emulators simulators tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info site
