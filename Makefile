# One entry point for every task; `make run` and `make test` work on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
STATIC  := src/aster_studio/static
WEB_SRC := $(shell find web -type f -not -path 'web/node_modules/*' -not -path 'web/dist/*' 2>/dev/null)
PYTEST_ARGS ?=
# The modules the server runs for every event, compiled with mypyc by `make native` (one group:
# all used or none; sdk/src/aster_studio_sdk/_native.py says when). Measured: docs/benchmarks.md.
NATIVE_SRC := $(addprefix sdk/src/aster_studio_sdk/protocol/,_codec.py _types.py) \
	$(addprefix src/aster_studio/,ingest/service.py ingest/pipeline.py ingest/connection.py \
	ingest/frames.py ingest/registry.py live/bus.py store/sqlite.py store/_postings.py)

.PHONY: install native run demo test test-postgres lint typecheck pytest bench soak web browser clean

install: $(STAMP) $(STATIC)/index.html .native/manifest.json

$(STAMP): pyproject.toml sdk/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./sdk -e ".[dev,postgres,cluster]"
	touch $@

# The console: built from web/ into the package's static folder (git-ignored, shipped in the wheel).
$(STATIC)/index.html: $(WEB_SRC)
	@if [ -f web/package.json ]; then \
	  cd web && (test -d node_modules || npm ci --no-audit --no-fund) && npm run build; \
	else echo "web/ has no console yet; the Studio will serve the API only"; fi

web: $(STATIC)/index.html

# A failed build (no C compiler, say) is recorded in the manifest: the Studio runs from source.
.native/manifest.json: $(NATIVE_SRC) $(STAMP) scripts/build_native.py
	$(BIN)/python scripts/build_native.py $(NATIVE_SRC)

native: .native/manifest.json

run: install
	$(BIN)/aster-studio serve

demo: install
	$(BIN)/aster-studio demo

# Debian's Chromium for the browser tests (Playwright's own download does not work here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff format --check src sdk/src tests benchmarks scripts
	$(BIN)/ruff check src sdk/src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs the compiled modules when built; the SDK's own tests also run from source,
# as the SDK ships.
# The Store contract runs on both backends in the first run, and so do the PostgreSQL-only tests
# (test_postgres.py, test_database_outage.py); the integration tests of storage run again with
# their Studios on PostgreSQL (skipped with the reason when it cannot be reached, failed instead
# under CI). `make test-postgres` runs every integration test on it.
PG_TESTS := $(addprefix tests/integration/,test_api.py test_usage.py test_reliable_delivery.py)
pytest: install browser
	$(BIN)/pytest $(PYTEST_ARGS)
	ASTER_STUDIO_TEST_BACKEND=postgres $(BIN)/pytest -q $(PG_TESTS)
	ASTER_STUDIO_NATIVE=0 $(BIN)/pytest -q tests/unit/protocol tests/unit/sdk

test-postgres: install
	ASTER_STUDIO_TEST_BACKEND=postgres $(BIN)/pytest -q tests/integration $(PYTEST_ARGS)

test: lint typecheck pytest
	@if [ -f web/package.json ]; then cd web && npm test --silent; fi

# Long fault runs (frame fuzzing, repeated kill -9 under load): loopback only, bounded.
soak: install
	SOAK_SCALE=$${SOAK_SCALE:-10} $(BIN)/pytest -m soak tests/soak -q

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(STATIC) web/node_modules .native
