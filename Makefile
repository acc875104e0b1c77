# Fresh-machine entry points: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup serve test test-fast lint proto bench deps-node clean

$(BIN)/perdure: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q perdure
	touch $(BIN)/perdure

setup: $(BIN)/perdure

serve: setup
	$(BIN)/perdure server

# Node packages used only by tests and benchmarks: the real Restate server,
# the official CLI and the official TypeScript SDK.
deps-node: tests/node/node_modules/.installed
tests/node/node_modules/.installed: tests/node/package.json
	cd tests/node && npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup deps-node lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow" tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy perdure

proto:
	$(BIN)/python -m grpc_tools.protoc -Iperdure/protocol=perdure/protocol --python_out=. --pyi_out=. perdure/protocol/messages.proto

bench: setup deps-node
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) tests/node/node_modules
