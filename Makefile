# FeedbackHub: `make run` starts the whole stack, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test lint bench clean

$(VENV)/.installed-run: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) was not found: install Python 3.11, or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing FeedbackHub into $(VENV) ..."
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run
	@echo "Installing test tools into $(VENV) ..."
	$(PIP) -e '.[dev]'
	@touch $@

run: $(VENV)/.installed-run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_admin
	exec $(PY) -m feedbackhub.stack

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	env -u DATABASE_URL $(PY) manage.py makemigrations --check --dry-run

# The suite runs on SQLite, then again on PostgreSQL when one is reachable at PG_TEST_URL
# (with CI=true the PostgreSQL run is mandatory: it fails rather than skips).
test: lint
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)
	@if [ "$${CI:-}" = "true" ] || $(PY) -c "import psycopg; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== The same suite on PostgreSQL ($(PG_TEST_URL))"; \
		DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS); \
	else \
		echo "== PostgreSQL is not reachable at $(PG_TEST_URL): its run is skipped (CI=true makes it mandatory)."; \
	fi

# Benchmarks: every figure beside a baseline measured in the same run; standard output is one markdown table
# (the scripts' own detail goes to standard error). Each script also runs alone: tests/benchmarks/bench_*.py.
bench: $(VENV)/.installed-dev
	$(PY) tests/benchmarks/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
