"""The Gradescope autograder: ``python -m classroom.gradescope [--out dist/gradescope.zip] [--seed S] [--lang zh]``.

The zip holds, at its root, Gradescope's two entry points (``setup.sh`` and ``run_autograder``,
generated from ``classroom/templates/``) and the instructor's kit: the grader and its checks,
``solutions/``, ``kit/``, ``lab/``, this module, the TinyShakespeare corpus and the course's grading
seed. Gradescope unpacks it into ``/autograder/source``, runs ``setup.sh`` once as root (a Python of
the kit's own with the pinned CPU packages, bubblewrap, an unprivileged user, the source made
root-only), then ``run_autograder`` for every submission, which calls
``python -m classroom.gradescope run``:

1. finds the five exercise files (and ``final.pt``) anywhere in ``/autograder/submission`` and copies
   them (regular files only) to a fresh folder the student user can read but not change;
2. grades it with ``grader.runner`` (``python -m grader --untrusted``): the student's code runs in the
   bubblewrap sandbox, else as that user, on the course's seed, with a wall-clock limit;
3. writes ``/autograder/results/results.json`` atomically, always: the grader's own results, or a
   score of 0 with an explanation when grading could not finish.

What students read in results.json (the notes, the checks' titles and failures) is in the bundle's language:
``--lang zh`` (else kit/i18n.py's choice where the bundle is built: ``$KIT_LANG``, which ``make gradescope
LANG=zh`` sets, then the locale) writes it to the bundle's ``locale/default``, which the gradings read
(kit/i18n.py); English without it. The autograder's log for the instructors stays English.

``AUTOGRADER_ROOT`` replaces ``/autograder`` (the kit's tests run the real bundle against a
temporary folder), ``KIT_PYTHON`` the interpreter, ``AUTOGRADER_USER`` the student user ("" for
none), ``REFERENCE_VISIBILITY``, ``GRADING_TIMEOUT`` and ``LEADERBOARD`` the build's choices.
"""
import os
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from kit import i18n
from kit.cli import ArgumentParser, positive
from kit.files import remove_tree
from kit.i18n import N_, _
from kit.outcome import render
from kit.syllabus import FILES

KIT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_OUT = KIT / "dist" / "gradescope.zip"
CHECKPOINT = "final.pt"
STUDENT = "kitstudent"
PYTHON = "3.11"  # the interpreter setup.sh installs (uv's managed CPython) when the image's is another
VISIBILITIES = ("visible", "after_published", "after_due_date", "hidden")
# Gradescope stops run_autograder at the assignment's limit (10 minutes unless raised); grading must end
# before that, or there is no results.json at all.
DEFAULT_TIMEOUT = 540
# What the bundle carries of the kit (folders are copied without caches).
BUNDLE = ["grader", "kit", "lab", "solutions", "locale", "classroom/__init__.py", "classroom/gradescope.py",
          "requirements.txt", "data/tinyshakespeare.txt"]
SEED_FILE = "grading_seed"  # in the bundle: readable by root only once setup.sh has run
POLICY_FILE = "policy"  # in the bundle: "on" or "off", the course's rules on library shortcuts (grader/policy.py)
LANGUAGE_FILE = "locale/default"  # in the bundle built with --lang: the language results.json speaks (kit/i18n.py)


class BuildError(Exception):
    """The bundle cannot be built: one line saying why."""


# -- building the zip ------------------------------------------------------------------------------

# run_autograder's own results.json where the kit's Python could not even write one (a broken image, a missing
# interpreter): in the bundle's language, worded when the bundle is built (the shell has no catalog)
BROKE = N_("The autograder broke before it could grade this submission (exit status {status}). This is not a "
           "verdict on your code: please tell the course staff.")


def _printf_json(text):
    """``text`` (with one ``{status}``) as the inside of a JSON string, written as a single-quoted printf format whose
    ``%s`` is the exit status: JSON's escapes, then printf's (``\\`` and ``%%``), then the shell's quote."""
    import json
    pieces = [json.dumps(part, ensure_ascii=False)[1:-1].replace("\\", "\\\\").replace("%", "%%")
              for part in text.split("{status}")]
    return "%s".join(pieces).replace("'", "'\\''")


def _render(name, options, lang=None):
    text = (TEMPLATES / name).read_text()
    broke = i18n.translation(lang).gettext(BROKE)
    for key, value in {"@STUDENT@": STUDENT, "@PYTHON@": PYTHON, "@VISIBILITY@": options["visibility"],
                       "@TIMEOUT@": str(int(options["timeout"])), "@LEADERBOARD@": "1" if options["leaderboard"]
                       else "", "@BROKE@": _printf_json(broke)}.items():
        text = text.replace(key, value)
    return text


