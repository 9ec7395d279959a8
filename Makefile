# The two commands of the README, and the checks CI runs.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SDWORKER_MODELS_DIR ?= models

.PHONY: run test test-without-torch lint setup wheel-smoke image-smoke clean

## run: set up, bake the offline tiny model, generate test_input.json's images into outputs/
run: $(STAMP)
	@test -f $(SDWORKER_MODELS_DIR)/tiny/sdworker.json || $(BIN)/sdworker bake tiny
	$(BIN)/sdworker generate test_input.json -o outputs

## test: set up and run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-without-torch: the unit tests not marked torch, with torch hidden (they must not need it)
test-without-torch: $(STAMP)
	PYTHONPATH=tests/without_torch $(BIN)/python -m pytest -q -m "not torch" tests/unit

## wheel-smoke: build the wheel, install it in a new venv, bake, generate and serve from an empty folder
wheel-smoke: $(STAMP)
	bash scripts/wheel_smoke.sh

## image-smoke: build the Dockerfile with buildah (MODEL_ID=tiny) and run the worker, the endpoint and the unit tests inside it
image-smoke: $(STAMP)
	bash scripts/image_smoke.sh

## lint: ruff (lint and format), mypy, the import layers (import-linter), hadolint
lint: $(STAMP)
	$(BIN)/ruff check src tests bench builder handler.py
	$(BIN)/ruff format --check src tests bench builder handler.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	for script in scripts/*.sh builder/*.sh; do bash -n "$$script"; done

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh src/sdworker/__init__.py
	bash scripts/setup.sh
	@touch $@

clean:
	rm -rf $(VENV) outputs .sdworker .pytest_cache .mypy_cache .ruff_cache
