"""The Gradescope autograder: ``python -m classroom.gradescope [--out dist/gradescope.zip]``.

The zip holds, at its root, Gradescope's two entry points (``setup.sh`` and
``run_autograder``, generated from ``classroom/templates/``) and the instructor's
kit: the grader with its hidden checks, ``solutions/``, ``lab/``, this module and,
when present here, the verified TinyShakespeare corpus. Gradescope unpacks it into
``/autograder/source``, runs ``setup.sh`` once as root (pinned CPU packages, an
unprivileged user, the source made root-only), then ``run_autograder`` for every
submission, which calls ``python -m classroom.gradescope run``:

1. finds the five exercise files (and ``final.pt``) anywhere in ``/autograder/submission``
   and copies them to a fresh folder the student user can read but not change;
2. runs ``python -m grader`` on it with ``--user`` (the student's code runs as that user,
   who cannot read ``/autograder/source`` nor write ``/autograder/results``) and a
   wall-clock limit for the whole grading;
3. writes ``/autograder/results/results.json`` atomically, always: the grader's own
   results, or a score of 0 with an explanation when grading could not finish.

``AUTOGRADER_ROOT`` replaces ``/autograder`` (the kit's tests run the real bundle
against a temporary folder), ``KIT_PYTHON`` the interpreter, ``AUTOGRADER_USER``
the student user ("" for none), ``HIDDEN_VISIBILITY`` and ``GRADING_TIMEOUT`` the
build's defaults.
"""
import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_OUT = KIT / "dist" / "gradescope.zip"
FILES = ["residual.py", "rmsnorm.py", "attention.py", "block.py", "decoder.py"]
CHECKPOINT = "final.pt"
STUDENT = "kitstudent"
TORCH = "2.13.0"
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
# Gradescope stops run_autograder at the assignment's limit (10 minutes unless raised); grading
# must end before that, or there is no results.json at all.
DEFAULT_TIMEOUT = 540
# What the bundle carries of the kit (folders are copied without caches).
BUNDLE = ["grader", "lab", "solutions", "classroom/__init__.py", "classroom/gradescope.py", "requirements.txt"]
CORPUS = "data/tinyshakespeare.txt"


# -- building the zip ------------------------------------------------------------------------------

def _render(name, visibility, timeout):
    text = (TEMPLATES / name).read_text()
    for key, value in {"@STUDENT@": STUDENT, "@TORCH@": TORCH, "@VISIBILITY@": visibility,
                       "@TIMEOUT@": str(int(timeout))}.items():
        text = text.replace(key, value)
    return text


def _entries():
    """(path inside the zip, file here) for the kit's part of the bundle."""
    for item in BUNDLE:
        path = KIT / item
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix in (".pyc", ".tmp"):
                continue
            yield str(f.relative_to(KIT)), f
    corpus = KIT / CORPUS
    if corpus.is_file():
        from lab.data import DataError, verify
        try:
            verify(corpus)
            yield CORPUS, corpus
        except DataError:
            pass  # setup.sh fetches and verifies it instead


def build(out=DEFAULT_OUT, visibility="after_due_date", timeout=DEFAULT_TIMEOUT, quiet=False):
    """Write the bundle to ``out`` atomically; return its path."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".gradescope-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, template in (("setup.sh", "gradescope_setup.sh"), ("run_autograder", "run_autograder")):
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = 0o100755 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, _render(template, visibility, timeout))
            for name, path in _entries():
                z.write(path, name)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not quiet:
        with zipfile.ZipFile(out) as z:
            names = z.namelist()
        print(f"wrote {out} ({len(names)} files; hidden checks '{visibility}', "
              f"{'with' if CORPUS in names else 'without'} the corpus)")
    return out


# -- grading one submission (inside Gradescope's container) ---------------------------------------

def result(output, score=0):
    """A results.json that gives ``score`` with a message and no per-check entries."""
    return {"score": score, "output": output, "visibility": "visible", "stdout_visibility": "hidden", "tests": []}


def find_files(submission):
    """{name: path} of the five files and final.pt, wherever the upload put them (shallowest first).

    Only regular files count: a symbolic link (``residual.py -> /autograder/source/solutions/...``)
    would otherwise be copied by root, solution and all.
    """
    found = []
    for folder, dirs, files in os.walk(submission, followlinks=False):
        dirs[:] = [d for d in dirs if d != "__MACOSX"]
        for name in files:
            path = Path(folder) / name
            if name in (*FILES, CHECKPOINT) and not path.is_symlink() and path.is_file():
                found.append(path)
    out = {}
    for path in sorted(found, key=lambda p: (len(p.parts), str(p))):
        out.setdefault(path.name, path)
    return out


def _copy_regular(src, dest):
    """Copy a regular file without following a link that may have replaced it since it was found."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f, open(dest, "wb") as g:
        shutil.copyfileobj(f, g)
    os.chmod(dest, 0o644)


