"""The graded flows as they are deployed: exactly the submitted source is graded, a grading stops only what it
started, its memory is bounded as a whole, finished checks keep their points, and a failure of the grading
machinery is the grader's, never the student's (docs/threat-model.md names each test)."""
import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
import sys

import pytest
from conftest import KIT, grade

from kit.syllabus import FILES

EXERCISES = KIT / "exercises"
SOLUTIONS = KIT / "solutions"


def stubs(folder):
    folder.mkdir(parents=True)
    for f in FILES:
        shutil.copy(EXERCISES / f, folder / f)
    return folder


def test_bytecode_and_packages_in_the_upload_score_what_their_source_scores(tmp_path):
    """Five stub files with the solutions hidden beside them: as unchecked hash-based pycs in __pycache__ (which
    Python runs without looking at the source) and as packages named like the modules (which Python prefers to a
    module). Only the .py sources are graded: 0 points, as for the stubs alone."""
    sub = stubs(tmp_path / "sub")
    cache = sub / "__pycache__"
    cache.mkdir()
    for m in ("residual", "rmsnorm"):
        py_compile.compile(str(SOLUTIONS / f"{m}.py"), cfile=str(cache / f"{m}.{sys.implementation.cache_tag}.pyc"),
                           dfile=str(sub / f"{m}.py"), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    # the attack works where the folder is imported as it is: prove it, or the test proves nothing
    spec = importlib.util.spec_from_file_location("probe_residual", sub / "residual.py")
    assert spec.loader.path_stats and (cache / f"residual.{sys.implementation.cache_tag}.pyc").stat().st_size
    for m in ("attention", "block"):
        (sub / m).mkdir()
        shutil.copy(SOLUTIONS / f"{m}.py", sub / m / "__init__.py")

    data, out, code = grade(sub, "residual", "rmsnorm", "attention", extra=("--untrusted",))
    assert data["score"] == 0 and code == 1, out
    assert all("not implemented" in t["output"] for t in data["tests"] if t.get("max_score")), out
    assert "left out of the grading: __pycache__, attention, block" in out
    # nothing was written into the upload either (no bytecode of the graded source)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{m}.{sys.implementation.cache_tag}.pyc"
                                                             for m in ("residual", "rmsnorm"))


def test_the_copy_graded_is_made_of_regular_files_only(tmp_path):
    """A link in the folder (to the reference, say) is not followed: that module counts as missing."""
    sub = stubs(tmp_path / "sub")
    (sub / "residual.py").unlink()
    (sub / "residual.py").symlink_to(SOLUTIONS / "residual.py")
    data, out, code = grade(sub, "residual", extra=("--untrusted",))
    assert data["score"] == 0, out


def test_a_worker_that_cannot_start_is_the_graders_failure_not_the_students(tmp_path):
    """A worker that dies before its hello (as when its user cannot read its runtime): no submitted code has run,
    so the failure is the autograder's (not counted against the student), and ``python -m grader`` exits 3 (a
    grader error) with every result written, so that the runners flag it."""
    from grader.protocol import Request
    from grader.sandbox import Sandbox, WorkerFailure
    from kit.outcome import Kind

    sub = shutil.copytree(SOLUTIONS, tmp_path / "sub")
    sandbox = Sandbox(sub, allow_weak=True, start_timeout=30)
    try:
        sandbox._prepare()
        (sandbox.runtime / "worker.py").write_text("raise SystemExit(1)\n")  # what an unreadable runtime gives
        with pytest.raises(WorkerFailure) as e:
            sandbox.run(Request(module="residual", target="Residual", calls=[]))
        assert e.value.kind is Kind.GRADER_ERROR and not e.value.kind.students_fault
        assert "could not start" in e.value.got and "no code of yours had run" in e.value.got
    finally:
        sandbox.close()


def test_a_final_check_past_the_whole_gradings_limit_leaves_the_finished_checks_their_points(tmp_path):
    """A grading killed at its wall-clock limit: the checks it finished keep their points (the record is written
    check by check), the rest fail as not finished, and the outcome is flagged as a timeout for the staff."""
    from grader import runner

    sub = shutil.copytree(SOLUTIONS, tmp_path / "sub", ignore=shutil.ignore_patterns("*.md"))
    hang = "import time\ntime.sleep(600)\n"
    (sub / "decoder.py").write_text(hang + (SOLUTIONS / "decoder.py").read_text())
    out = runner.run(sub, tmp_path / "work", ["residual", "decoder"], timeout=25, call_timeout=60,
                     allow_weak=True, untrusted=False)
    assert out.status == "timeout" and out.flagged
    scores = {r.check: r.score for r in out.grading.results}
    assert sum(s for c, s in scores.items() if c.startswith("residual.")) == 10, scores
    assert sum(r.score for r in out.grading.results if r.unit == "decoder") == 0
    assert sum(r.points for r in out.grading.results) == 25  # every point accounted for


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="memory cgroups are made by root")
def test_memory_outside_rlimit_as_is_bounded_by_the_workers_cgroup_and_blamed_on_it(tmp_path, monkeypatch):
    """Shared memory (memfd pages, unmapped: RLIMIT_AS never sees them) past the grading's limit: the kernel's
    cgroup accounting stops the submission that took it, and the message says it used too much memory."""
    from grader.cgroup import Group
    probe = Group.create("kit-probe", 64)
    if probe is None:
        pytest.skip("no writable memory cgroup here")
    probe.remove()
    hog = ("import mmap, os\n_keep = []\nfor _ in range(400):\n    fd = os.memfd_create('x')\n"
           "    os.ftruncate(fd, 8 << 20)\n    m = mmap.mmap(fd, 8 << 20)\n    m.write(b'x' * (8 << 20))\n"
           "    m.close()\n    _keep.append(fd)\n")
    sub = shutil.copytree(SOLUTIONS, tmp_path / "sub", ignore=shutil.ignore_patterns("*.md"))
    (sub / "rmsnorm.py").write_text(hog + (SOLUTIONS / "rmsnorm.py").read_text())
    monkeypatch.setenv("GRADER_MEMORY_MB", "1024")
    data, out, code = grade(sub, "residual", "rmsnorm", timeout=30)
    rms = [t for t in data["tests"] if t["name"].startswith("rmsnorm:")]
    assert rms and all(t["status"] == "failed" for t in rms)
    assert any("memory limit of 1024 MB" in t["output"] for t in rms), [t["output"] for t in rms]
    assert sum(t["score"] for t in data["tests"] if t["name"].startswith("residual:")) == 10
    assert "memory cgroup of 1024 MB" in out


