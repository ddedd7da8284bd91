"""Correct implementations written differently (tests/alternatives) get full marks: no false failures.

Every check of the modules an alternative replaces must pass, the 0-point INFO
checks included (they run the alternative with its own components).
"""
import pytest

from alternatives import ALTERNATIVES, build, modules, sets
from mutants import Grading

from grader.report import failure_text

SETS = sets()


@pytest.fixture(scope="module")
def grading(tmp_path_factory):
    g = Grading(tmp_path_factory.mktemp("alternatives"))
    yield g
    g.close()


def test_there_are_enough_alternatives():
    assert len(ALTERNATIVES) >= 5
    assert sum(a.file == "attention.py" for a in ALTERNATIVES) >= 4


@pytest.mark.parametrize("group", SETS, ids=lambda grp: "+".join(a.source[:-3] for a in grp))
def test_alternatives_get_full_marks(grading, group):
    folder = build(group, grading.root / "-".join(a.source[:-3] for a in group))
    results = grading.grade(folder, modules(group))
    assert {r.unit for r in results} == set(modules(group))
    failed = [f"{r.unit}: {r.title}\n{failure_text(r.failure)}" for r in results if not r.passed]
    assert not failed, "a correct implementation lost points:\n\n" + "\n\n".join(failed)
    assert sum(r.score for r in results) == sum(r.points for r in results)
