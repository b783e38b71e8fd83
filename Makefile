# ticketd — developer entry points. `make help` lists the targets.
#
# Needs only python3 with venv (Debian: python3-venv) and network access to PyPI; `make test` also
# installs the Debian packages the tests use (scripts/install-test-deps.sh).

PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= ticketd.toml
ARGS   ?=
BENCH_ARGS ?=
# Test files run side by side in this many processes (pytest-xdist; "auto": one per core, 0: in this one).
TEST_WORKERS ?= auto
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help run test test-deps lint bench clean

help: ## list the targets
	@echo "ticketd: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) CONFIG=$(CONFIG) ARGS=$(ARGS) (serve's flags for run)" \
		"TEST_WORKERS=$(TEST_WORKERS) (test processes)"

# ARGS are serve's flags, e.g. make run ARGS="--smtp 127.0.0.1:2526 --lmtp off".
run: $(VENV)/.installed ## install into .venv if needed, then run the daemon with ticketd.toml (ARGS="--smtp HOST:PORT ...")
	exec $(BIN)/ticketd --config $(CONFIG) serve $(ARGS)

# Lint (ruff, mypy) and tests all run, so every set of failures shows; any non-zero status fails the target (pytest's 5,
# "no tests collected", included).
test: test-deps $(VENV)/.installed-test ## install Debian + Python test dependencies, then ruff, mypy and the whole pytest suite
	@status=0; \
	echo "+ $(BIN)/ruff check ."; $(BIN)/ruff check . || status=$$?; \
	echo "+ $(BIN)/mypy"; $(BIN)/mypy || status=$$?; \
	echo "+ $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile"; \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile || status=$$?; \
	exit $$status

test-deps: ## install dovecot-imapd, postfix, chromium and postgresql when missing (apt-get; quick when present)
	bash scripts/install-test-deps.sh

lint: $(VENV)/.installed-test ## ruff check, then mypy (settings: [tool.mypy] in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy

# smtp-source (Debian's postfix package) drives the SMTP figures; BENCH_ARGS, e.g. "--json --runs 1".
bench: test-deps $(VENV)/.installed-test ## run benchmarks/ingest.py (BENCH_ARGS=...), imap.py, outbox.py, postgres.py, scheduler.py and web.py, print figures
	$(BIN)/python benchmarks/ingest.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/imap.py
	$(BIN)/python benchmarks/outbox.py
	$(BIN)/python benchmarks/postgres.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/web.py

clean: ## remove var/ (the local database and spool!) and caches; keeps .venv
	rm -rf var/ .pytest_cache/ .ruff_cache/ .mypy_cache/ .hypothesis/
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

# The virtualenv. A failed `python3 -m venv` (no ensurepip: python3-venv missing) can leave a half-made
# .venv behind; remove it so that the next run tries again instead of using it.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }

# Stamps: pip runs again only when pyproject.toml changes (or the venv is new).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@