MEMFD_HOG = ("import mmap, os\n_keep = []\nfor _ in range(400):\n    fd = os.memfd_create('x')\n"
             "    os.ftruncate(fd, 8 << 20)\n    m = mmap.mmap(fd, 8 << 20)\n    m.write(b'x' * (8 << 20))\n"
             "    m.close()\n    _keep.append(fd)\n")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="memory cgroups are made by root")
def test_a_memfd_hog_beside_an_honest_neighbour_in_batch_costs_the_neighbour_nothing(tmp_path):
    """``grader batch --jobs 2`` inside a 2 GB memory cgroup (a small grading machine): one submission fills 3 GB
    of memfd pages at import. It reaches its own worker's limit (the batch shares the machine out) and loses that
    module; the honest submission graded beside it keeps every point."""
    import csv

    from grader.cgroup import Group
    machine = Group.create("kit-test-machine", 2048)
    if machine is None:
        pytest.skip("no writable memory cgroup here")
    try:
        subs = tmp_path / "subs"
        for name in ("a-honest", "b-hog"):
            shutil.copytree(SOLUTIONS, subs / name, ignore=shutil.ignore_patterns("*.md", "zh"))
        (subs / "b-hog" / "rmsnorm.py").write_text(MEMFD_HOG + (SOLUTIONS / "rmsnorm.py").read_text())
        env = {k: v for k, v in os.environ.items() if k != "GRADER_MEMORY_MB"}
        p = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--csv", str(tmp_path / "g.csv"),
                            "--jobs", "2", "--only", "residual", "rmsnorm", "--call-timeout", "30"],
                           cwd=KIT, env=env, capture_output=True, text=True, timeout=600,
                           preexec_fn=lambda: machine.add(os.getpid()))
        with open(tmp_path / "g.csv", newline="") as f:
            rows = {r["submission"]: r for r in csv.DictReader(f)}
        assert (rows["a-honest"]["status"], rows["a-honest"]["total"]) == ("graded", "25"), (rows, p.stderr)
        assert (rows["b-hog"]["residual"], rows["b-hog"]["rmsnorm"]) == ("10", "0"), rows["b-hog"]
        hog = json.loads((tmp_path / "g-results" / "b-hog.json").read_text())
        assert any("memory limit" in t["output"] for t in hog["tests"] if t["name"].startswith("rmsnorm:"))
    finally:
        machine.remove()


def test_batch_never_reads_a_checkpoint_past_the_size_the_grader_accepts(tmp_path):
    """A 6 GiB sparse final.pt: the batch's fingerprint takes its size, not its bytes, and the grading refuses it
    without reading it; the unit checks are graded as usual."""
    import tracemalloc

    from grader.batch import fingerprint
    sub = shutil.copytree(SOLUTIONS, tmp_path / "subs" / "s", ignore=shutil.ignore_patterns("*.md", "zh"))
    with open(sub / "final.pt", "wb") as f:
        f.truncate(6 << 30)
    tracemalloc.start()
    fingerprint(sub, {})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak
    p = subprocess.run([sys.executable, "-m", "grader", "batch", str(tmp_path / "subs"), "--csv",
                        str(tmp_path / "g.csv"), "--jobs", "1", "--only", "residual", "final"],
                       cwd=KIT, capture_output=True, text=True, timeout=600)
    import csv
    with open(tmp_path / "g.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["status"], row["residual"], row["final"]) == ("graded", "10", "0"), (row, p.stderr)


def test_the_desk_sandbox_starts_through_an_interpreter_named_by_a_link_anywhere(tmp_path, monkeypatch):
    """``python3`` a link in a folder of its own (pyenv, Homebrew, uv): bubblewrap binds every folder on the way
    to the interpreter; where it still cannot start, the report's isolation line says why."""
    from grader import sandbox
    if not sandbox.bwrap_works():
        pytest.skip("bubblewrap cannot start here at all")
    link = tmp_path / "tools" / "bin" / "python3"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr(sys, "executable", str(link))
    monkeypatch.setattr(sandbox, "_BWRAP_WORKS", {})
    assert sandbox.bwrap_probe() == (True, None)
    monkeypatch.setenv("KIT_NO_BWRAP", "1")
    box = sandbox.Sandbox(tmp_path, allow_weak=True)
    assert box.isolation.describe().endswith("; no bubblewrap: KIT_NO_BWRAP is set")
