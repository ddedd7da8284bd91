"""The shipped defaults are the tested configuration (issue 27).

Everything here runs as the kit ships it, with none of the other tests' shortcuts:

- **Gradescope**: the bundle built by ``make gradescope``, unpacked into a Gradescope layout
  (``AUTOGRADER_ROOT`` stands for ``/autograder``), prepared by its own ``setup.sh`` as root (packages,
  the virtual environment ``/opt/kit-venv``, the user ``kitstudent``, the source made root-only), then
  graded by its own ``run_autograder`` with its defaults: no ``KIT_PYTHON``, no ``AUTOGRADER_USER``, no
  ``ALLOW_WEAK_SANDBOX``, ``TMPDIR`` unset, a bare environment as Gradescope's;
- **batch**: ``python -m grader batch --jobs 2 --user kitstudent`` as root, from a ``TMPDIR`` and a folder of
  submissions that only root can enter;

each with bubblewrap and without it (``KIT_NO_BWRAP=1``: the worker runs as ``kitstudent`` alone), on the
solutions (85/100 without a checkpoint), the stubs as shipped (0) and known mistakes (tests/mutants), and
each held check by check to what ``python -m grader`` gives the same files on the same seed.

It needs root (``kitstudent`` is a real OS user, made with ``useradd`` as setup.sh does) and Debian's or
Ubuntu's packaging (setup.sh installs only what is missing). The first run builds ``/opt/kit-venv`` (torch and
the pinned requirements, a minute or two); later runs find it in place and setup.sh keeps it.
"""
import csv
import fcntl
import html
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FILES, KIT, SOLUTIONS

from kit.syllabus import POINTS, TOTAL

STUDENT = "kitstudent"          # classroom.gradescope.STUDENT: the bundle's default, never overridden here
VENV = Path("/opt/kit-venv")    # where setup.sh puts the interpreter (run_autograder's default KIT_PYTHON)
LOCK = Path("/opt/.kit-venv.lock")
UNITS_POINTS = TOTAL - POINTS["final"]  # the solutions without final.pt: 85
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the image builder's own network settings (a proxy, pip's index and certificates), not the kit's
NETWORK = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
           "SSL_CERT_", "REQUESTS_CA_BUNDLE", "UV_")
# the kit's knobs that the shipped flows must run without (the other tests set some of them)
KNOBS = ("AUTOGRADER_ROOT", "AUTOGRADER_USER", "KIT_PYTHON", "ALLOW_WEAK_SANDBOX", "GRADER_SEED", "KIT_NO_BWRAP",
         "REFERENCE_VISIBILITY", "GRADING_TIMEOUT", "LEADERBOARD", "TMPDIR", "GRADER_MEMORY_MB", "GRADER_THREADS")
MODES = [pytest.param(True, id="bwrap"), pytest.param(False, id="no-bwrap")]


def _mutant(module, name):
    from tests.mutants import all_mutants
    return next(m for m in all_mutants() if m.module == module and m.name == name)


# what each flow grades: name -> how to make the folder (the five files, no final.pt)
MUTANTS = {"mistake-attention": ("attention", "no causal mask"),
           "mistake-rmsnorm": ("rmsnorm", "RMSNorm subtracts the mean (LayerNorm)")}
GRADESCOPE = ["solutions", "stubs", "mistake-attention"]
BATCH = ["solutions", "stubs", "mistake-rmsnorm"]


def make_submission(name, dest):
    dest = Path(dest)
    if name in MUTANTS:
        return _mutant(*MUTANTS[name]).apply(dest)
    src = {"solutions": SOLUTIONS, "stubs": KIT / "exercises"}[name]
    dest.mkdir(parents=True)
    for f in FILES:
        shutil.copy(src / f, dest / f)
    return dest


# -- the image: the bundle as make gradescope builds it, prepared by its own setup.sh -----------------------

def _why_not():
    if not sys.platform.startswith("linux"):
        return "the shipped flows run on Linux (Gradescope's Ubuntu image)"
    if os.geteuid() != 0:
        return "needs root: setup.sh and run_autograder run as root and the code as another OS user (kitstudent)"
    try:
        pwd.getpwnam(STUDENT)
    except KeyError:
        if shutil.which("useradd") is None:
            return f"no user {STUDENT} and no useradd to make one"
    for tool in ("dpkg-query", "su", "make"):
        if shutil.which(tool) is None:
            return f"setup.sh needs {tool} (it targets Gradescope's Ubuntu image)"
    return None


