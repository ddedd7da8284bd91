# The kit's commands. Everything runs from the repository root with the project's
# virtual environment (.venv), made by `make install`. Each target is one `python -m ...`
# command (shown by `make -n TARGET`), so the kit works without make too (README: "On your machine").
PY      ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,$(if $(wildcard .venv/Scripts/python.exe),.venv/Scripts/python.exe,python3))
IMPL    ?= exercises
SRC     ?=
ONLY    ?=
CKPT    ?= runs/final.pt

# `make check LANG=zh`: a bare language code (en, zh) given as LANG on make's command line names the kit's
# language, not a locale: it becomes KIT_LANG (kit/i18n.py), and LANG=zh is not handed to the commands (no
# locale is called "zh"; the commands then take the C.UTF-8 locale). A full locale (LANG=zh_CN.UTF-8) stays a
# locale, which kit/i18n.py reads as well; C.UTF-8 or en_US.UTF-8 mean English.
ifeq ($(origin LANG),command line)
ifeq ($(findstring _,$(LANG))$(findstring .,$(LANG)),)
KIT_LANG := $(LANG)
RELEASE_LANG := $(LANG)
unexport LANG
export KIT_LANG
endif
endif

.PHONY: help install install-nbgrader check test stubs docs locale data train sample bench bench-target experiments release gradescope nbgrader workflow clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

# torch: the CPU build from PyTorch's CPU index wherever there is no GPU (Linux without NVIDIA's driver or nvidia-smi: PyPI's
# Linux torch is the CUDA build, about 4.9 GB), PyPI's where that index cannot be reached; PyPI's on macOS and
# Windows (CPU builds there) and next to an NVIDIA driver. TORCH=cpu or TORCH=pypi decides instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH       ?= $(if $(and $(filter Linux,$(shell uname -s 2>/dev/null)),$(if $(or $(wildcard /proc/driver/nvidia),$(shell \
                 command -v nvidia-smi 2>/dev/null)),,1)),cpu,pypi)
TORCH_CPU    = .venv/bin/python -m pip install -q --disable-pip-version-check --retries 1 --timeout 30 \
	--index-url $(TORCH_INDEX) "$$(grep -E '^torch==' requirements.txt)" || echo "make install: $(TORCH_INDEX) \
	cannot be reached, so torch comes from PyPI: on Linux its CUDA build, about 4.9 GB (README.md, Installing)"

install:  ## create .venv and install the pinned dependencies (torch's CPU build where there is no GPU)
	test -x .venv/bin/python || python3 -m venv .venv
	$(if $(filter cpu,$(TORCH)),$(TORCH_CPU))
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

install-nbgrader:  ## add nbgrader (for `make nbgrader` and its tests; pulls the Jupyter stack)
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-nbgrader.txt

# a failed check is the grade, not an error: make fails only when nothing could be graded (grader/__main__.py)
check:  ## grade IMPL (default exercises/); ONLY="rmsnorm attention" to narrow
	@mkdir -p runs
	$(PY) -m grader --impl $(IMPL) --checkpoint $(CKPT) $(if $(ONLY),--only $(ONLY)) \
		--html runs/report.html || test $$? -eq 1

# a worker a core (pytest-xdist), each test file in one worker (its module fixtures are made once); each worker's
# torch gets its share of the cores (tests/conftest.py). A .venv from before xdist runs them one at a time.
XDIST = $(shell $(PY) -c "import xdist" >/dev/null 2>&1 && echo "-n auto --dist loadfile")
test:  ## the kit's own tests
	$(PY) -m pytest -q $(XDIST) --durations=15 tests

stubs:  ## regenerate exercises/ from the solutions' marked regions
	$(PY) -m classroom.stubs

docs:  ## regenerate the generated parts of the docs (README points table, docs/bug-zoo.md)
	$(PY) -m classroom.docs
	$(PY) -m tests.mutants.table

