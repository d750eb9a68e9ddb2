# Two commands are all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test pytest lint bench-registry clean grpc-proto

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops demo
	@echo "Serving the demo at http://127.0.0.1:8000 (Ctrl-C stops it)"
	$(BIN)/mlops serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check mlops tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# two workers (CI has two cores); a test file runs whole in one worker, so its module
# fixtures (servers, stores) are built once
# mlops is compiled to bytecode first: the suite starts the CLI in many subprocesses,
# and where PYTHONDONTWRITEBYTECODE is set each of them would compile it again (~0.1 s)
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	$(BIN)/python -m compileall -q mlops
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: lint pytest

# The Open Inference Protocol's gRPC code, generated from the committed KServe proto (the
# generated files are committed; tests/serving/test_grpc.py checks that they match it).
GRPC_PROTO := mlops/serving/grpc/proto/grpc_predict_v2.proto
grpc-proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
		$(GRPC_PROTO)

bench-registry: $(STAMP)
	$(BIN)/python bench/registry.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache .mypy_cache .ruff_cache

# Serving benchmark: MLServer pins its own FastAPI/pydantic, so it gets a venv of its own.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: bench-env bench-serving

# mlops goes in too, editable, for bench/drift.py (Evidently needs pandas<3): with its own
# dependencies it resolves against MLServer's and Evidently's pins without changing any of them
# (FastAPI, Starlette, pydantic and pandas stay as MLServer/Evidently want), so no --no-deps.
$(BENCH_STAMP): bench/requirements.txt pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	@touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

bench-serving: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/serving.py

# Drift benchmark: detect_drift vs a scipy per-column loop vs Evidently's DataDriftPreset.
# Evidently 0.7 fails to import with pandas 3, so the whole comparison runs in .venv-bench.
.PHONY: bench-drift

bench-drift: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/drift.py

# Scale-out benchmark: 1/2/4 gateway processes, route-change propagation (LISTEN/NOTIFY vs
# poll), leader failover; PostgreSQL on 127.0.0.1:5432, moto's S3 server, wrk.
.PHONY: bench-scale

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# Canary analysis benchmark: threshold rules vs naive peeking vs the mSPRT (numpy only).
.PHONY: bench-canary

bench-canary: $(STAMP)
	$(BIN)/python bench/canary.py

# Monitoring windows over a 10M-row prediction log: DuckDB vs pyarrow + pandas.
# Full CI pipeline on the demo model with 10k test rows.
.PHONY: bench-monitoring bench-pipeline

bench-monitoring: $(STAMP)
	$(BIN)/python bench/monitoring.py

bench-pipeline: $(STAMP)
	$(BIN)/python bench/pipeline.py

# Rollout controller tick with 0.1M, 1M and 10M logged rows, next to a full re-read.
.PHONY: bench-rollout-tick

bench-rollout-tick: $(STAMP)
	$(BIN)/python bench/rollout_tick.py