def _entries():
    """(path inside the zip, file here) for the kit's part of the bundle."""
    from kit.corpus import DataError, verify
    for item in BUNDLE:
        path = KIT / item
        if item.startswith("data/"):
            try:
                verify(path)
            except DataError as e:
                raise BuildError(f"the corpus for the final check: {e}") from None
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix in (".pyc", ".tmp", ".part"):
                continue
            if f.relative_to(KIT).as_posix() == LANGUAGE_FILE:  # the bundle's own, from --lang (build)
                continue
            yield str(f.relative_to(KIT)), f


def build(out=DEFAULT_OUT, visibility="visible", timeout=DEFAULT_TIMEOUT, seed=None, leaderboard=False, quiet=False,
          policy="on", lang=None):
    """Write the bundle to ``out`` atomically; return ``(path, seed file or None)``.

    Without ``seed`` a new one is made and written beside the bundle (``gradescope-seed.txt``): keep it
    for regrading; every grading of this bundle uses it. ``lang`` (``"zh"``): the language the gradings
    speak in results.json, written to the bundle's ``locale/default`` (kit/i18n.py; English without it).
    """
    if lang is not None and i18n.normalise(lang) is None:
        raise BuildError(f"--lang {lang}: not a language of the kit (one of {', '.join(i18n.LANGUAGES)})")
    lang = i18n.normalise(lang)
    out = Path(out).resolve()
    if out.is_dir():
        raise BuildError(f"--out {out}: is a folder; give the zip file to write, e.g. {out / 'gradescope.zip'}")
    made = seed is None
    seed = seed or secrets.token_hex(16)
    options = {"visibility": visibility, "timeout": timeout, "leaderboard": leaderboard}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".gradescope-", suffix=".zip")
        os.close(fd)
    except OSError as e:
        raise BuildError(f"cannot write {out.parent}: {e.strerror or e}") from None
    seed_path = out.with_name(out.stem + "-seed.txt") if made else None
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, template in (("setup.sh", "gradescope_setup.sh"), ("run_autograder", "run_autograder")):
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = 0o100755 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, _render(template, options, lang))
            z.writestr(SEED_FILE, seed + "\n")
            z.writestr(POLICY_FILE, policy + "\n")
            if lang not in (None, i18n.DEFAULT):
                z.writestr(LANGUAGE_FILE, lang + "\n")
            for name, path in _entries():
                z.write(path, name)
        os.chmod(tmp, 0o644)
        if seed_path is not None:
            from kit.files import write_text
            write_text(seed_path, seed + "\n")
            os.chmod(seed_path, 0o600)
        os.replace(tmp, out)
    except OSError as e:
        raise BuildError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not quiet:
        with zipfile.ZipFile(out) as z:
            n = len(z.namelist())
        print(f"wrote {out} ({n} files; reference checks {visibility}; leaderboard {'on' if leaderboard else 'off'}; "
              f"library shortcuts policy {policy})")
        print(f"grading seed: {'new, kept in ' + str(seed_path) + ' (keep it private, for regrading)' if made else 'yours'}")
        if lang not in (None, i18n.DEFAULT):
            print(f"language of the results: {i18n.LANGUAGES[lang]} ({LANGUAGE_FILE} in the bundle)")
    return out, seed_path


# -- grading one submission (inside Gradescope's container) ---------------------------------------