# the messages' catalogs: the code's English messages (marked _() / N_()) into locale/kit.pot, merged into each
# language's .po (translated by hand), compiled to the .mo the kit reads (committed: running needs no Babel);
# from kit/syllabus.py, what each unit builds (Unit's 4th argument: the README's points table); from the grader,
# every T() of a failure's words (kit/outcome.py) and each check's title (kit.i18n.extract, locale/babel.cfg)
LOCALE_SOURCES = kit/checkpoint.py kit/cli.py kit/corpus.py kit/i18n.py kit/loader.py kit/machine.py kit/outcome.py \
	kit/perplexity.py kit/syllabus.py kit/tensorpack.py \
	grader/__main__.py grader/checks grader/compare.py grader/diagnose grader/harness.py \
	grader/measure.py grader/policy.py grader/protocol.py grader/reference.py grader/report.py \
	grader/run.py grader/runner.py grader/sandbox.py \
	classroom/gradescope.py classroom/nbgrader.py classroom/nbgrader_autograde.py classroom/notebook \
	classroom/release.py \
	lab/config.py lab/data.py lab/experiments lab/model.py lab/sample.py lab/train.py
locale:  ## update locale/*/LC_MESSAGES/kit.po from the code's messages and compile kit.mo (needs Babel, pinned in requirements-nbgrader.txt)
	$(PY) -m babel.messages.frontend extract -F locale/babel.cfg -k N_ -k Unit:4 -k T --add-location=file \
		--sort-by-file --project transformer-kit -o locale/kit.pot $(LOCALE_SOURCES)
	$(PY) -m babel.messages.frontend update -i locale/kit.pot -d locale -D kit --ignore-obsolete --no-fuzzy-matching
	$(PY) -m babel.messages.frontend compile -d locale -D kit --statistics

data:  ## verify data/tinyshakespeare.txt, or fetch it again (SRC=path for a local copy)
	$(PY) -m lab.data $(if $(SRC),--src $(SRC))

train:  ## train the 4 x 256 model on TinyShakespeare with IMPL (Ctrl-C saves; ARGS=--resume continues)
	$(PY) -m lab.train --impl $(IMPL) $(ARGS)

sample:  ## print text from a checkpoint (ARGS="--prompt ROMEO: --temperature 0.8")
	$(PY) -m lab.sample --checkpoint $(CKPT) $(ARGS)

bench:  ## measure grading time and memory, batch grading, training throughput; results go to BENCHMARKS.md
	$(PY) -m grader.bench
	$(PY) -m lab.bench $(ARGS)

bench-target:  ## measure minutes until the solutions train under perplexity 2.5 (BENCHMARKS.md has past runs)
	$(PY) -m lab.bench --only target $(ARGS)

experiments:  ## run the six experiments on IMPL (NAME=residual to run one); plots in runs/experiments/
	$(PY) -m lab.experiments --impl $(IMPL) $(if $(NAME),--only $(NAME)) $(ARGS)

release:  ## build dist/student/: stubs, every check with the reference's recorded answers, lab/ (ARGS=--with-experiments)
	$(PY) -m classroom.release $(if $(RELEASE_LANG),--lang $(RELEASE_LANG)) $(ARGS)

gradescope:  ## build dist/gradescope.zip (SEED=... the course's grading seed; else a new one, kept beside the zip)
	$(PY) -m classroom.gradescope $(if $(SEED),--seed $(SEED)) $(ARGS)

nbgrader:  ## build the nbgrader course folder in dist/nbgrader/ (LANG=zh: the course in Chinese)
	$(PY) -m classroom.nbgrader $(if $(RELEASE_LANG),--lang $(RELEASE_LANG))

workflow:  ## print the GitHub Classroom workflow (ARGS="--out PATH" to write it)
	$(PY) -m classroom.github $(ARGS)

clean:  ## remove build outputs (keeps data/ and runs/)
	rm -rf dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
