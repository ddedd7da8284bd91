"""Helpers for the kit's own tests: grade a folder end to end, build mutated copies of the solutions."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.mutants import copy_solutions  # noqa: F401  (re-exported for the tests)

KIT = Path(__file__).resolve().parent.parent
SOLUTIONS = KIT / "solutions"
from kit.syllabus import FILES  # noqa: E402,F401


def grade(folder, *only, timeout=None, extra=(), check=True, json_path=None):
    """Run ``python -m grader`` on ``folder`` as a user would; return (results.json dict, stdout, exit code).

    The results file goes to ``json_path``, or to a temporary folder removed afterwards.
    """
    out = Path(json_path) if json_path else Path(tempfile.mkdtemp(prefix="grade-")) / "results.json"
    cmd = [sys.executable, "-m", "grader", "--impl", str(folder), "--json", str(out), "--no-color", *extra]
    if only:
        cmd += ["--only", *only]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, timeout=600)
    if check and p.returncode not in (0, 1):
        raise AssertionError(f"grader exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    data = json.loads(out.read_text()) if out.exists() else None
    if not json_path:
        shutil.rmtree(out.parent, ignore_errors=True)
    return data, p.stdout, p.returncode


def by_name(results):
    """{test name: test entry} of a results.json."""
    return {t["name"]: t for t in results["tests"]}


def mutate(dest, file, old, new):
    """A copy of the solutions in ``dest`` with ``old`` replaced by ``new`` in ``file`` (which must contain it)."""
    copy_solutions(dest)
    path = Path(dest) / file
    text = path.read_text()
    assert old in text, f"mutation anchor not found in {file}: {old!r}"
    path.write_text(text.replace(old, new))
    return Path(dest)


@pytest.fixture
def solutions_copy(tmp_path):
    return copy_solutions(tmp_path / "submission")
