# `make run`: set up and train the default recipe on Fashion-MNIST.
# `make test`: set up and run the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RECIPE ?= configs/fashion_mnist/default.yaml

.PHONY: run test setup data bench clean

# torch is pinned exactly and installed first: pip then takes the CPU wheel from local disk
# instead of resolving a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

data: $(STAMP)
	@sh scripts/ensure_data.sh $(PY)

run: data
	$(VENV)/bin/archlab train -c $(RECIPE)

test: $(STAMP)
	@sh scripts/ensure_chromium.sh
	@sh scripts/ensure_text_data.sh
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) bench/trainer_overhead.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/lm_trainer_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
