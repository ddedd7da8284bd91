# The kit's commands. Everything runs from the repository root with the project's
# virtual environment (.venv), made by `make install`.
PY      ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
IMPL    ?= exercises
SRC     ?=
ONLY    ?=
CKPT    ?= runs/final.pt

.PHONY: help install install-nbgrader check test stubs data train sample bench bench-target experiments release gradescope nbgrader clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

install:  ## create .venv and install the pinned dependencies
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

install-nbgrader:  ## add nbgrader (for `make nbgrader` and its tests; pulls the Jupyter stack)
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-nbgrader.txt

check:  ## grade IMPL (default exercises/); ONLY="rmsnorm attention" to narrow
	$(PY) -m grader --impl $(IMPL) --checkpoint $(CKPT) $(if $(ONLY),--only $(ONLY))

test:  ## the kit's own tests
	$(PY) -m pytest -q tests

stubs:  ## regenerate exercises/ from the solutions' marked regions
	$(PY) -m classroom.stubs

data:  ## fetch and verify TinyShakespeare into data/ (SRC=path for a local copy)
	$(PY) -m lab.data $(if $(SRC),--src $(SRC))

train:  ## train the 4 x 256 model on TinyShakespeare with IMPL (Ctrl-C saves; --resume continues)
	$(PY) -m lab.train --impl $(IMPL) $(ARGS)

sample:  ## print text from a checkpoint (ARGS="--prompt ROMEO: --temperature 0.8")
	$(PY) -m lab.sample --checkpoint $(CKPT) $(ARGS)

bench:  ## measure speed (grader, batch grading, training throughput); results go to BENCHMARKS.md
	$(PY) -m grader.bench
	$(PY) -m lab.bench $(ARGS)

bench-target:  ## measure minutes until the solutions train under perplexity 2.5 (18 min wall on 2 CPU cores with native bf16, 33 without)
	$(PY) -m lab.bench --only target $(ARGS)

experiments:  ## run the six experiments on IMPL (NAME=residual to run one); plots in runs/experiments/
	$(PY) -m lab.experiments --impl $(IMPL) $(if $(NAME),--only $(NAME)) $(ARGS)

release:  ## build dist/student/: stubs, visible checks, lab/, data fetcher (ARGS=--with-experiments)
	$(PY) -m classroom.release $(ARGS)

gradescope:  ## build dist/gradescope.zip (setup.sh, run_autograder)
	$(PY) -m classroom.gradescope

nbgrader:  ## build the nbgrader course folder in dist/nbgrader/
	$(PY) -m classroom.nbgrader

clean:  ## remove build outputs (keeps data/ and runs/)
	rm -rf dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
