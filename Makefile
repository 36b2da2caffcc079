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

.PHONY: book test test-unit notebooks benchmarks results clean-book help

help:
	@echo "make book        build the site into _build/html (stored outputs; no GPU, no data needed)"
	@echo "make test        unit tests + nbval over every notebook (smoke profile)"
	@echo "make test-unit   unit tests only"
	@echo "make notebooks PROFILE=cpu   re-run every notebook and store its outputs"
	@echo "make benchmarks  print the speed figures of benchmarks/"
	@echo "make results PROFILE=cpu   train every recipe variant (hours) and print the results table"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going  # warnings (a missing file or reference) fail the build
	@test -f _build/html/index.html && echo "The book is in _build/html/index.html"

# pytest exits 5 when it collects nothing: say so, and fail.
test: $(STAMP)
	UNET_TUTORIAL_PROFILE=smoke MPLBACKEND=Agg $(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env -p no:cacheprovider -ra; \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests; nothing was checked."; fi; \
	exit $$status

test-unit: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests -p no:cacheprovider -ra

notebooks: $(STAMP)
	$(PY) tools/run_notebooks.py --profile $(PROFILE)

benchmarks: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# The paper's recipe against the popular one (about 4 h with PROFILE=cpu: run it on a quiet machine).
results: $(STAMP)
	$(PY) benchmarks/recipes.py run --all --seeds 0 1 --profile $(PROFILE)
	$(PY) benchmarks/recipes.py summarize --profile $(PROFILE)

clean-book:
	rm -rf _build
