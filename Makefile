# `make run`: the one-process demo on SQLite with seeded data, http://127.0.0.1:5000
# `make test`: the whole suite, on SQLite and PostgreSQL, browser tests included.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

.PHONY: install run test migrate seed bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/flask db upgrade

run: install
	ACTIVITYWEB_LOCAL_MODE=1 $(BIN)/flask db upgrade
	ACTIVITYWEB_LOCAL_MODE=1 $(BIN)/flask seed --if-empty
	ACTIVITYWEB_LOCAL_MODE=1 ACTIVITYWEB_RULES_WORKER_THREAD=1 $(BIN)/flask run --host 127.0.0.1 --port 5000 --with-threads --no-reload

test: install
	./scripts/ensure-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/ingest.py

# schemathesis against the served OpenAPI document on PostgreSQL (scripts/fuzz.py).
fuzz: install
	$(BIN)/python scripts/fuzz.py

clean:
	rm -rf $(VENV) instance .pytest_cache
