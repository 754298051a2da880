# medverse: two commands set everything up on a fresh machine: `make demo` and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev
OUT     ?= demo-out

.PHONY: install install-dev system-deps web web-test demo test test-all lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch first and alone: the pinned version resolves to the CPU wheel here and never pulls CUDA.
$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

$(DEVSTAMP): $(STAMP) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(DEVSTAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

# The file demo (outputs in $(OUT)/ct), then the service with the samples stored and segmented
# (prints its URL and an admin token; Ctrl-C stops it).
# The browser viewer (web/): the service's OpenAPI document dumped from create_app (its API
# types are generated from it, so a changed route or field fails tsc), npm ci from the lock
# file, then a Vite build into the package (src/medverse/service/web_dist/, git-ignored by the
# .gitignore written there), served at /. `web-test` runs the web unit tests (node:test).
WEB_DIST := src/medverse/service/web_dist
SERVICE_SOURCES := $(shell find src/medverse/service -name '*.py' 2>/dev/null)
web: $(WEB_DIST)/index.html
$(WEB_DIST)/index.html: web/package-lock.json web/package.json web/index.html web/vite.config.ts web/scripts/dump_openapi.py $(wildcard web/src/*.ts web/src/*.css) $(SERVICE_SOURCES) | $(STAMP)
	$(BIN)/python web/scripts/dump_openapi.py web/openapi.json
	cd web && npm ci --no-audit --no-fund && npm run build
	printf '*\n' > $(WEB_DIST)/.gitignore

web-test: web
	cd web && npm test

demo: $(STAMP) web
	$(BIN)/medverse demo --out $(OUT)
	$(BIN)/medverse demo --out $(OUT) --serve

# Debian packages the tests use: Orthanc with its DICOMweb plugin (PACS tests), PostgreSQL
# (database tests), Chromium (browser tests, headless via Playwright), dicom3tools (dciodvfy
# validates every SEG the io tests write), dcmtk and dcm2niix (DICOM tests). apt-get runs only
# when one is missing, and needs root; without root the PACS and database tests skip (the
# browser tests fail: they are part of `make test`). A system Orthanc service the package
# may start is stopped again.
SYSTEM_PACKAGES := orthanc orthanc-dicomweb postgresql chromium dicom3tools dcmtk dcm2niix
system-deps:
	@missing=""; \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "system-deps: missing$$missing (run as root: apt-get install$$missing); their tests will skip"; \
	  exit 0; \
	fi; \
	echo "system-deps: installing$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	  systemctl disable --now orthanc >/dev/null 2>&1 || true; \
	fi

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint system-deps web web-test
	$(BIN)/python -m pytest -q

test-all: lint system-deps web
	$(BIN)/python -m pytest -q -m "not gpu"

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