def result(output, score=0):
    """A results.json that gives ``score`` with a message and no per-check entries."""
    return {"score": score, "output": output, "output_format": "text", "test_output_format": "text",
            "test_name_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}


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


def _copy_regular(src, dest, limit):
    """Copy a regular file of at most ``limit`` bytes without following a link that may have replaced it since it
    was found; False (nothing copied, nothing read) for one over the limit."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_size > limit:
            return False
        with open(dest, "wb") as g:
            shutil.copyfileobj(f, g)
    os.chmod(dest, 0o644)
    return True


def grade_submission(root, python=sys.executable, timeout=None, visibility=None, user=None, seed=None,
                     leaderboard=None, policy=None):
    """Grade ``root/submission``; return ``(results.json dict, flagged)``, flagged when the grading machinery
    failed somewhere in it (never raises for a student's reason)."""
    from grader import runner
    from grader.report import gradescope
    from grader.sandbox import MAX_SOURCE
    from kit.checkpoint import MAX_BYTES
    from kit.text import one_line
    root = Path(root)
    timeout = timeout or float(os.environ.get("GRADING_TIMEOUT") or DEFAULT_TIMEOUT)
    visibility = visibility or os.environ.get("REFERENCE_VISIBILITY") or "visible"
    leaderboard = bool(os.environ.get("LEADERBOARD")) if leaderboard is None else leaderboard
    found = find_files(root / "submission")
    units = [f for f in FILES if f in found]
    if not units:  # the upload's own names, each escaped (newlines, terminal escapes, bidi controls, markup)
        names = sorted(one_line(p.name, 80) for p in (root / "submission").rglob("*") if p.is_file())[:10]
        if names:
            return result(_("No exercise files in this submission: upload {files} (and {checkpoint} for the final "
                            "check). Found: {names}.").format(files=", ".join(FILES), checkpoint=CHECKPOINT,
                                                              names=", ".join(names))), False
        return result(_("No exercise files in this submission: upload {files} (and {checkpoint} for the final "
                        "check). Found: nothing.").format(files=", ".join(FILES), checkpoint=CHECKPOINT)), False
    work = Path(tempfile.mkdtemp(prefix="submission-"))  # root only (0700): the grading's record and temp files
    try:
        folder = work / "files"
        folder.mkdir()
        os.chmod(work, 0o711)
        os.chmod(folder, 0o755)
        too_big = [name for name, path in found.items()
                   if not _copy_regular(path, folder / name, MAX_BYTES if name == CHECKPOINT else MAX_SOURCE)]
        for name in too_big:
            del found[name]
        out = runner.run(folder, work / "grading", timeout=timeout, checkpoint=folder / CHECKPOINT,
                         checkpoint_shown=_("{name} (in your upload)").format(name=CHECKPOINT), user=user,
                         html=work / "report.html", seed=seed, untrusted=True,
                         allow_weak=bool(os.environ.get("ALLOW_WEAK_SANDBOX")),
                         python=python, policy=policy)
        print(out.output)  # Gradescope keeps run_autograder's output for the instructors (stdout is hidden)
        if out.status in ("graded", "grader-error") and out.grading is not None and out.grading.complete:
            from grader.report import pictures_part
            page = (work / "report.html").read_text(encoding="utf-8") if (work / "report.html").is_file() else ""
            data = gradescope(out.grading, visibility, leaderboard=leaderboard, pictures=pictures_part(page))
            notes = [_("Graded in {seconds:.0f} s ({isolation}).").format(seconds=out.seconds,
                                                                          isolation=render(out.grading.isolation))]
            missing = [f for f in FILES if f not in found]
            if missing:
                notes.append(_("Missing from your upload (their checks score 0): {files}.").format(
                    files=", ".join(missing)))
            extra = sorted({one_line(str(p.relative_to(root / "submission")), 80)
                            for p in (root / "submission").rglob("*") if p.is_file() or p.is_symlink()}
                           - {str(path.relative_to(root / "submission")) for path in found.values()})
            if extra:  # only the five files (and the checkpoint) are graded: nothing else of the upload is read
                shown = dict(files=", ".join(FILES), checkpoint=CHECKPOINT, names=", ".join(extra[:10]))
                notes.append(_("Not graded (only {files} and {checkpoint} are): {names} and {more} more.").format(
                    more=len(extra) - 10, **shown) if len(extra) > 10 else
                    _("Not graded (only {files} and {checkpoint} are): {names}.").format(**shown))
            if too_big:
                notes.append(_("Too large to be what the exercise asks for, so not graded: {names} (limits: "
                               "{source_mb} MB for a source file, {checkpoint_mb} MB for {checkpoint}).").format(
                    names=", ".join(too_big), source_mb=MAX_SOURCE >> 20, checkpoint_mb=MAX_BYTES >> 20,
                    checkpoint=CHECKPOINT))
            if CHECKPOINT not in found and CHECKPOINT not in too_big:
                notes.append(_("No {checkpoint} in your upload: the final TinyShakespeare check needs your trained "
                               "checkpoint (runs/final.pt, uploaded as {checkpoint}).").format(checkpoint=CHECKPOINT))
            if out.starved:
                notes.append(_("{n} check(s) stopped because the grading machine ran short of memory or time: this is "
                               "not a verdict on your code; please tell the course staff.").format(n=len(out.starved)))
            if out.grader_errors:
                notes.append(_("{n} check(s) hit a fault of the grader, not of your code: please tell the course "
                               "staff.").format(n=len(out.grader_errors)))
            data["output"] = " ".join(notes + ([data["output"]] if data.get("output") else []))
            data["execution_time"] = round(out.seconds)
            return data, out.flagged
        if out.grading is not None:  # stopped on the way (time, memory): the finished checks keep their points
            data = gradescope(out.grading, visibility, leaderboard=False)
            if out.status == "timeout":
                data["output"] = _("Grading took longer than {seconds:.0f} s and was stopped: the checks it finished "
                                   "are scored, the others are marked as not finished. Look for an endless loop or far "
                                   "too much work at import time; if your code is fast, please tell the course staff."
                                   ).format(seconds=timeout)
            else:
                data["output"] = _("The grading process was stopped by the machine: the checks it finished are scored, "
                                   "the others are marked as not finished. Look for an endless loop or far too much "
                                   "work at import time; if your code is fast, please tell the course staff.")
            return data, True
        if out.status == "timeout":
            return result(_("Grading took longer than {seconds:.0f} s and was stopped before any check finished. Look "
                            "for an endless loop or far too much work at import time; if your code is fast, please "
                            "tell the course staff.").format(seconds=timeout)), True
        if out.status == "invalid":  # the grader refused the input: one clear line, the student's to fix
            return result(_("This submission could not be graded: {error}").format(
                error=one_line(render(out.message), 300))), False
        return result(_("The autograder broke while grading this submission ({status}: {error}). This is not a "
                        "verdict on your code: please tell the course staff.").format(
            status=out.status, error=one_line(render(out.message), 300))), True
    finally:
        remove_tree(work)


def run(root):
    """run_autograder's work: grade, then write results.json atomically whatever happened."""
    import pwd

    from grader.report import write_json
    root = Path(root)
    user = os.environ.get("AUTOGRADER_USER", STUDENT)  # "" runs the code as the grader's own user
    seed_file = root / "source" / SEED_FILE
    seed = seed_file.read_text().strip() if seed_file.is_file() else os.environ.get("GRADER_SEED", "")
    policy_file = root / "source" / POLICY_FILE
    policy = policy_file.read_text().strip() if policy_file.is_file() else None  # the bundle's, else $KIT_POLICY
    flagged = True
    try:
        if user:
            pwd.getpwnam(user)
    except KeyError:  # fail closed: never run student code as root by accident
        data = result(_("The autograder is misconfigured: there is no user {user} to run student code as (did "
                        "setup.sh run?). This is not a verdict on your code: please tell the course staff.").format(
            user=repr(user)))
    else:
        t0 = time.monotonic()
        try:
            data, flagged = grade_submission(root, user=user or None, seed=seed, policy=policy)
        except Exception as e:  # noqa: BLE001 - a broken autograder still answers Gradescope
            print(f"autograder error after {time.monotonic() - t0:.0f} s: {type(e).__name__}: {e}")
            data = result(_("The autograder broke. This is not a verdict on your code: please tell the course staff."))
    write_json(root / "results" / "results.json", data)
    if flagged:
        print("autograder: the grading machinery failed on part of this submission (results.json says so): "
              "see the output above", file=sys.stderr)
    return 1 if flagged else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        p = ArgumentParser(prog="python -m classroom.gradescope run")
        p.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
        return run(p.parse_args(argv[1:]).root)
    p = ArgumentParser(prog="python -m classroom.gradescope", description="Build the Gradescope bundle.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the zip (default: %(default)s)")
    p.add_argument("--reference-visibility", "--hidden-visibility", dest="visibility", default="visible",
                   choices=VISIBILITIES, help="when students see the checks that compare with the reference "
                                              "(default: %(default)s, while the assignment is open)")
    p.add_argument("--timeout", type=positive, default=DEFAULT_TIMEOUT,
                   help="seconds for one submission's grading; keep it under Gradescope's limit (default: %(default)s)")
    p.add_argument("--seed", default=os.environ.get("GRADER_SEED"),
                   help="the course's grading seed (default: $GRADER_SEED, else a new one, written beside the zip)")
    p.add_argument("--leaderboard", action="store_true",
                   help="show the final project's perplexities and training minutes on Gradescope's leaderboard")
    p.add_argument("--policy", choices=("on", "off"), default="on",
                   help="the course's rules on library shortcuts (grader/policy.py; default: %(default)s)")
    p.add_argument("--lang", choices=list(i18n.LANGUAGES),
                   help="the language of results.json, what students read on Gradescope (default: kit/i18n.py's "
                        "choice: $KIT_LANG, which make gradescope LANG=zh sets, then the locale)")
    args = p.parse_args(argv)
    try:
        build(args.out, args.visibility, args.timeout, args.seed, args.leaderboard, policy=args.policy,
              lang=args.lang or i18n.language())
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
