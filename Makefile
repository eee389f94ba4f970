# anomaloop — `make run` serves the demo, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test bench lint clean vendor-plotly

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

# Plotly's partial "basic" bundle (scatter, bar, pie: all the pages draw) at the plotly.js version inside the
# installed `plotly` package, from the npm registry, into static/vendor/ with its licence (README: "Plotly bundle").
vendor-plotly: install
	@set -e; \
	version=$$($(PY) -c "import pathlib, plotly, re; \
		js = pathlib.Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js'; \
		print(re.search(r'plotly\.js v([0-9][0-9A-Za-z.+-]*)', js.read_text(errors='ignore')[:500]).group(1))"); \
	tmp=$$(mktemp -d); \
	(cd $$tmp && npm pack --silent plotly.js-basic-dist-min@$$version >/dev/null && tar xzf plotly.js-basic-dist-min-$$version.tgz); \
	mkdir -p static/vendor; \
	cp $$tmp/package/plotly-basic.min.js static/vendor/plotly-basic.min.js; \
	cp $$tmp/package/LICENSE static/vendor/plotly-basic.LICENSE; \
	echo $$version > static/vendor/plotly-basic.VERSION; \
	rm -rf $$tmp; \
	echo "static/vendor/plotly-basic.min.js: plotly.js-basic-dist-min $$version"
