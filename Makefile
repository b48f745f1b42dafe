# quality-gates: `make demo` and `make test` work on a fresh machine with only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,postgres,redis,aws,otel,semantic,safety,reports
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint format bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded default (SQLite, built-in simulators)
	$(PY) scripts/demo.py

TEST_WORKERS ?= 4  # most slow tests wait on real time (alerts, drills), so 4 workers suit 2 cores

test: $(STAMP)  ## the whole suite; pytest exits 5 when no test ran, which fails make
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(STAMP)  ## skips the slow and end-to-end tests
	$(PY) -m pytest -m "not slow and not e2e"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

bench: $(STAMP)
	$(PY) bench/cold_start.py
	$(PY) bench/watch_windows.py
	$(PY) bench/simulator_throughput.py
	$(PY) bench/offline_gate.py
	$(PY) bench/paired_test.py
	$(PY) bench/loadgen.py
	$(PY) bench/gateway.py
	$(PY) bench/web_status.py
	$(PY) bench/drills.py

chaos: $(STAMP)  ## the chaos matrix into RELIABILITY.md; PostgreSQL + Redis too when QG_TEST_DATABASE_URL / QG_TEST_REDIS_URL are set
	$(PY) bench/chaos.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache test-artifacts
