# Quick start: `make demo` installs gridflex into .venv and runs the default scenario;
# `make test` installs the test dependencies and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gridflex simulate phoenix-srp --json out/phoenix-srp.json --report out/phoenix-srp.html

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25

clean:
	rm -rf $(VENV) out .pytest_cache
