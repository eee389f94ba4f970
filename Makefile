# anomaloop — `make run` serves the demo, `make test` runs the whole suite, `make test-fast` all but the slow and
# browser tests (a few minutes), `make lint` the checks .ci/run runs before the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install install-test run test test-fast bench lint clean vendor-plotly vendor-swagger

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a CPU wheel lies on these machines' disk; a loose spec would download a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The tests also run the benchmark's label-efficient peers (the `peers` extra: coniferest, PyOD, xgboost-cpu; and
# deepod for the `deepsad` peer, installed without its dependencies because it pins torch<1.13.1 yet runs on the
# torch above: app/bench/peers.py); `make run` never needs them.
PEERS_STAMP := $(VENV)/.peers-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
$(PEERS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,peers]'
	$(PY) -m pip install -q --no-deps deepod==0.4.1 tqdm
	rm -f $(VENV)/.peers-*
	touch $@

install-test: $(PEERS_STAMP)

run: install
	$(VENV)/bin/anomaloop serve

test: install-test
	$(PY) -m pytest

# No `slow` test (real-data quality floors, Celery, training on full series) and no `browser` test (chromium).
test-fast: install-test
	$(PY) -m pytest -m "not slow and not browser"

bench: install
	bash scripts/bench.sh

# Style, format, types ([tool.mypy]: strict on app/core) and the layer contracts ([tool.importlinter]).
lint: install
	$(VENV)/bin/ruff check app worker tests migrations
	$(VENV)/bin/ruff format --check app worker tests migrations
	$(VENV)/bin/mypy app worker
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache

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

# Swagger UI for the offline API docs at /api/docs (docs/API.md): swagger-ui-dist's bundle and stylesheet at a pinned
# version, from the npm registry, into static/vendor/swagger-ui/ with its licence, notice and the bundled packages'
# licences (swagger-ui-bundle.js.LICENSE.txt, which the bundle's first line points to); no CDN at run time.
SWAGGER_UI_VERSION ?= 5.35.0
vendor-swagger:
	@set -e; \
	tmp=$$(mktemp -d); \
	(cd $$tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz); \
	mkdir -p static/vendor/swagger-ui; \
	cp $$tmp/package/swagger-ui-bundle.js $$tmp/package/swagger-ui.css static/vendor/swagger-ui/; \
	cp $$tmp/package/LICENSE $$tmp/package/NOTICE $$tmp/package/swagger-ui-bundle.js.LICENSE.txt static/vendor/swagger-ui/; \
	echo $(SWAGGER_UI_VERSION) > static/vendor/swagger-ui/VERSION; \
	rm -rf $$tmp; \
	echo "static/vendor/swagger-ui/: swagger-ui-dist $(SWAGGER_UI_VERSION)"
