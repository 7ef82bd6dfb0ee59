# Every target installs what it needs into .venv; nothing relies on what
# happens to be installed on the machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUF    := .tools/node_modules/.bin/buf
PROTOS := $(wildcard proto/credfed/v1/*.proto)

.PHONY: all install demo test test-only lint proto proto-check buf-lint bench deploy-check clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m credfed.demo

# Regenerate the committed stubs from proto/ (pinned grpcio-tools).
proto: $(STAMP)
	rm -f src/credfed/v1/*_pb2*.py src/credfed/v1/*_pb2*.pyi
	$(PY) -m grpc_tools.protoc -Iproto --python_out=src --pyi_out=src \
	    --grpc_python_out=src $(PROTOS)

# Fails when the committed stubs differ from what `make proto` would write.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp \
	    --grpc_python_out=$$tmp $(PROTOS) && \
	for f in $$tmp/credfed/v1/*; do \
	    diff -q $$f src/credfed/v1/$$(basename $$f) >/dev/null || \
	    { echo "generated stubs drifted from proto/: run 'make proto' ($$(basename $$f))"; rm -rf $$tmp; exit 1; }; \
	done; \
	n1=$$(ls $$tmp/credfed/v1 | wc -l); n2=$$(ls src/credfed/v1/*_pb2* | wc -l); rm -rf $$tmp; \
	[ "$$n1" = "$$n2" ] || { echo "stale generated stubs in src/credfed/v1: run 'make proto'"; exit 1; }; \
	echo "proto stubs up to date"

$(BUF):
	mkdir -p .tools
	cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1 >/dev/null

buf-lint: $(BUF)
	$(BUF) lint

lint: $(STAMP) proto-check buf-lint
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: lint test-only

test-only: $(STAMP)
	$(VENV)/bin/pytest -q

# The deploy/ artefacts (also part of test-only): hadolint, shellcheck, kubectl
# kustomize, systemd-analyze, and a real run of the compose setup script.
deploy-check: $(STAMP)
	$(VENV)/bin/pytest -q tests/deploy

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache build
