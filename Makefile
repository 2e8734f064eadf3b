# The two commands of the README: `make run` and `make test`. Both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=

.PHONY: run test install lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

## Set up (virtualenv, install, migrate, demo data) and serve on 127.0.0.1:8000.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_data
	@echo "Log in at http://$(HOST):$(PORT)/admin/ (admin / admin-pass-123); WebSocket at ws://$(HOST):$(PORT)/ws/"
	$(PY) manage.py runserver $(HOST):$(PORT)

## The whole test suite with line and branch coverage (fails under 90 %).
test: install
	$(PY) scripts/runtests.py $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) htmlcov .coverage .pytest_cache
