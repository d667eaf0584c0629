# The two README commands. Each builds .venv from the pinned requirements when it is missing or stale.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-kernels lint venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unprior demo

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow" || test $$? -eq 5

# The numerics-sensitive tests (marker `numerics`: learned-quality thresholds, equivalence tests) again under torch's
# baseline CPU kernels, which sum floats in another order, as another CPU would (docs/tests.md). .ci/run runs it.
BASELINE_KERNELS := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41
test-kernels: $(STAMP)
	$(BASELINE_KERNELS) $(VENV)/bin/python -m pytest -q -m "numerics and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check unprior tests bench
