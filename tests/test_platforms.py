"""macOS and Windows desks, proven on Linux: the grader with the Linux-only pieces made unavailable.

``KIT_HOST=macos`` takes away the kernel's fences (Landlock, death with the parent) and ``/proc``;
``KIT_HOST=windows`` also process groups, descriptors handed to the worker and resource limits
(kit/host.py). Grading must still finish with the same scores, crashes, exits and endless loops must
still be failed checks with their messages, and the report must say what isolation was in force.
"""
import os
import subprocess
import sys

import pytest
from conftest import KIT, SOLUTIONS, by_name, copy_solutions, grade

from kit.syllabus import POINTS

HOSTS = {"macos": ("resource limits", "memory: RLIMIT_AS of 4096 MB per process", "audit hook"),
         "windows": ("audit hook",)}


@pytest.fixture
def as_host(monkeypatch):
    def use(name):
        monkeypatch.setenv("KIT_HOST", name)
    return use


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_correct_code_scores_the_same_and_the_report_says_what_was_in_force(name, as_host):
    linux, _, _ = grade(SOLUTIONS, "residual", "rmsnorm", "attention")
    as_host(name)
    data, out, code = grade(SOLUTIONS, "residual", "rmsnorm", "attention")
    assert code == 0 and data["score"] == linux["score"] == POINTS["residual"] + POINTS["rmsnorm"] + POINTS[
        "attention"]
    line = next(x for x in out.splitlines() if x.startswith("isolation:"))
    assert line == f"isolation: a separate process ({', '.join(HOSTS[name])})", line


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_crashes_exits_and_endless_loops_are_still_failed_checks(name, as_host, tmp_path):
    sub = copy_solutions(tmp_path / "sub")
    (sub / "residual.py").write_text("import sys\nsys.exit(3)\n" + (SOLUTIONS / "residual.py").read_text())
    (sub / "attention.py").write_text((SOLUTIONS / "attention.py").read_text().replace(
        "        B, T, C = x.shape\n", "        B, T, C = x.shape\n        while True:\n            pass\n", 1))
    (sub / "block.py").write_text("import os\nos._exit(1)\n")
    linux, _, _ = grade(sub, "residual", "rmsnorm", "attention", "block", timeout=3)
    as_host(name)
    data, out, code = grade(sub, "residual", "rmsnorm", "attention", "block", timeout=3)
    assert code == 1
    assert {t["name"]: t["score"] for t in data["tests"]} == {t["name"]: t["score"] for t in linux["tests"]}
    tests = by_name(data)
    res = [t for n, t in tests.items() if n.startswith("residual")]
    assert all("sys.exit(3) was called" in t["output"] for t in res)
    att = [t for n, t in tests.items() if n.startswith("attention") and t["status"] == "failed"]
    assert any("timed out" in t["output"] for t in att), [t["output"] for t in att]
    blk = [t for n, t in tests.items() if n.startswith("block")]
    assert blk and all(t["status"] == "failed" for t in blk)
    assert sum(t["score"] for n, t in tests.items() if n.startswith("rmsnorm")) == POINTS["rmsnorm"]


def test_untrusted_code_is_refused_where_only_a_process_can_be_had(as_host):
    as_host("windows")
    p = subprocess.run([sys.executable, "-m", "grader", "--impl", str(SOLUTIONS), "--only", "residual", "--untrusted"],
                       cwd=KIT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert p.returncode == 4 and "refusing to grade untrusted code" in p.stderr, p.stderr


def test_the_grader_waits_on_pipes_without_select():
    """select() works on sockets only on Windows: the sandbox reads its worker with a thread instead."""
    for f in (KIT / "grader").rglob("*.py"):
        text = f.read_text()
        assert "import select" not in text and "selectors" not in text, f
