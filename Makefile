# envhub: `make run` starts the local service, `make test` checks everything. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 7071
DATA_DIR ?= .envhub

.PHONY: run run-emulators test lint typecheck unit bench clean system-deps emulators

# Debian packages the project needs, installed with apt when missing (we are root on a fresh machine):
# venv support, the Distribution registry, buildah, and a static busybox to seed a base image offline.
system-deps:
	@missing=""; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	dpkg -s busybox-static >/dev/null 2>&1 || missing="$$missing busybox-static"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt:$$missing"; \
	  command -v apt-get >/dev/null || { echo "error: missing$$missing and apt-get is not available; install them" >&2; exit 1; }; \
	  [ "$$(id -u)" = 0 ] || { echo "error: missing$$missing; run as root or install them: apt-get install$$missing" >&2; exit 1; }; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || { echo "error: apt-get could not install$$missing (check apt-cache policy$$missing)" >&2; exit 1; }; \
	fi

$(STAMP): pyproject.toml | system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The Azure home's emulators (Azurite; a Cosmos DB API server with its recorded patch) under emulators/.
EMULATORS_STAMP := emulators/node_modules/.installed
$(EMULATORS_STAMP): emulators/package.json emulators/package-lock.json emulators/patches/* | system-deps
	cd emulators && npm ci --no-audit --no-fund --loglevel=error
	@touch $(EMULATORS_STAMP)

emulators: $(EMULATORS_STAMP)

run: system-deps $(STAMP)
	$(BIN)/envhub serve --port $(PORT) --data-dir $(DATA_DIR)

# The same service on the Azure home's adapters (Cosmos DB, Storage queues, Blob Storage) against local emulators.
run-emulators: system-deps $(STAMP) $(EMULATORS_STAMP)
	$(BIN)/envhub serve --emulators --port $(PORT) --data-dir $(DATA_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy .

test: system-deps emulators lint typecheck
	$(BIN)/pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
