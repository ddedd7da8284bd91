"""Batch grading: one process per submission, a CSV row for each, bad ones isolated, resumable."""
import csv
import os
import shutil
import subprocess
import sys
import time

from conftest import KIT, SOLUTIONS, copy_solutions

EXERCISES = KIT / "exercises"


def batch(*args, env=None):
    cmd = [sys.executable, "-m", "grader", "batch", *map(str, args)]
    return subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, timeout=600, env=env)


def running():
    """{pid: command line} of the processes alive now."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                pass
    return out


def rows(path):
    with open(path, newline="") as f:
        return {r["submission"]: r for r in csv.DictReader(f)}


def with_prefix(folder, text):
    """The solutions, with ``text`` run at the top of residual.py."""
    copy_solutions(folder)
    (folder / "residual.py").write_text(text + (SOLUTIONS / "residual.py").read_text())
    return folder


def test_batch_grades_each_submission_in_isolation_and_resumes(tmp_path):
    subs = tmp_path / "submissions"
    copy_solutions(subs / "good")
    shutil.copytree(EXERCISES, subs / "stub")
    with_prefix(subs / "exits", "import os\nos._exit(3)\n")
    with_prefix(subs / "hog", "import torch\n_hog = []\nwhile True:\n    _hog.append(torch.ones(1 << 25))\n")
    (subs / "empty").mkdir()
    (subs / "empty" / "notes.txt").write_text("no code here")
    copy_solutions(subs / "link")
    (subs / "link" / "residual.py").unlink()
    (subs / "link" / "residual.py").symlink_to(SOLUTIONS / "residual.py")
    out = tmp_path / "grades.csv"
    env = dict(os.environ, GRADER_MEMORY_MB="1536")  # the hog reaches its limit sooner

    p = batch(subs, "--csv", out, "--jobs", 2, "--only", "residual", "--call-timeout", 10, env=env)
    assert p.returncode == 1, p.stderr  # not every submission could be graded
    got = rows(out)
    assert sorted(got) == ["empty", "exits", "good", "hog", "link", "stub"]
    assert list(next(iter(got.values()))) == ["submission", "residual", "total", "max_score", "status", "seconds",
                                              "message"]
    assert (got["good"]["status"], got["good"]["residual"], got["good"]["total"]) == ("graded", "10", "10")
    for name in ("stub", "exits", "hog"):  # graded, with nothing earned, and the batch went on
        assert (got[name]["status"], got[name]["total"], got[name]["max_score"]) == ("graded", "0", "10"), got[name]
    assert got["empty"]["status"] == "invalid" and "holds none of" in got["empty"]["message"]
    assert got["link"]["status"] == "invalid" and "symbolic link" in got["link"]["message"]
    # each graded submission's results.json and grader output, for the student
    results = tmp_path / "grades-results"
    assert "exited with code 3" in (results / "exits.json").read_text()
    assert "memory" in (results / "hog.json").read_text()
    assert "TOTAL 10/10" in (results / "good.txt").read_text()

    # the same command again: only what changed is graded again
    copy_solutions(subs / "stub")
    p = batch(subs, "--csv", out, "--jobs", 2, "--only", "residual", "--call-timeout", 10, env=env)
    again = rows(out)
    assert (again["stub"]["status"], again["stub"]["total"]) == ("graded", "10")
    for name in ("good", "exits", "hog", "empty"):
        assert again[name] == got[name]


def test_a_submission_past_its_wall_clock_limit_is_killed_with_its_worker(tmp_path):
    subs = tmp_path / "submissions"
    marker = f"hangs-{os.getpid()}"
    with_prefix(subs / "hang", f"# {marker}\nwhile True:\n    pass\n")
    out = tmp_path / "grades.csv"
    p = batch(subs, "--csv", out, "--jobs", 1, "--only", "residual", "--timeout", 8, "--call-timeout", 300)
    row = rows(out)["hang"]
    assert p.returncode == 1
    assert (row["status"], row["total"]) == ("timeout", "0") and "stopped after 8 s" in row["message"]
    # neither the grading process nor its worker outlives the limit (the kernel delivers the kill)
    for _ in range(50):
        alive = [pid for pid, args in running().items() if str(subs / "hang") in args]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive


def test_bad_input_is_one_clear_line(tmp_path):
    p = batch(tmp_path / "nowhere", "--csv", tmp_path / "g.csv")
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1
    p = batch(tmp_path, "--jobs", 2)
    assert p.returncode == 2 and "--csv" in p.stderr


def test_bench_batch_reports_submissions_per_minute():
    from grader.batch import bench_batch
    r = bench_batch(1, 1, units=("residual",))
    assert r["submissions"] == 1 and r["jobs"] == 1 and r["statuses"] == {"graded": 1}
    assert r["per_minute"] > 0 and r["seconds"] > 0
