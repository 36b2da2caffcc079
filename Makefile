# The two commands a newcomer needs (see README.md):
#   make book   build the jupyter-book site into _build/html from the notebooks' stored outputs
#   make test   run the unit tests and every notebook (nbval, smoke profile)
# Both create or reuse the virtual environment in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= cpu
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: book test test-unit test-nodata test-backend test-backend-unit test-backend-notebooks test-colab \
	gpu-check notebooks benchmarks results clean-book help

help:
	@echo "make book        build the site into _build/html (stored outputs; no GPU, no data needed)"
	@echo "make test        unit tests + nbval over every notebook (smoke profile)"
	@echo "make test-unit   unit tests only"
	@echo "make test-nodata nbval over every notebook with no ISBI data and no network (synthetic data)"
	@echo "make test-backend BACKEND=jax   unit tests and every notebook on another Keras backend (jax or torch)"
	@echo "                 in .venv-BACKEND; CHAPTERS=01 runs one chapter (test-backend-notebooks: notebooks only)"
	@echo "make test-colab  unit tests + nbval on Google Colab's Python and versions (requirements-colab.txt), in .venv-colab"
	@echo "make notebooks PROFILE=cpu   re-run every notebook and store its outputs"
	@echo "make benchmarks  print the speed figures of benchmarks/"
	@echo "make gpu-check   on a GPU machine: step times, memory and a 3-minute chapter-5 run (benchmarks/results/gpu_check.json)"
	@echo "make results PROFILE=cpu   train every recipe variant (hours) and print the results table"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed (Keras 3.14+)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going  # warnings (a missing file or reference) fail the build
	@test -f _build/html/index.html && echo "The book is in _build/html/index.html"

# The chapters run under nbval as copies in which the folded exercise solutions are code
# cells again (tools/solutions.py), so every solution runs too. The docstring Examples of the
# package run as tests, and ruff checks the code. pytest exits 5 when it collects nothing:
# say so, and fail.
FULL_NOTEBOOKS := notebooks/_with_solutions
# Which chapters the nbval targets run, as file name starts: CHAPTERS=01 or CHAPTERS="01 07".
CHAPTERS ?= [0-9]
CHAPTER_FILES = $(foreach chapter,$(CHAPTERS),notebooks/$(chapter)*.ipynb)
NO_TESTS = if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests; nothing was checked."; fi

