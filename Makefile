# hocba — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
APT_PACKAGES := softhsm2 poppler-utils qpdf fonts-noto-core zbar-tools chromium faketime libbcprov-java libbcpkix-java
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint deps venv clean-dev bench bench-evidence

run: deps venv ## provision dev state on first run, start TSA/OCSP/CRL + service on 127.0.0.1:$(PORT)
	PORT=$(PORT) $(BIN)/hocba dev

test: deps venv ## everything the tests need, then the whole suite (slow tests included)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

deps: ## system packages (Debian/Ubuntu); skipped when already there
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

bench: deps venv
	$(BIN)/python -m bench

bench-evidence: deps venv ## evidence records (RFC 4998) for a million objects: bench/README.md
	$(BIN)/python -m bench.evidence

clean-dev: ## forget dev state (keys, tokens, store, index) — dev only
	rm -rf var/dev var/test var/store var/index.sqlite3