def bare_env(**extra):
    """The environment Gradescope gives its scripts: a plain PATH, root's HOME, nothing of the kit's."""
    env = {"PATH": BARE_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(NETWORK)})
    env.update(extra)
    return env


def desk_env(**extra):
    """The test's environment without the kit's knobs: an instructor's shell."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(extra)
    return env


@dataclass
class Image:
    root: Path      # stands for /autograder
    source: Path    # /autograder/source, root-only once setup.sh ran
    seed: str       # the course's seed, kept beside the zip by make gradescope
    log: str        # setup.sh's output
    seconds: float
    bwrap: str      # "" when bubblewrap starts for kitstudent here, else why not
    tmp: Path


def _unzip(zip_path, dest):
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(dest)
        for info in z.infolist():  # extractall drops the permission bits; unzip keeps them
            if info.external_attr >> 16:
                os.chmod(dest / info.filename, (info.external_attr >> 16) & 0o777)


def _bwrap_for_student():
    """"" if bubblewrap can start the kit's interpreter as kitstudent on this machine (checked without the
    kit's code), else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    cmd = ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev",
           "--proc", "/proc", "--die-with-parent", str(VENV / "bin" / "python"), "-I", "-c", "print(6 * 7)"]
    try:
        p = subprocess.run(cmd, user=STUDENT, cwd="/", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap cannot start here: {e}"
    if p.returncode != 0 or p.stdout.strip() != "42":
        return f"bubblewrap cannot start here as {STUDENT} (user namespaces?): {p.stderr.strip()[:300]}"
    return ""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("shipped")
    # the bundle exactly as an instructor builds it (a new seed, kept beside the zip)
    zip_path = tmp / "gradescope.zip"
    p = subprocess.run(["make", "-s", "gradescope", f"PY={sys.executable}", f"ARGS=--out {zip_path}"], cwd=KIT,
                       env=desk_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    seed = (tmp / "gradescope-seed.txt").read_text().strip()
    root = tmp / "autograder"
    _unzip(zip_path, root / "source")
    # setup.sh as Gradescope runs it: as root, in the image being built. One at a time: it writes /opt/kit-venv.
    t0 = time.monotonic()
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd="/", env=bare_env(),
                           capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - t0
    log = p.stdout + p.stderr
    assert p.returncode == 0, f"setup.sh failed (exit {p.returncode}) after {seconds:.0f} s:\n{log[-6000:]}"
    return Image(root, root / "source", seed, log, seconds, _bwrap_for_student(), tmp)


def _mode(image, bwrap):
    """The extra environment of a mode; skips the bubblewrap mode only where bubblewrap cannot start at all."""
    if bwrap:
        if image.bwrap:
            pytest.skip(image.bwrap)
        return {}
    return {"KIT_NO_BWRAP": "1"}


# -- what python -m grader gives the same files --------------------------------------------------------------

@pytest.fixture(scope="module")
def desk(image):
    """name -> results.json of ``python -m grader`` on that submission, on the course's seed (graded once)."""
    cache = {}

    def grading(name):
        if name not in cache:
            folder = make_submission(name, image.tmp / "desk" / name)
            out = image.tmp / "desk" / f"{name}.json"
            p = subprocess.run([sys.executable, "-m", "grader", "--impl", str(folder), "--seed", image.seed,
                                "--checkpoint", str(folder / "final.pt"), "--json", str(out), "--no-color"],
                               cwd=KIT, env=desk_env(), capture_output=True, text=True, timeout=600)
            assert p.returncode in (0, 1) and out.is_file(), f"python -m grader on {name}: exit {p.returncode}\n" \
                                                             + p.stdout[-3000:] + p.stderr[-3000:]
            cache[name] = json.loads(out.read_text())
        return cache[name]

    grading("solutions")  # the one every test needs, first
    return grading


def _got(test):
    """A failed check's ``got:`` line (what the submission did), numbers blurred (thread counts may move the last
    digits); "" for the final check, whose message names the checkpoint's path."""
    if test["name"].startswith("final:") or test["status"] == "passed":
        return ""
    text = test.get("output", "")
    if test.get("output_format") == "html":  # the first failed check of a module carries pictures
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    line = next((x for x in text.splitlines() if x.startswith("got:")), "")
    return re.sub(r"[-+]?\d[\d.]*(e[-+]?\d+)?", "#", line)


def per_check(results):
    return {t["name"]: (t["status"], t.get("score", 0), t.get("max_score", 0), _got(t)) for t in results["tests"]}


def assert_same_grading(name, got, want, where):
    """``got`` (a shipped flow's results.json) scores every check as ``want`` (python -m grader's) does, and every
    failed check fails the same way."""
    g, w = per_check(got), per_check(want)

    def show(entry):
        return "missing" if entry is None else f"{entry[0]} {entry[1]}/{entry[2]}" + (f", {entry[3]}" if entry[3]
                                                                                      else "")
    diff = [f"  {check}\n      {where}: {show(g.get(check))}\n      python -m grader: {show(w.get(check))}"
            for check in sorted(set(g) | set(w)) if g.get(check) != w.get(check)]
    assert not diff and got.get("score") == want.get("score"), (
        f"{name} through {where}: {got.get('score')}/{got.get('max_score')}, python -m grader "
        f"{want.get('score')}/{want.get('max_score')}; {len(diff)} check(s) differ:\n" + "\n".join(diff[:6])
        + ("\n  ..." if len(diff) > 6 else "") + f"\n  output: {str(got.get('output', ''))[:600]}")


def isolation(text):
    """Which isolation a report says ran the code (grader.sandbox.Isolation.describe): "bubblewrap", "user"."""
    return "bubblewrap" if "bubblewrap sandbox" in text else "user" if "a separate OS user" in text else text


def assert_expected_score(name, want):
    """The grader's own verdicts the comparison rests on: 85 for the solutions, 0 for the stubs, a mistake costs
    some points of its own module and not all of them."""
    score = want["score"]
    if name == "solutions":
        assert score == UNITS_POINTS and want["max_score"] == TOTAL, score
    elif name == "stubs":
        assert score == 0 and want["max_score"] == TOTAL, score
    else:
        module = MUTANTS[name][0]
        lost = [n for n, (status, _, m, _) in per_check(want).items() if m and status != "passed"]
        assert 0 < score < UNITS_POINTS, score
        assert any(n.startswith(f"{module}:") for n in lost) and all(n.startswith((f"{module}:", "final:"))
                                                                       for n in lost), lost


# -- the bundle's setup.sh ----------------------------------------------------------------------------------

def test_setup_sh_prepares_the_image_for_the_shipped_defaults(image):
    """setup.sh (run again on a prepared machine, it keeps what is there) leaves the image run_autograder's
    defaults expect: the user, an interpreter that user can run with torch, the source readable by root only."""
    entry = pwd.getpwnam(STUDENT)
    assert entry.pw_uid != 0 and entry.pw_shell.endswith("nologin"), entry
    p = subprocess.run([str(VENV / "bin" / "python"), "-I", "-c", "import torch, safetensors, numpy; "
                        "print(torch.__version__)"], user=STUDENT, cwd="/", capture_output=True, text=True,
                       timeout=120)
    pinned = next(line.split("==")[1] for line in (KIT / "requirements.txt").read_text().splitlines()
                  if line.startswith("torch=="))
    assert p.returncode == 0 and p.stdout.strip().split("+")[0] == pinned, p.stdout + p.stderr
    st = image.source.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    seed = image.source / "grading_seed"
    assert stat.S_IMODE(seed.stat().st_mode) & 0o077 == 0
    # it says which sandbox the gradings will use, and it is the one this machine has
    want = "bubblewrap sandbox: yes" if not image.bwrap else "bubblewrap sandbox: no"
    assert want in image.log, image.log[-3000:]


# -- Gradescope: run_autograder as shipped ----------------------------------------------------------------

def run_autograder(image, name, extra):
    """Grade ``name`` as Gradescope does: a fresh submission/ and results/, then run_autograder as root with
    a bare environment (its own defaults for the interpreter, the user, the sandbox, the temp folder)."""
    root = image.root
    for d in ("submission", "results"):
        shutil.rmtree(root / d, ignore_errors=True)
    make_submission(name, root / "submission")
    (root / "results").mkdir()
    p = subprocess.run(["bash", str(image.source / "run_autograder")], cwd="/", capture_output=True, text=True,
                       env=bare_env(AUTOGRADER_ROOT=str(root), **extra), timeout=900)
    results = root / "results" / "results.json"
    assert results.is_file(), f"run_autograder (exit {p.returncode}) left no results.json:\n{p.stdout}{p.stderr}"
    return p, json.loads(results.read_text())


@pytest.mark.parametrize("name", GRADESCOPE)
@pytest.mark.parametrize("bwrap", MODES)
def test_gradescope_bundle_as_shipped_scores_what_the_grader_scores(image, desk, bwrap, name):
    extra = _mode(image, bwrap)
    want = desk(name)
    assert_expected_score(name, want)
    p, got = run_autograder(image, name, extra)
    log = (p.stdout + p.stderr)[-4000:]
    assert_same_grading(name, got, want, "run_autograder")
    assert got["max_score"] == TOTAL
    # graded in the isolation this mode asks for, said in the output; and nothing for the staff to look at
    output = got["output"]
    assert isolation(output) == ("bubblewrap" if bwrap else "user") and f"user {STUDENT}" in output, output
    assert "tell the course staff" not in output, output
    assert p.returncode == 0, f"run_autograder exited {p.returncode} on a grading that went well:\n{log}"


# -- batch: python -m grader batch --jobs 2 --user kitstudent, as root ------------------------------------

@pytest.mark.parametrize("bwrap", MODES)
def test_batch_with_user_and_two_jobs_scores_what_the_grader_scores(image, desk, bwrap, tmp_path):
    extra = _mode(image, bwrap)
    # the instructor's side of it: root-only folders for the submissions, the CSV and the temp files
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "tmp").mkdir(mode=0o700)
    subs = private / "submissions"
    for name in BATCH:
        make_submission(name, subs / name)
    grades = private / "grades.csv"
    # the interpreter kitstudent can run (setup.sh's), the kit from this checkout
    cmd = [str(VENV / "bin" / "python"), "-m", "grader", "batch", str(subs), "--csv", str(grades), "--jobs", "2",
           "--user", STUDENT, "--seed", image.seed]
    p = subprocess.run(cmd, cwd=KIT, env=desk_env(TMPDIR=str(private / "tmp"), **extra), capture_output=True,
                       text=True, timeout=900)
    log = (p.stdout + p.stderr)[-4000:]
    assert grades.is_file(), f"batch (exit {p.returncode}) wrote no CSV:\n{log}"
    rows = {r["submission"]: r for r in csv.DictReader(grades.open())}
    assert sorted(rows) == sorted(BATCH), (rows, log)
    results = private / "grades-results"
    for name in BATCH:
        want = desk(name)
        assert_expected_score(name, want)
        row = rows[name]
        assert row["status"] == "graded", f"{name}: {row}\n{(results / f'{name}.txt').read_text()[-3000:]}"
        got = json.loads((results / f"{name}.json").read_text())
        assert_same_grading(name, got, want, "batch --user")
        assert float(row["total"]) == want["score"], row
        line = next((x for x in (results / f"{name}.txt").read_text().splitlines() if x.startswith("isolation:")),
                    "")
        assert isolation(line) == ("bubblewrap" if bwrap else "user") and f"user {STUDENT}" in line, line
    assert p.returncode == 0, f"batch exited {p.returncode} though every submission was graded:\n{log}"


def test_batch_user_a_crashing_submission_beside_an_honest_one_costs_it_nothing(image, tmp_path):
    """``--jobs 2 --user kitstudent`` without bubblewrap: every module of one submission exits at import, so its
    worker is stopped and restarted check after check. Stopping it kills only what that grading started (its
    cgroup, its process group, its orphans), never every process of kitstudent: the honest submission graded at
    the same time keeps all 85 points, and nothing of kitstudent outlives the batch."""
    extra = _mode(image, False)
    subs = tmp_path / "subs"
    make_submission("solutions", subs / "b-honest")
    crash = make_submission("stubs", subs / "a-crashes")
    for f in FILES:
        (crash / f).write_text("import os\nos._exit(1)\n" + (SOLUTIONS / f).read_text())
    grades = tmp_path / "grades.csv"
    cmd = [str(VENV / "bin" / "python"), "-m", "grader", "batch", str(subs), "--csv", str(grades), "--jobs", "2",
           "--user", STUDENT, "--seed", image.seed, "--call-timeout", "30"]
    p = subprocess.run(cmd, cwd=KIT, env=desk_env(**extra), capture_output=True, text=True, timeout=900)
    rows = {r["submission"]: r for r in csv.DictReader(grades.open())}
    assert (rows["b-honest"]["status"], float(rows["b-honest"]["total"])) == ("graded", UNITS_POINTS), \
        (rows, (p.stdout + p.stderr)[-3000:])
    assert float(rows["a-crashes"]["total"]) == 0 and rows["a-crashes"]["status"] == "graded", rows
    uid = pwd.getpwnam(STUDENT).pw_uid
    left = [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and _owner(d) == uid]
    assert not left, f"processes of {STUDENT} outlived the batch: {left}"


def _owner(d):
    try:
        return d.stat().st_uid
    except OSError:
        return None
