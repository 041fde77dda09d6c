# igikit: two commands do all setup on a fresh machine (Python 3.11, pip, gcc).
#   make demo   - create .venv, install, run the surgery demo (pivot calibration on a real recording,
#                 navigated needle insertion on a liver phantom) and the theranostics demo (Lu-177
#                 four-time-point dosimetry, Ho-166 scout plan), each ending with its report; then
#                 gate a real cine-MRI series live under supervision: the web console on
#                 http://127.0.0.1:8000 with a demo login printed, until Ctrl-C
#                 (make demo ARGS=--no-console: headless, ends with the report path)
#   make test   - create .venv, install with test extras, run ruff, mypy and the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARGS ?=

.PHONY: demo test lint typecheck install clean bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# System libraries from Debian: Open3D (surface registration) loads libusb-1.0 at import; the PACS
# tests (tests/io/test_pacs.py) start a real Orthanc DICOM server from Debian's orthanc package.
$(VENV)/.sysdeps: | $(VENV)/bin/python
	dpkg -s libusb-1.0-0 >/dev/null 2>&1 || (apt-get update && apt-get install -y libusb-1.0-0)
	command -v Orthanc >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y orthanc)
	touch $@

# three.js for the console's 3D navigation scene, from npm (package-lock.json pins it); the console
# serves it from node_modules/ itself (igikit.console.vendor), never from a CDN.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --omit=dev --no-audit --no-fund
	touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/.sysdeps node_modules/.package-lock.json
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/.sysdeps node_modules/.package-lock.json
	$(PIP) install --quiet -e '.[test]'
	# scikit-surgery, only to cross-check pivot calibration: its own dependencies would replace
	# OpenCV 5 and NumPy (see the crosscheck extra), and the pivot module needs neither.
	$(PIP) install --quiet --no-deps scikit-surgerycalibration scikit-surgerycore
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/igikit demo surgery --no-console
	$(VENV)/bin/igikit demo theranostics --no-console
	$(VENV)/bin/igikit demo $(ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests bench

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

test: $(VENV)/.installed-test lint typecheck
	command -v chromium || (apt-get update && apt-get install -y chromium)
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed
	$(PY) bench/stream_overhead.py

clean:
	rm -rf $(VENV) node_modules build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
