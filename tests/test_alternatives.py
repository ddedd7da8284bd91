"""Correct implementations written differently (tests/alternatives) get full marks: no false failures.

Every check of the modules an alternative replaces must pass, the 0-point INFO
checks included (they run the alternative with its own components); on the
published inputs and on two other seeds' (the graded flows run the checks on the
course's secret seed, ``grader.harness.seeded``), and the solutions with them.
"""
import pytest
from alternatives import ALTERNATIVES, build, modules, sets
from mutants import Grading, copy_solutions

from grader.report import failure_text
from kit.syllabus import MODULES

SETS = sets()
SEEDS = ("", "alt-secret-1", "2024")


@pytest.fixture(scope="module")
def grading(tmp_path_factory):
    g = Grading(tmp_path_factory.mktemp("alternatives"))
    yield g
    g.close()


def full_marks(results, modules):
    assert {r.unit for r in results} == set(modules)
    failed = [f"{r.unit}: {r.title}\n{failure_text(r.failure)}" for r in results if not r.passed]
    assert not failed, "a correct implementation lost points:\n\n" + "\n\n".join(failed)
    assert sum(r.score for r in results) == sum(r.points for r in results)


def test_there_are_enough_alternatives():
    assert len(ALTERNATIVES) >= 5
    assert sum(a.file == "attention.py" for a in ALTERNATIVES) >= 4


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s or 'published'}")
@pytest.mark.parametrize("group", SETS, ids=lambda grp: "+".join(a.source[:-3] for a in grp))
def test_alternatives_get_full_marks(grading, group, seed):
    folder = grading.root / "-".join(a.source[:-3] for a in group)
    if not folder.exists():
        build(group, folder)
    full_marks(grading.grade(folder, modules(group), seed=seed), modules(group))


@pytest.mark.parametrize("seed", [s for s in SEEDS if s], ids=lambda s: f"seed={s}")
def test_solutions_get_full_marks_on_other_seeds(grading, seed):
    folder = grading.root / "solutions"
    if not folder.exists():
        copy_solutions(folder)
    full_marks(grading.grade(folder, MODULES, seed=seed), MODULES)