def grade_submission(root, python=sys.executable, timeout=None, visibility=None, user=None):
    """Grade ``root/submission``; return the results.json dict (never raises for a student's reason)."""
    root = Path(root)
    timeout = timeout or float(os.environ.get("GRADING_TIMEOUT") or DEFAULT_TIMEOUT)
    visibility = visibility or os.environ.get("HIDDEN_VISIBILITY") or "after_due_date"
    found = find_files(root / "submission")
    units = [f for f in FILES if f in found]
    if not units:
        names = sorted(p.name for p in (root / "submission").rglob("*") if p.is_file())[:10]
        return result("No exercise files in this submission: upload " + ", ".join(FILES) + " (and " + CHECKPOINT
                      + " for the final check). Found: " + (", ".join(names) or "nothing") + ".")
    work = Path(tempfile.mkdtemp(prefix="submission-"))
    out_dir = Path(tempfile.mkdtemp(prefix="results-"))  # root only (0700): the student user cannot touch it
    try:
        os.chmod(work, 0o755)
        for name, path in found.items():
            _copy_regular(path, work / name)
        out = out_dir / "results.json"
        cmd = [python, "-m", "grader", "--impl", str(work), "--json", str(out), "--no-color",
               "--hidden-visibility", visibility, "--checkpoint", str(work / CHECKPOINT)]
        if user:
            cmd += ["--user", user]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=KIT, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            print(log)
            return result(f"Grading took longer than {timeout:.0f} s and was stopped, so no check was scored. "
                          "Look for an endless loop or far too much work at import time; if your code is fast, "
                          "please tell the course staff.")
        print(log)  # Gradescope keeps run_autograder's output for the instructors
        if proc.returncode in (0, 1) and out.is_file():
            data = json.loads(out.read_text())
            notes = [f"Graded in {time.monotonic() - t0:.0f} s."]
            missing = [f for f in FILES if f not in found]
            if missing:
                notes.append("Missing from your upload (their checks score 0): " + ", ".join(missing) + ".")
            if CHECKPOINT not in found:
                notes.append(f"No {CHECKPOINT} in your upload: the final TinyShakespeare check needs your trained "
                             f"checkpoint (runs/final.pt, uploaded as {CHECKPOINT}).")
            data["output"] = " ".join(notes + ([data["output"]] if data.get("output") else []))
            data["execution_time"] = round(time.monotonic() - t0)
            return data
        last = [x for x in (log or "").splitlines() if x.strip()][-1:] or [f"exit status {proc.returncode}"]
        if proc.returncode == 2:  # the grader refused the input: one clear line, the student's to fix
            return result(f"This submission could not be graded: {last[0]}")
        return result("The autograder broke while grading this submission (" + last[0][:300] + "). "
                      "This is not a verdict on your code: please tell the course staff.")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def run(root):
    """run_autograder's work: grade, then write results.json atomically whatever happened."""
    from grader.report import write_json
    root = Path(root)
    user = os.environ.get("AUTOGRADER_USER", STUDENT)  # "" runs the code as the grader's own user
    try:
        if user:
            pwd.getpwnam(user)
    except KeyError:  # fail closed: never run student code as root by accident
        data = result(f"The autograder is misconfigured: there is no user {user!r} to run student code as "
                      "(did setup.sh run?). This is not a verdict on your code: please tell the course staff.")
    else:
        try:
            data = grade_submission(root, user=user or None)
        except Exception as e:  # a broken autograder still answers Gradescope
            data = result(f"The autograder broke ({type(e).__name__}: {e}). "
                          "This is not a verdict on your code: please tell the course staff.")
    write_json(root / "results" / "results.json", data)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        p = argparse.ArgumentParser(prog="python -m classroom.gradescope run")
        p.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
        return run(p.parse_args(argv[1:]).root)
    p = argparse.ArgumentParser(prog="python -m classroom.gradescope", description="Build the Gradescope bundle.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the zip (default: %(default)s)")
    p.add_argument("--hidden-visibility", default="after_due_date", choices=VISIBILITIES,
                   help="when students see the hidden checks (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds for one submission's grading; keep it under Gradescope's limit (default: %(default)s)")
    args = p.parse_args(argv)
    build(args.out, args.hidden_visibility, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
