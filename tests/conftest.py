"""Helpers for the kit's own tests: grade a folder end to end, build mutated copies of the solutions."""
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs a worker a core) each worker, and every process it starts, computes on its
# share of the cores: OpenMP threads spin while they wait, and two workers' threads on one core each slow both
# many times over (the `trained` fixture below: 114 s, against 38 s on one thread beside the other worker).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from tests.mutants import copy_solutions  # noqa: F401  (re-exported for the tests)

KIT = Path(__file__).resolve().parent.parent
SOLUTIONS = KIT / "solutions"
# The kit's own tests read its English, whatever the machine's locale (a zh_CN one would choose Chinese:
# kit/i18n.py); tests/test_i18n.py chooses its languages itself.
os.environ["KIT_LANG"] = "en"
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


# a low-entropy corpus the 4 x 256 model learns in a few dozen steps: the final check end to end, in seconds
PERIODIC = "to be, or not to be: that is the question. " * 120


def train_periodic(tmp_path, impl, steps, name):
    """``(the corpus, a checkpoint)``: ``impl``'s model trained ``steps`` steps on PERIODIC (30 pass the final check)."""
    text = tmp_path / "periodic.txt"
    text.write_text(PERIODIC)
    out = tmp_path / f"{name}.pt"
    cmd = [sys.executable, "-m", "lab.train", "--impl", str(impl), "--data", str(text), "--out", str(out),
           "--steps", str(steps), "--warmup", "5", "--batch-size", "4", "--eval-every", "1000", "--no-early-stop",
           "--quiet", "--compile", "off"]
    p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return text, out


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(corpus, checkpoint)`` that pass the final check on the periodic corpus (the solutions, 30 steps).

    Read-only. Under pytest-xdist the workers share one (made by the first to ask, under a lock): it takes 40 s of
    a core, mostly the trainer's closing measurement of 200,000 characters.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return train_periodic(tmp_path_factory.mktemp("trained"), KIT / "solutions", 30, "good")
    import fcntl
    shared = tmp_path_factory.getbasetemp().parent / "trained"  # the run's folder, above each worker's own
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            made = train_periodic(shared, KIT / "solutions", 30, "good")
            (shared / "done").write_text("\n".join(map(str, made)))
    return tuple(Path(p) for p in (shared / "done").read_text().splitlines())


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


# -- the Gradescope bundle, built once for every test that grades through it ---------------------------

@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    from classroom.gradescope import build
    tmp = tmp_path_factory.mktemp("gradescope")
    zip_path, seed_file = build(tmp / "gradescope.zip", quiet=True)
    source = tmp / "source"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(source)
        for info in z.infolist():  # extractall drops the permission bits
            if info.external_attr >> 16:
                os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777)
    return zip_path, source, seed_file


def autograde(bundle, root, files, rc=0, **env):
    """Run the bundle's run_autograder with /autograder at ``root``; return results.json. ``rc``: the exit status
    expected (1 where the grading machinery failed, which run_autograder reports so that the instructor sees it)."""
    from grader.sandbox import bwrap_works
    root.mkdir()
    (root / "source").symlink_to(bundle[1])
    (root / "submission").mkdir()
    for name, src in files.items():
        dest = root / "submission" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, tuple):
            dest.symlink_to(src[1])
        elif isinstance(src, Path):
            shutil.copy(src, dest)
        else:
            dest.write_text(src)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "KIT_PYTHON": sys.executable,
           "AUTOGRADER_USER": pwd.getpwuid(os.geteuid()).pw_name,  # the --user path, as oneself
           **({} if bwrap_works() else {"ALLOW_WEAK_SANDBOX": "1"}), **env}
    p = subprocess.run(["bash", str(bundle[1] / "run_autograder")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == rc, p.stderr
    return json.loads((root / "results" / "results.json").read_text())
