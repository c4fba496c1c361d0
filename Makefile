# Thin targets. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck pytest docs bench bench-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tiktok-async demo

test: lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check tiktok_async tests benchmarks scripts

typecheck: $(STAMP)
	$(PY) -m mypy tiktok_async tests

# Most tests wait on sockets, subprocesses and timers: 3 workers on 2 cores (pytest-xdist).
# Tests marked realtime (in test_loadtest.py and test_bench_command.py) measure real
# latency and rate: they run alone, afterwards.
pytest: $(STAMP)
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest -W error -q -n 3 --dist worksteal -m 'not realtime'
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest -W error -q -p no:xdist -m realtime tests/test_loadtest.py tests/test_bench_command.py

docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d site

bench: $(STAMP)
	$(PY) -m benchmarks.run

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache demo-out build *.egg-info
