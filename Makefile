# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install run test lint bench clean

install: $(RUN_STAMP)

# `make run` installs what serving needs and nothing more; the test extras (pytest, SeaweedFS, celery, boto3,
# the metric oracles) come only with `make test`. Each stamp reinstalls only when the declared dependencies
# change. The Quality Checker's log-WMSE reads the hearing filter shipped in torch-log-wmse 0.3.1, which
# declares torchaudio (no wheel for our torch): it goes in without deps, at run time too. So do the wheels that
# ship the transcribers' models (basic-pitch: an ONNX model, whose pins pull an old TensorFlow on Python >= 3.11;
# transkun: a checkpoint, whose pins pull training tools); what their models need at run time is in pyproject.
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps torch-log-wmse==0.3.1
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps basic-pitch==0.4.0 transkun==2.0.1
	touch $@

$(TEST_STAMP): $(RUN_STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

run: install
	$(BIN)/openmvsep serve  # 127.0.0.1:8000 and ./data unless OPENMVSEP_* say otherwise

# The checks that keep the house in order (docs/architecture.md): lint and format, types, the layer contracts.
lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build src/*.egg-info
