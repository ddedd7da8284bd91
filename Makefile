# The kit's commands. Everything runs from the repository root with the project's
# virtual environment (.venv), made by `make install`. Each target is one `python -m ...`
# command (shown by `make -n TARGET`), so the kit works without make too (README: "On your machine").
PY      ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,$(if $(wildcard .venv/Scripts/python.exe),.venv/Scripts/python.exe,python3))
IMPL    ?= exercises
SRC     ?=
ONLY    ?=
CKPT    ?= runs/final.pt

.PHONY: help install install-nbgrader check test stubs docs data train sample bench bench-target experiments release gradescope nbgrader workflow clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

install:  ## create .venv and install the pinned dependencies
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

install-nbgrader:  ## add nbgrader (for `make nbgrader` and its tests; pulls the Jupyter stack)
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-nbgrader.txt

# a failed check is the grade, not an error: make fails only when nothing could be graded (grader/__main__.py)
check:  ## grade IMPL (default exercises/); ONLY="rmsnorm attention" to narrow
	@mkdir -p runs
	$(PY) -m grader --impl $(IMPL) --checkpoint $(CKPT) $(if $(ONLY),--only $(ONLY)) \
		--html runs/report.html || test $$? -eq 1

test:  ## the kit's own tests
	$(PY) -m pytest -q tests

stubs:  ## regenerate exercises/ from the solutions' marked regions
	$(PY) -m classroom.stubs

docs:  ## regenerate the generated parts of the docs (README points table, docs/bug-zoo.md)
	$(PY) -m classroom.docs
	$(PY) -m tests.mutants.table

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
	$(PY) -m classroom.release $(ARGS)

gradescope:  ## build dist/gradescope.zip (SEED=... the course's grading seed; else a new one, kept beside the zip)
	$(PY) -m classroom.gradescope $(if $(SEED),--seed $(SEED)) $(ARGS)

nbgrader:  ## build the nbgrader course folder in dist/nbgrader/
	$(PY) -m classroom.nbgrader

workflow:  ## print the GitHub Classroom workflow (ARGS="--out PATH" to write it)
	$(PY) -m classroom.github $(ARGS)

clean:  ## remove build outputs (keeps data/ and runs/)
	rm -rf dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
