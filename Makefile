# The two commands of a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv

.PHONY: demo test install install-dev lint bench

install:
	bash scripts/setup.sh

install-dev:
	bash scripts/setup.sh dev

demo: install
	$(VENV)/bin/morphnas search

test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check .

bench: install-dev
	$(VENV)/bin/python benchmarks/run_all.py
