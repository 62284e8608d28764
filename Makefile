# Two commands matter: `make test` (unit tests, every notebook at smoke with nbval's output checks,
# the student edition and the capped gpu profile, and in a browser) and
# `make run` (every notebook at the laptop profile, with the summary table of its claims).
# Both create the virtual environment in .venv on first use. `make robust` measures how often the
# claims hold over the grid of parameters each method notebook declares (ROBUST_GRID).

PYTHON    ?= python3
VENV      ?= .venv
PROFILE   ?= laptop
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
METHOD_NOTEBOOKS := $(sort $(wildcard notebooks/0[1-9]_*.ipynb))
NB        ?=
SUBMISSIONS ?= submissions
OUT       ?= graded
J         ?= 2
TIMEOUT   ?= 900
TORCH_SPEC       := "torch>=2.4,<3" "torchvision>=0.19,<1"

CLASS_CACHE ?= .cache/class
# make run, make cache and make robust execute this many notebooks at a time (2 cores: 2)
RUN_JOBS ?= 2
# make test runs in this many pytest-xdist workers, each on one torch thread (2 cores: 2)
TEST_WORKERS ?= 2

.PHONY: env test unit nbval run robust cache lab student grade report clean-cache clean help

help:
	@echo "make env    create .venv and install tutorial_lib with everything it needs"
	@echo "make test   unit tests; every notebook at smoke (checked against its stored outputs as nbval does,"
	@echo "            its widgets repeated, its student edition's checks), capped at gpu, and in a browser"
	@echo "make nbval  nbval itself on the committed notebooks (make test already compares the same outputs)"
	@echo "make run    execute every notebook at PROFILE=$(PROFILE) into executed/ ($(RUN_JOBS) at a time: RUN_JOBS=1"
	@echo "            for one after another) and print the claims table"
	@echo "make robust run each method notebook over its ROBUST_GRID at PROFILE=$(PROFILE) (NB=02: only 02_*);"
	@echo "            hold rate of every claim in results/robust/<notebook>.json and a claim x run table"
	@echo "make cache  train every model of the laptop profile into $(CLASS_CACHE) and pack it with its"
	@echo "            checksums into class-cache.tar.gz (for a class: see the README)"
	@echo "make lab    open JupyterLab on notebooks/"
	@echo "make student  write student/ notebooks (solutions stubbed) and the nbgrader course folder nbgrader/"
	@echo "make grade NB=02 [SUBMISSIONS=submissions OUT=graded J=2 TIMEOUT=900 PROFILE=smoke]"
	@echo "              grade SUBMISSIONS/<student>/02_*.ipynb: OUT/grades.csv, feedback and summary pages"
	@echo "make report   HTML site of the notebooks executed by make run, with the claims table and the"
	@echo "              robustness tables of make robust (formulas typeset offline)"

env: $(STAMP)

# A half-made environment (a failed `python3 -m venv` leaves a python without pip) is removed and
# made again; when venv itself fails, nothing is left behind and the message says what to install.
$(STAMP): pyproject.toml
	@$(PY) -c "import sys, pip; sys.exit(sys.prefix == sys.base_prefix)" >/dev/null 2>&1 || { \
	  rm -rf $(VENV); echo "creating $(VENV) with $(PYTHON) -m venv"; \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "error: '$(PYTHON) -m venv' failed and nothing was left behind. On Debian or Ubuntu install" >&2; \
	    echo "       the venv module (apt-get install python3-venv), then run make again." >&2; exit 1; }; }
	@echo "installing tutorial_lib and its dependencies into $(VENV) (about 6.4 GB with torch's CUDA"
	@echo "libraries; pip lists each package as it goes)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e ".[course,grade,dev]"
	@# A CPU-only torch from a local wheel cannot load PyPI's torchvision (built against CUDA torch).
	@# Detect that and install the matching pair from PyPI, ignoring the machine's pip configuration.
	@$(PY) -c "import torchvision" 2>/dev/null || { \
	  echo "torchvision does not load against the installed torch build; installing the matching"; \
	  echo "torch/torchvision pair from PyPI (pip --isolated ignores the local pip configuration)."; \
	  $(PY) -m pip uninstall --quiet -y torch torchvision && \
	  $(PY) -m pip install --quiet --isolated $(TORCH_SPEC); }
	$(PY) -c "import torch, torchvision, tutorial_lib; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| tutorial_lib', tutorial_lib.__version__)"
	@touch $(STAMP)

# Smoke runs use a fresh checkpoint cache so that they test training from scratch; the browser runs
# then load what they trained (tests/test_browser.py).
test: $(STAMP)
	rm -rf .cache/test .cache/test-results/notebook_wall_times
	CI=$${CI:-1} TUTORIAL_PROFILE=smoke TUTORIAL_CACHE=$(CURDIR)/.cache/test \
	TUTORIAL_RESULTS_DIR=$(CURDIR)/.cache/test-results OMP_NUM_THREADS=1 \
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --durations=15 --timeout=1200 -p no:cacheprovider

nbval: $(STAMP)
	CI=$${CI:-1} TUTORIAL_PROFILE=smoke TUTORIAL_CACHE=$(CURDIR)/.cache/test \
	TUTORIAL_RESULTS_DIR=$(CURDIR)/.cache/test-results \
	$(PY) -m pytest notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider

unit: $(STAMP)
	$(PY) -m pytest tests -m "not notebook" -p no:cacheprovider

run: $(STAMP)
	$(PY) -m tutorial_lib.runner --profile $(PROFILE) --jobs $(RUN_JOBS) --out executed $(NOTEBOOKS)

robust: $(STAMP)
	$(PY) -m tutorial_lib.robust --profile $(PROFILE) --jobs $(RUN_JOBS) --out results/robust --executed executed/robust \
	  $(if $(NB),--nb $(NB)) $(METHOD_NOTEBOOKS)

# A class cache: every model of the laptop profile, trained once, packed with SHA-256 checksums.
cache: $(STAMP)
	TUTORIAL_CACHE=$(CURDIR)/$(CLASS_CACHE) $(PY) -m tutorial_lib.runner --profile laptop --jobs $(RUN_JOBS) \
	  --out .cache/class-executed $(NOTEBOOKS)
	$(PY) -m tutorial_lib.classcache pack $(CLASS_CACHE) class-cache.tar.gz

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-cache:
	$(PY) -c "from tutorial_lib.checkpoints import clear_cache; print(clear_cache(), 'checkpoints removed')"

clean:
	rm -rf executed results report student nbgrader graded .cache .pytest_cache

# Course edition: student notebooks (solutions stubbed, outputs cleared) and a static HTML report.
student: $(STAMP)
	$(PY) -m tutorial_lib.student notebooks student --nbgrader nbgrader

# Grading a class: make grade NB=02 SUBMISSIONS=submissions OUT=graded (PROFILE defaults to smoke here).
grade: $(STAMP)
	@test -n "$(NB)" || { echo "make grade needs NB=<notebook number>, e.g. make grade NB=02"; exit 2; }
	$(PY) -m tutorial_lib.grade $(SUBMISSIONS) --notebook $(NB) --out $(OUT) -j $(J) --timeout $(TIMEOUT) \
	  --profile $(if $(filter command line,$(origin PROFILE)),$(PROFILE),smoke)

report: $(STAMP)
	$(PY) -m tutorial_lib.report --executed executed --results results --out report
