# tandem — developer entry points. `make demo` and `make test` are the README's two commands.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup demo test lint typecheck contracts check bench lock clean

# Create the virtualenv and install the locked dependencies (first run compiles
# llama-cpp-python: ~12 min on 2 cores; pip caches the wheel for later runs). Then
# bytecode for the editable tree, as pip writes it for an installed package: where
# PYTHONDONTWRITEBYTECODE is set, every command would compile its ~130 modules again
# (~0.2-0.3 s of `tandem ask` on 2 cores).
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q agents workers graphs > /dev/null
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/tandem demo

# Every tier: fast, integration (processes, servers, venvs) and embedded (the real bundled
# models) — what CI runs. A bare `pytest` runs the fast tier only (pyproject.toml addopts).
test: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# mypy cannot follow setuptools' package-dir mapping: give it a tandem/ view of the tree.
typecheck: $(STAMP)
	mkdir -p .typecheck/tandem
	for p in agents workers graphs; do ln -sfn ../../$$p .typecheck/tandem/$$p; done
	MYPYPATH=.typecheck $(BIN)/mypy -p tandem.agents -p tandem.workers -p tandem.graphs

# The dependency rule (docs/architecture.md): import-linter's contracts in pyproject.toml.
contracts: $(STAMP)
	$(BIN)/lint-imports --no-cache

# Everything but the tests: lint, format, strict types, the import contracts (CI runs it).
check: lint typecheck contracts

# Every benchmark side by side; writes benchmarks/RESULTS.md and benchmarks/charts/*.png.
# BENCH=economy,router runs some only; BENCH_EVAL_LIMIT=N|all|0 sizes the real-model eval,
# BENCH_LEARNING_SAMPLE=N (default 4) the repeat workload on the bundled models.
BENCH ?= economy,overhead,router,retrieval,embedding,concurrency,serve,eval,calibration,learning,learning-bundled
bench: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(if $(BENCH_EVAL_LIMIT),BENCH_EVAL_LIMIT=$(BENCH_EVAL_LIMIT)) \
		$(if $(BENCH_LEARNING_SAMPLE),BENCH_LEARNING_SAMPLE=$(BENCH_LEARNING_SAMPLE)) \
		$(BIN)/python benchmarks/run.py --only $(BENCH)

lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra embedded --extra ner --extra serve --extra dev -o requirements.lock --python-version 3.11

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
