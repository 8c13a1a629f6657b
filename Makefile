# The two commands of the README's quick start. Each creates its own virtual environment (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("jointcase needs Python 3.11+") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## run: the embedded default — SQLite under var/, the Sanming agencies and a dozen demo cases;
## the deadline sweep fires what is due (reminders, misses, auto-listing), the overdue list is shown,
## then the web UI and REST API serve on http://127.0.0.1:8000/ with the embedded scheduler (sweep,
## notifications, meeting preparation, bulletins) until Ctrl-C; the demo sign-ins are printed.
run: $(STAMP)
	$(BIN)/jointcase init --demo
	$(BIN)/jointcase case list
	$(BIN)/jointcase sweep
	$(BIN)/jointcase deadlines --overdue
	$(BIN)/jointcase audit verify
	$(BIN)/jointcase serve

## test: lint and format check, then every test (PostgreSQL tests run when JOINTCASE_TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
