# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PG_URL ?= postgresql://postgres@127.0.0.1:5432/mbuzz_test
DATABASE_URL ?= sqlite:///mbuzz.db
PORT ?= 5000

REDIS_URL ?= redis://127.0.0.1:6379/0
# Issue 14: the Web Pixel is type-checked and run against Shopify's own npm package; tests/unit/connectors/shopify/package-lock.json
# pins it and TypeScript (docs/shopify.md, "Web Pixel: tested against Shopify's own package").
NODE_DIR := tests/unit/connectors/shopify
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-$(shell sha256sum $(NODE_DIR)/package-lock.json | cut -c1-12)
TSC := $(NODE_DIR)/node_modules/typescript/bin/tsc

.PHONY: install node-install run run-redis test lint test-postgres test-sqlite bench clean shopify-config

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# `npm ci` installs exactly the locked versions from the registry (no lifecycle scripts). Without npm this is a
# warning outside CI (the pixel tests then skip, as they do without Node.js) and an error in CI.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@if ! command -v npm >/dev/null; then \
		if [ -n "$$CI" ]; then echo "CI: npm is required for the Web Pixel tests ($(NODE_DIR))" >&2; exit 1; fi; \
		echo "warning: npm not found: Web Pixel package tests and type check will be skipped" >&2; \
	else \
		echo "npm ci in $(NODE_DIR)"; \
		cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund && touch $(CURDIR)/$(NODE_STAMP); \
	fi

node-install: $(NODE_STAMP)

run: install
	DATABASE_URL=$(DATABASE_URL) $(BIN)/flask --app gateway mbuzz migrate
	DATABASE_URL=$(DATABASE_URL) $(BIN)/flask --app gateway mbuzz bootstrap-demo
	@echo "serving on http://127.0.0.1:$(PORT)  (API: http://127.0.0.1:$(PORT)/api/v1)"
	DATABASE_URL=$(DATABASE_URL) $(BIN)/gunicorn -c gunicorn.conf.py --workers 1 --threads 8 \
		--bind 127.0.0.1:$(PORT) 'gateway:create_app()'

# Queued mode: the web process appends to Redis Streams and one RQ drain worker processes the log.
run-redis: install
	DATABASE_URL=$(DATABASE_URL) $(BIN)/flask --app gateway mbuzz migrate
	DATABASE_URL=$(DATABASE_URL) $(BIN)/flask --app gateway mbuzz bootstrap-demo
	@echo "serving on http://127.0.0.1:$(PORT) with REDIS_URL=$(REDIS_URL) and one drain worker"
	DATABASE_URL=$(DATABASE_URL) REDIS_URL=$(REDIS_URL) $(BIN)/flask --app gateway mbuzz worker & \
	worker=$$!; trap "kill $$worker" EXIT INT TERM; \
	DATABASE_URL=$(DATABASE_URL) REDIS_URL=$(REDIS_URL) $(BIN)/gunicorn -c gunicorn.conf.py --workers 2 \
		--threads 8 --bind 127.0.0.1:$(PORT) 'gateway:create_app()'

lint: install node-install
	$(BIN)/ruff check core edge gateway connectors tools tests bench
	$(BIN)/mypy --strict core edge gateway connectors tools
	$(BIN)/lint-imports
	@if [ -f $(TSC) ]; then \
		echo "tsc --noEmit -p $(NODE_DIR)/tsconfig.json  (Web Pixel against @shopify/web-pixels-extension)"; \
		node $(TSC) --noEmit -p $(NODE_DIR)/tsconfig.json; \
	elif [ -n "$$CI" ]; then echo "CI: $(TSC) is missing (make node-install)" >&2; exit 1; \
	else echo "warning: $(TSC) is missing: Web Pixel type check skipped" >&2; fi

test-postgres: install node-install
	bash .ci/services
	bash .ci/browser
	MBUZZ_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest -q -n 2 -p no:cacheprovider tests

test-sqlite: install node-install
	MBUZZ_TEST_DATABASE_URL=sqlite $(BIN)/pytest -q -p no:cacheprovider -m "not postgres" tests/integration tests/unit/gateway tests/unit/tools tests/unit/core/processors tests/unit/core/fitting tests/unit/core/test_reports.py tests/unit/core/test_demo.py tests/unit/core/test_rollups.py tests/unit/connectors

test: lint test-postgres test-sqlite

bench: install
	bash .ci/services
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ingest.py --queued --batch 100
	$(BIN)/python bench/drain.py --events 50000
	$(BIN)/python bench/append.py
	$(BIN)/python bench/reports.py --conversions 1000000 --record

# shopify.md SHP-97: `make shopify-config HOST=mbuzz.example.com CLIENT_ID=<client id>` writes the git-ignored
# connectors/shopify/app/shopify.app.local.toml (HOST is a host name, optionally with a port; no scheme, no path).
shopify-config:
	@test -n "$$HOST" || { echo "shopify-config: HOST is missing; usage: make shopify-config HOST=mbuzz.example.com CLIENT_ID=<client id>" >&2; exit 2; }
	@test -n "$$CLIENT_ID" || { echo "shopify-config: CLIENT_ID is missing; usage: make shopify-config HOST=mbuzz.example.com CLIENT_ID=<client id>" >&2; exit 2; }
	@printf '%s' "$$HOST" | grep -Eqx '[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?' || { echo "shopify-config: HOST must be a host name such as mbuzz.example.com (no https://, no path)" >&2; exit 2; }
	@printf '%s' "$$CLIENT_ID" | grep -Eqx '[A-Za-z0-9_-]+' || { echo "shopify-config: CLIENT_ID must be the app's client id (letters, digits, - and _)" >&2; exit 2; }
	sed -e 's|REPLACE_WITH_CLIENT_ID|$(CLIENT_ID)|g' -e 's|REPLACE_WITH_HOST|$(HOST)|g' \
		connectors/shopify/app/shopify.app.toml > $(or $(SHOPIFY_CONFIG_OUT),connectors/shopify/app/shopify.app.local.toml)

clean:
	rm -rf $(VENV) mbuzz.db* test-artifacts .pytest_cache .mypy_cache .ruff_cache $(NODE_DIR)/node_modules
