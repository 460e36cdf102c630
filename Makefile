# The README's two commands: `make run` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# With Slack tokens in .env: the bot. Without: index CODE_REPO_PATH and open the console chat.
run: setup
	VENV=$(VENV) bash scripts/run.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) benchmarks/ingest_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
