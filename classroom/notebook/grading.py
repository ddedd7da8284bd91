"""Running the grader's checks from a notebook cell, through the grader's own runner.

The first check of a unit grades the whole unit once (``grader.runner``: a separate process, the
sandboxed worker, the reference; during ``nbgrader autograde`` the course's grading seed and the
untrusted-code sandbox) and caches the results by the files' content; each test cell then passes
or raises ``CheckFailed`` with that check's own message, and nothing else: its traceback is the
message (IPython and nbgrader show ``_render_traceback_``), so the feedback holds no kit internals
and no paths.
"""
import functools
import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from grader import runner
from grader.report import note, num, pictures_part, title
from grader.report import notebook as render_failure
from kit.files import remove_tree
from kit.i18n import N_, _
from kit.outcome import T, Text, render, text
from kit.text import plain_text

# seconds for one grading run: one module well under a minute; the final check measures 200,000 characters
# with the 4 x 256 model, minutes on 2 cores. nbgrader's cell limits are these plus CELL_MARGIN
# (classroom/nbgrader.py), so the grader's own time-out, with its message, always comes first.
GRADING_TIMEOUT, FINAL_GRADING_TIMEOUT, CELL_MARGIN = 270.0, 1170.0, 30

_CACHE = {}  # unit -> (key, Grading): the latest grading of each unit in this kernel
# set to "outside" in the kernel's environment by the course's autograde (classroom/nbgrader_autograde.py): the
# grader scores every test cell after the notebook has run, outside this kernel, and replaces its output
OUTSIDE = "TRANSFORMER_KIT_GRADING"
GRADED_OUTSIDE = N_("graded by the course's grader once the notebook has run, outside this kernel: "
                    "its result replaces this line")


@functools.cache
def notebook_hints():
    """The final check's hints that speak to a student at a terminal (make, git), by template: the same advice as
    a notebook student follows it. A failure's hint is swapped wherever it holds one (``swap_hints``), in every
    language (each side is a ``T``, worded by the edge)."""
    from grader.checks.properties import final  # the grader's checks: imported only when a hint is shown
    return {
        final.HANDIN_HINT.template: T("run the training cell of this notebook (it stops by itself once under 2.5; "
                                      "about half an hour on 2 CPU cores) and run the check cells again; hand in the "
                                      "notebook folder with the runs/final.pt it wrote"),
        final.TRAIN_HINT.template: T("run the training cell of this notebook"),
        final.RESUME_HINT.template: T("train longer: set RESUME = True in the training cell and run it again: it "
                                      "continues your run"),
        final.RETRAIN_HINT.template: T("train the curriculum's model with the training cell of this notebook; do "
                                       "not edit the file"),
        final.TIED_HINT.template: T("the head is tied to the embedding: train the curriculum's model with the "
                                    "training cell of this notebook; do not edit the file"),
        final.SIZES_HINT.template: T("train the curriculum's model: the training cell of this notebook, unchanged"),
        final.CORPUS_HINT.template: T("train on data/tinyshakespeare.txt with the training cell of this notebook"),
    }


def swap_hints(value):
    """``value`` with every ``Text`` among it (itself, or a parameter at any depth) whose template is a terminal
    hint (``notebook_hints``) replaced by the notebook's; anything else as it is."""
    if not isinstance(value, Text):
        return value
    words = notebook_hints().get(value.template)
    if words is not None:
        return words
    params = {k: swap_hints(v) for k, v in value.params.items()}
    if all(params[k] is v for k, v in value.params.items()):
        return value
    return text(value.template, params)  # the same Text, new params


class CheckFailed(AssertionError):
    """A test cell's failure: shows as its message only."""

    def _render_traceback_(self):
        return str(self).splitlines()


def autograding():
    """Whether nbgrader is executing this notebook to grade it (autograde, or a student's Validate)."""
    return os.environ.get("NBGRADER_EXECUTION") in ("autograde", "validate")


def _digest(folder, checkpoint):
    h = hashlib.sha256()
    for p in sorted(Path(folder).glob("*.py")):
        h.update(p.name.encode() + p.read_bytes())
    if checkpoint is not None:
        c = Path(checkpoint)
        h.update(f"{c.resolve()}:{c.stat().st_mtime_ns if c.exists() else None}".encode())
    return h.hexdigest()


def grade_unit(unit, folder, checkpoint=None):
    """The grader's Grading of ``unit`` on ``folder``: one grading run, cached by the files' content."""
    key = (str(Path(folder).resolve()), _digest(folder, checkpoint))
    cached = _CACHE.get(unit)
    if cached is None or cached[0] != key:
        work = Path(tempfile.mkdtemp(prefix="notebook-grading-"))
        try:
            out = runner.run(folder, work, [unit], timeout=FINAL_GRADING_TIMEOUT if unit == "final" else GRADING_TIMEOUT,
                             checkpoint=checkpoint, untrusted=autograding(), html=work / "report.html",
                             allow_weak=not autograding() or bool(os.environ.get("GRADER_ALLOW_WEAK_SANDBOX")))
            pictures = _pictures(work / "report.html")
        finally:
            remove_tree(work)
        if out.grading is None:
            raise CheckFailed(_("the grader could not grade {file}: {message} (this is not a verdict on your code: "
                                "tell the course staff if it persists)").format(
                file=f"{unit}.py", message=plain_text(render(out.message) or out.status)))
        _CACHE[unit] = (key, out.grading, pictures)
    return _CACHE[unit][1]


def notebook_message(result):
    """A failed check as a notebook test cell shows it: the grader's words, its hint told as to a notebook student."""
    f = result.failure
    if f is not None and isinstance(f.hint, Text):
        result = replace(result, failure=replace(f, hint=swap_hints(f.hint)))
    return render_failure(result)


def pictures_of(report):
    return _pictures(report)


def _pictures(report):
    """The pictures part of the grader's HTML report (attention weights, gradient norms), or None."""
    try:
        return pictures_part(report.read_text(encoding="utf-8"))[0]
    except OSError:
        return None


def show_pictures(unit):
    """Show the unit's pictures under the running cell (a notebook kernel; elsewhere nothing), once per grading."""
    cached = _CACHE.get(unit)
    if cached is None or not cached[2]:
        return
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(HTML(cached[2]))
        _CACHE[unit] = (cached[0], cached[1], None)


def run_checks(unit, ids, folder, checkpoint=None, out=print):
    """Run the checks ``ids`` (None: all of the unit's) on ``folder``; return their Results.

    Prints one line per check and raises CheckFailed with the grader's messages when a check worth
    points fails. 0-point checks (INFO) only print.
    """
    results = grade_unit(unit, folder, checkpoint).results
    by_id = {r.check: r for r in results}
    wanted = list(by_id) if ids is None else list(ids)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise CheckFailed(_("these checks did not run: {checks} (no such check in this kit's grader: ask your "
                            "instructor to update the kit)").format(checks=", ".join(missing)))
    failed = []
    for i in wanted:
        r = by_id[i]
        mark = _("INFO") if r.points == 0 else (_("PASS") if r.passed else _("FAIL"))
        out(f"{mark} {num(r.score)}/{num(r.points)}  {title(r)}")
        if r.passed and r.note:
            out("      " + note(r))
        elif not r.passed and r.points == 0:
            out("      " + notebook_message(r).replace("\n", "\n      "))
        elif not r.passed:
            failed.append(r)
    if failed:
        show_pictures(unit)  # what the failure looks like (an attention map, gradient norms), where there is one
        raise CheckFailed("\n\n".join(notebook_message(r) for r in failed))
    return [by_id[i] for i in wanted]