# $(call expand,PYTHON,FOLDER): the chapters with their solutions in FOLDER, which must lie below
# the repository (chapter 9 finds benchmarks/ from there); outside notebooks/ it gets a copy of
# notebooks/conftest.py, the nbval settings.
expand = rm -rf $(2) && $(1) tools/solutions.py expand $(CHAPTER_FILES) --out $(2) && \
	case "$(2)" in notebooks/*) ;; *) cp notebooks/conftest.py $(2)/ ;; esac

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/solutions.py check notebooks/[0-9]*.ipynb
	$(call expand,$(PY),$(FULL_NOTEBOOKS))
	UNET_TUTORIAL_PROFILE=smoke MPLBACKEND=Agg $(PY) -m pytest tests unet_tutorial $(FULL_NOTEBOOKS) \
		--doctest-modules --nbval-lax --nbval-current-env -p no:cacheprovider -ra; \
	status=$$?; $(NO_TESTS); exit $$status

# A newcomer's first run: every chapter under nbval with no ISBI data on disk and no network. Only
# the notebooks (make test runs the unit tests). UNET_TUTORIAL_DATA is unset, the download cache is
# a new empty folder and the only download mirror an address that refuses connections (port 9 of
# this machine), so the data loader finds nothing and the chapters fall back to synthetic data and
# say so; the first command checks that it does. NODATA_NOTEBOOKS: where the copies run (a folder
# of its own, so that make test can run at the same time).
NODATA_NOTEBOOKS ?= $(VENV)/nodata-notebooks
NO_NETWORK = env -u UNET_TUTORIAL_DATA UNET_TUTORIAL_CACHE="$$cache" UNET_TUTORIAL_MIRRORS=http://127.0.0.1:9/

test-nodata: $(STAMP)
	$(call expand,$(PY),$(NODATA_NOTEBOOKS))
	@cache=$$(mktemp -d); \
	$(NO_NETWORK) $(PY) -W ignore -c 'from unet_tutorial import data; \
		ds = data.load_isbi2012_or_synthetic(); \
		assert ds.is_synthetic, f"found ISBI data at {ds.source}: not a no-data run"; \
		print("no data, no network:", ds.note.splitlines()[0])' && \
	$(NO_NETWORK) UNET_TUTORIAL_PROFILE=smoke MPLBACKEND=Agg $(PY) -m pytest $(NODATA_NOTEBOOKS) \
		--nbval-lax --nbval-current-env -p no:cacheprovider -ra; \
	status=$$?; rm -rf "$$cache"; $(NO_TESTS); exit $$status

test-unit: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests -p no:cacheprovider -ra

# The package is written with keras.ops, so it must run on every Keras backend. Each backend
# gets its own environment without TensorFlow (the book's requirements minus TensorFlow and the
# site tools). BACKEND_PACKAGES names what to install: on a machine without a GPU, for example,
# BACKEND_PACKAGES="torch --index-url https://download.pytorch.org/whl/cpu" avoids the CUDA wheels.
BACKEND ?= jax
BACKEND_PACKAGES ?= $(if $(filter torch,$(BACKEND)),torch,jax)
BACKEND_VENV := .venv-$(BACKEND)
# (named so since nbval joined that environment: an older one without it is completed once)
BACKEND_STAMP := $(BACKEND_VENV)/.installed-with-nbval

$(BACKEND_STAMP): requirements.txt pyproject.toml
	@case "$(BACKEND)" in jax|torch) ;; *) echo "BACKEND must be jax or torch (tensorflow is what make test uses)"; exit 2;; esac
	test -x $(BACKEND_VENV)/bin/python || $(PYTHON) -m venv $(BACKEND_VENV)
	$(BACKEND_VENV)/bin/python -m pip install --quiet --upgrade pip
	grep -v -E '^(tensorflow|jupyter-book)\b' requirements.txt > $(BACKEND_VENV)/requirements.txt
	$(BACKEND_VENV)/bin/python -m pip install --quiet -r $(BACKEND_VENV)/requirements.txt $(BACKEND_PACKAGES)
	$(BACKEND_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(BACKEND_STAMP)

# The unit tests (not the book's checks, which need TensorFlow's environment), then every chapter
# under nbval on that backend (smoke profile, solutions expanded, copies in .venv-BACKEND/notebooks).
# Too slow for CI: on JAX about 2 minutes per chapter on one CPU core, twice TensorFlow's time
# (18 minutes for all nine; JAX compiles every new input shape).
test-backend: test-backend-unit test-backend-notebooks

test-backend-unit: $(BACKEND_STAMP)
	KERAS_BACKEND=$(BACKEND) MPLBACKEND=Agg $(BACKEND_VENV)/bin/python -m pytest tests -p no:cacheprovider -ra \
		--ignore=tests/test_book.py

test-backend-notebooks: $(BACKEND_STAMP)
	$(call expand,$(BACKEND_VENV)/bin/python,$(BACKEND_VENV)/notebooks)
	KERAS_BACKEND=$(BACKEND) UNET_TUTORIAL_PROFILE=smoke MPLBACKEND=Agg $(BACKEND_VENV)/bin/python -m pytest \
		$(BACKEND_VENV)/notebooks --nbval-lax --nbval-current-env -p no:cacheprovider -ra; \
	status=$$?; $(NO_TESTS); exit $$status

# Google Colab's stack: Python 3.13 and the versions of requirements-colab.txt (copied from
# googlecolab/backend-info) in .venv-colab, kept until that file changes. The package goes in
# the way the chapters' install cell puts it there, `pip install "git+<repository>"` without
# the [tensorflow] extra, so pip keeps Colab's TensorFlow and upgrades Colab's Keras to what
# pyproject.toml asks for. The repository is this one, so what is tested is the committed HEAD,
# not the working tree: its package, and its tests and notebooks (exported to .venv-colab/head),
# so that the three match. A new commit replaces the package (same version number, hence
# --force-reinstall --no-deps), then the install cell's command adds what the new commit needs.
COLAB_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin/python
COLAB_VENV := .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_COMMIT := $(COLAB_VENV)/.package-commit
COLAB_TREE := $(COLAB_VENV)/head
COLAB_PACKAGE = unet-tutorial @ git+file://$(CURDIR)@$$head

$(COLAB_STAMP): requirements-colab.txt
	@test -x "$(COLAB_PYTHON)" || { echo "Python 3.13 not found at $(COLAB_PYTHON): install it with pyenv or set COLAB_PYTHON"; exit 2; }
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet -r requirements-colab.txt nbval nbclient pytest
	touch $(COLAB_STAMP)

# As make test: the chapters with their solutions expanded, and the package's docstring
# examples (those of the installed package, --pyargs). Run with bin/pytest, not python -m pytest,
# so that the tests import the installed package.
test-colab: $(COLAB_STAMP)
	@head=$$(git rev-parse HEAD); \
	if [ "$$(cat $(COLAB_COMMIT) 2>/dev/null)" != "$$head" ]; then \
		echo "Installing unet-tutorial from commit $$head as the chapters' install cell does"; \
		if [ -f $(COLAB_COMMIT) ]; then \
			$(COLAB_PY) -m pip install --quiet --force-reinstall --no-deps "$(COLAB_PACKAGE)" || exit 1; \
		fi; \
		$(COLAB_PY) -m pip install --quiet "$(COLAB_PACKAGE)" || exit 1; \
		echo "$$head" > $(COLAB_COMMIT); \
	fi; \
	if [ -n "$$(git status --porcelain --untracked-files=no)" ]; then \
		echo "NOTE: the working tree has uncommitted changes; they are not tested (this tests commit $$head)."; \
	fi; \
	rm -rf $(COLAB_TREE) && mkdir -p $(COLAB_TREE) && git archive "$$head" | tar -x -C $(COLAB_TREE)
	TF_CPP_MIN_LOG_LEVEL=3 $(COLAB_PY) tools/colab_stack.py
	cd $(COLAB_TREE) && notebooks=notebooks; \
	if [ -f tools/solutions.py ]; then \
		../bin/python tools/solutions.py expand notebooks/[0-9]*.ipynb --out $(FULL_NOTEBOOKS) || exit 1; \
		notebooks=$(FULL_NOTEBOOKS); \
	fi; \
	UNET_TUTORIAL_PROFILE=smoke MPLBACKEND=Agg ../bin/pytest tests $$notebooks \
		--doctest-modules --nbval-lax --nbval-current-env -p no:cacheprovider -ra; \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests; nothing was checked."; fi; \
	MPLBACKEND=Agg ../bin/pytest --pyargs unet_tutorial --doctest-modules -p no:cacheprovider -q -ra; \
	doctests=$$?; \
	if [ $$status -eq 0 ]; then status=$$doctests; fi; \
	exit $$status

notebooks: $(STAMP)
	$(PY) tools/run_notebooks.py --profile $(PROFILE)

benchmarks: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# On a GPU machine: the paper's network timed per batch, precision and XLA setting, then chapter 5's
# gpu profile trained for 3 minutes and scored (tools/gpu_check.py; about 8 minutes). It runs on
# the Python given as GPU_PYTHON, not in .venv: a GPU machine brings its own JAX or PyTorch, and the
# check needs no TensorFlow. Options go in GPU_CHECK_ARGS, e.g. GPU_CHECK_ARGS="--policies mixed_bfloat16".
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 $(GPU_PYTHON) tools/gpu_check.py $(GPU_CHECK_ARGS)

# The paper's recipe against the popular one (about 4 h with PROFILE=cpu: run it on a quiet machine).
results: $(STAMP)
	$(PY) benchmarks/recipes.py run --all --seeds 0 1 --profile $(PROFILE)
	$(PY) benchmarks/recipes.py summarize --profile $(PROFILE)

clean-book:
	rm -rf _build
