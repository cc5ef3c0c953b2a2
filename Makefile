# One entry point for every task; `make run` and `make test` work on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
STATIC  := src/aster_studio/static
WEB_SRC := $(shell find web -type f -not -path 'web/node_modules/*' -not -path 'web/dist/*' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: install run demo test lint typecheck pytest bench soak web browser clean

install: $(STAMP) $(STATIC)/index.html

$(STAMP): pyproject.toml sdk/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./sdk -e ".[dev]"
	touch $@

# The console: built from web/ into the package's static folder (git-ignored, shipped in the wheel).
$(STATIC)/index.html: $(WEB_SRC)
	@if [ -f web/package.json ]; then \
	  cd web && (test -d node_modules || npm ci --no-audit --no-fund) && npm run build; \
	else echo "web/ has no console yet; the Studio will serve the API only"; fi

web: $(STATIC)/index.html

run: install
	$(BIN)/aster-studio serve

demo: install
	$(BIN)/aster-studio demo

# Debian's Chromium for the browser tests (Playwright's own download does not work here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: $(STAMP)
	$(BIN)/ruff format --check src sdk/src tests benchmarks
	$(BIN)/ruff check src sdk/src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: install browser
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest
	@if [ -f web/package.json ]; then cd web && npm test --silent; fi

# Long fault runs (frame fuzzing, repeated kill -9 under load): loopback only, bounded.
soak: install
	SOAK_SCALE=$${SOAK_SCALE:-10} $(BIN)/pytest -m soak tests/soak -q

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(STATIC) web/node_modules
