# anomaloop — `make run` serves the demo, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a CPU wheel lies on these machines' disk; a loose spec would download a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

run: install
	$(VENV)/bin/anomaloop serve

test: install
	$(PY) -m pytest

bench: install
	bash scripts/bench.sh

lint: install
	$(VENV)/bin/ruff check app worker tests migrations

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
