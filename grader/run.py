"""Grade one implementation folder: run the pytest checks, collect points, report.

The checks live in ``grader/checks/visible`` (shapes, smoke tests and
properties that need no reference) and ``grader/checks/hidden`` (comparisons
with ``solutions/``, present only where the grader is complete). The student
release and the nbgrader notebooks carry the visible ones only.
"""
from pathlib import Path

import pytest

from .report import Result

KIT = Path(__file__).resolve().parent.parent
CHECKS = KIT / "grader" / "checks"
MODULES = ["residual", "rmsnorm", "attention", "block", "decoder", "final"]
POINTS = {"residual": 10, "rmsnorm": 15, "attention": 25, "block": 20, "decoder": 15, "final": 15}
REFERENCE = KIT / "solutions"


COLLECTOR = pytest.StashKey()


class GraderError(Exception):
    """The grader itself is broken (a check file does not import, say): never the student's fault."""


class Collector:
    """pytest plugin: hands the session its submission and gathers one Result per check."""

    def pytest_configure(self, config):
        config.stash[COLLECTOR] = self

    def __init__(self, submission, reference, checkpoint=None, corpus=None):
        self.submission = submission
        self.reference = reference
        self.checkpoint = Path(checkpoint) if checkpoint else KIT / "runs" / "final.pt"
        self.corpus = corpus
        self.notes = {}
        self.current = None
        self.results = []
        self.errors = []
        self._items = {}

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext[-2000:]}")

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            if item.get_closest_marker("check") is None:
                raise RuntimeError(f"{item.nodeid} has no @check(points) marker")
            self._items[item.nodeid] = item

    def pytest_runtest_setup(self, item):
        self.current = item.nodeid

    def note(self, text):
        """A line a check wants shown even when it passes (a measured perplexity, say)."""
        self.notes[self.current] = text

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        # keep the exception itself, so a CheckFailure prints as written, without pytest's traceback
        report = (yield).get_result()
        if call.excinfo is not None:
            report._grader_exc = call.excinfo.value

    def pytest_runtest_logreport(self, report):
        item = self._items.get(report.nodeid)
        if item is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            mark = item.get_closest_marker("check")
            points = mark.kwargs["points"]
            doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
            module = Path(str(item.fspath)).stem.replace("test_", "")
            output = self.notes.get(report.nodeid, "") if report.passed else _failure_text(report)
            self.results.append(Result(module, doc, points, points if report.passed else 0,
                                       mark.kwargs["visibility"], output, report.nodeid, report.passed))


def _failure_text(report):
    from .compare import CheckFailure
    exc = getattr(report, "_grader_exc", None)
    if isinstance(exc, CheckFailure):
        return str(exc)
    text = report.longreprtext or ""
    return "the grader could not finish this check (a grader error, not your fault; please report it):\n" + text[-1500:]


def check_files(modules, hidden=True):
    files = []
    for m in modules:
        for vis in ("visible", "hidden") if hidden else ("visible",):
            f = CHECKS / vis / f"test_{m}.py"
            if f.exists():
                files.append(str(f))
    return files


def grade(folder, only=None, checkpoint=None, corpus=None, submission=None, reference=REFERENCE,
          call_timeout=20.0, user=None):
    """Grade ``folder``; return the list of Results (also for missing files: those checks fail)."""
    from .submission import Reference, Submission
    modules = [m for m in MODULES if m in (only or MODULES)]
    sub = submission or Submission(folder, call_timeout=call_timeout, user=user)
    sub.start()  # the worker imports torch while pytest starts up here
    ref = Reference(reference) if Path(reference).is_dir() else None
    plugin = Collector(sub, ref, checkpoint=checkpoint, corpus=corpus)
    args = ["-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:stepwise",
            "--rootdir", str(KIT), "-c", str(CHECKS / "pytest.ini"), *check_files(modules, hidden=ref is not None)]
    try:
        code = pytest.main(args, plugins=[plugin])
    finally:
        if submission is None:
            sub.close()
    if plugin.errors or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise GraderError(f"the checks could not run (pytest exit code {int(code)}): " + "\n".join(plugin.errors))
    return plugin.results


def summary(results):
    return sum(r.score for r in results), sum(r.points for r in results)
