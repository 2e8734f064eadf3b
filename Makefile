# The two commands of the README: `make run` and `make test`. Both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=

.PHONY: run test install lint clean bench stop-redis

# setuptools prints a banner (a BuildBackendWarning) for every editable install (clients/python):
# nothing to act on, so it is silenced.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The runtime set as wheels, so that a virtualenv can install the app without an index
# (`pip install --no-index --find-links .venv/wheelhouse`): tests/e2e/test_fresh_project.py does,
# offline. `pip wheel` also builds the wheel of any requirement published as a source archive only.
$(VENV)/wheelhouse/.complete: $(VENV)/.installed requirements.txt
	$(PY) -m pip wheel --quiet --wheel-dir $(VENV)/wheelhouse -r requirements.txt
	touch $@

install: $(VENV)/.installed $(VENV)/wheelhouse/.complete

## Set up (virtualenv, install, migrate, demo data) and serve on 127.0.0.1:8000, with Redis when there is one
## (REDIS_URL, else 127.0.0.1:6379, else a private redis-server: scripts/run.py).
run: install
	@$(PY) manage.py migrate --noinput --verbosity 0
	@$(PY) manage.py demo_data
	@echo "Log in at http://$(HOST):$(PORT)/admin/ (admin / admin-pass-123); WebSocket at ws://$(HOST):$(PORT)/ws/"
	@$(PY) scripts/run.py $(HOST):$(PORT)

## The whole test suite with line and branch coverage (fails under 90 %).
test: install
	$(PY) scripts/runtests.py $(ARGS)

## The benchmark: this project against plain Channels (and python-socketio), docs/performance.md.
## Full sizes take several minutes on 2 cores; `make bench ARGS="--quick"` is a small smoke run.
bench: $(VENV)/.bench-installed
	$(PY) bench/run.py $(ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

lint: install
	$(VENV)/bin/ruff check .

## Stop the private redis-server `make run` started (when there was no other Redis); its data stays in .run/redis/.
stop-redis:
	@if [ -f .run/redis/redis.pid ] && kill "$$(cat .run/redis/redis.pid)" 2>/dev/null; then echo "stopped"; else echo "not running"; fi

clean: stop-redis
	rm -rf $(VENV) htmlcov .coverage .pytest_cache
