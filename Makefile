# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

# Reinstall only when the declared dependencies change. The Quality Checker's log-WMSE reads the hearing filter
# shipped in torch-log-wmse 0.3.1, which declares torchaudio (no wheel for our torch): it goes in without deps.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps torch-log-wmse==0.3.1
	touch $(STAMP)

run: install
	$(BIN)/openmvsep serve  # 127.0.0.1:8000 and ./data unless OPENMVSEP_* say otherwise

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build src/*.egg-info
