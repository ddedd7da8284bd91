"""Grade one implementation folder: run the checks under pytest, collect one Result per check.

The checks live in ``grader/checks/properties`` and ``grader/checks/reference`` (one file per unit
of kit/syllabus.py). pytest runs them in this process; the submission's code runs only in the
sandbox's worker (grader/sandbox.py); the reference side is ``grader.reference.Live`` where
``solutions/`` is present, else the snapshot shipped with the student release.

A check passes only when it compared at least one value (``compare.compared``): one that returns
without comparing is a grader error, never a pass. A check that raises anything but a
CheckFailure is a grader error too: its traceback goes to the staff log (``Grading.errors``), and
the student is told only which check and to tell the course staff.
"""
import ctypes
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kit import syllabus
from kit.machine import torch_threads
from kit.outcome import GRADER_ERROR_HINT, CheckFailure, Failure, Kind, Result, T, decode, encode, text

KIT = Path(__file__).resolve().parent.parent
CHECKS = KIT / "grader" / "checks"
REFERENCE = KIT / "solutions"
COLLECTOR = pytest.StashKey()
NOT_FINISHED = T("the grader could not finish this check")


class GraderError(Exception):
    """The grader itself is broken (a check file does not import, say): never the student's fault."""


@dataclass
class Grading:
    """What one grading came to: the results, which isolation ran the code, how long it took, staff notes."""
    results: list
    isolation: str
    seconds: float
    seed: str = ""
    reference: str = "live"  # "live" (solutions/) or "snapshot"
    errors: list = field(default_factory=list)  # staff only: tracebacks of grader errors
    complete: bool = True  # False: a record written on the way, of the checks finished so far

    def to_dict(self):
        return {"results": [r.to_dict() for r in self.results], "isolation": str(self.isolation),
                "isolation_words": encode(self.isolation),
                "seconds": round(self.seconds, 2), "seed_is_published": not self.seed, "reference": self.reference,
                "complete": self.complete}

    @classmethod
    def from_dict(cls, d):
        return cls([Result.from_dict(r) for r in d["results"]], decode(d["isolation"], d.get("isolation_words")),
                   d["seconds"],
                   reference=d.get("reference", "live"), complete=d.get("complete", True))


def check_files(units, reference=True):
    files = []
    for u in units:
        for folder in ("properties", "reference") if reference else ("properties",):
            f = CHECKS / folder / f"{u}.py"
            if f.exists():
                files.append(str(f))
    return files


class Collector:
    """pytest plugin: hands the checks their sandbox and reference, gathers one Result per check."""

    shortcuts = {}  # grader/policy.py's findings, read before the checks ran: applied to every record, partial ones too

    def __init__(self, sandbox, reference, checkpoint=None, corpus=None, seed="", checkpoint_shown=None, threads=1,
                 record=None, final_timeout=None):
        self.sandbox, self.reference, self.seed = sandbox, reference, seed
        self.final_timeout = final_timeout  # seconds the final check may take (None: kit.perplexity.FINAL_TIMEOUT)
        self.record, self.t0 = record, time.monotonic()  # record: where each finished check is kept at once
        self.threads = threads  # this process's compute threads for the final check's measurement (grade)
        self.checkpoint = Path(checkpoint) if checkpoint else KIT / "runs" / "final.pt"
        # what messages call it: the name the student knows (runs/final.pt, the upload's final.pt), not a path
        # of the grading machine
        self.checkpoint_shown = checkpoint_shown or (str(checkpoint) if checkpoint else "runs/final.pt")
        self.corpus = corpus
        self.results, self.errors, self._items = [], [], {}
        self.current, self._notes, self._measured = None, {}, {}

    def pytest_configure(self, config):
        config.stash[COLLECTOR] = self

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext[-4000:]}")

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            if item.get_closest_marker("check") is None:
                raise GraderError(f"{item.nodeid} has no @check(points) marker")
            self._items[item.nodeid] = item

    def pytest_runtest_setup(self, item):
        from .compare import reset_comparisons
        self.current = item.nodeid
        reset_comparisons()

    def pytest_runtest_teardown(self, item):
        release_memory()

    def note(self, text):
        """A line a check wants shown even when it passes (a measured perplexity, say)."""
        self._notes[self.current] = text

    def measure(self, **numbers):
        """Numbers a check reports (the final check's perplexities and minutes: the leaderboard's)."""
        self._measured.setdefault(self.current, {}).update({k: v for k, v in numbers.items() if v is not None})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        from .compare import comparisons
        report = (yield).get_result()
        if call.when == "call":
            report._grader_exc = call.excinfo.value if call.excinfo is not None else None
            report._compared = comparisons()
        elif call.excinfo is not None:
            report._grader_exc = call.excinfo.value

    def pytest_runtest_logreport(self, report):
        item = self._items.get(report.nodeid)
        if item is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        points = item.get_closest_marker("check").kwargs["points"]
        path = Path(str(item.fspath))
        unit, name = path.stem, item.name.removeprefix("check_")
        title = (item.function.__doc__ or item.name).strip().splitlines()[0]
        failure = None
        exc = getattr(report, "_grader_exc", None)
        if isinstance(exc, CheckFailure):
            failure = exc.failure
        elif not report.passed:
            failure = self._grader_error(report, title)
        elif getattr(report, "_compared", 0) == 0:  # passed without comparing anything: that is no pass
            self.errors.append(f"{report.nodeid}: passed without comparing a single value")
            failure = Failure(Kind.GRADER_ERROR, _title_text(title), got=NOT_FINISHED,
                              hint=GRADER_ERROR_HINT)
        self.results.append(Result(unit, f"{unit}.{name}", title, points, points if failure is None else 0,
                                   path.parent.name == "reference", failure,
                                   self._notes.get(report.nodeid) if failure is None else None,
                                   self._measured.get(report.nodeid, {})))
        if self.record:  # a grading killed later (out of time or memory) keeps what it finished (grader/runner.py)
            from kit.files import write_text

            from .policy import apply
            partial = Grading(apply(self.results, self.shortcuts), self.sandbox.isolation.describe(),
                              time.monotonic() - self.t0, self.seed, complete=False)
            write_text(self.record, json.dumps(partial.to_dict()))

    def _grader_error(self, report, title):
        self.errors.append(f"{report.nodeid}: {report.longreprtext[-4000:]}")
        return Failure(Kind.GRADER_ERROR, _title_text(title), got=NOT_FINISHED,
                       hint=GRADER_ERROR_HINT)


def _title_text(title):
    """A check's title as a ``Text`` whose template is the title itself (a catalog message: ``kit.i18n.extract``
    takes each check's title), so that a failure's ``checked`` is worded in the language in force. A title has no
    braces; one that had would be escaped (it then stays English)."""
    return text(title.replace("{", "{{").replace("}", "}}"), {})


def release_memory():
    """Give the heap's free memory back to the system (glibc keeps it): a grading fits a 512 MB container."""
    try:
        _TRIM[0] = _TRIM[0] or ctypes.CDLL(None).malloc_trim
        _TRIM[0](0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        _TRIM[0] = None


_TRIM = [0]


def points_of(results):
    """``{unit: points}`` of a grading's checks."""
    out = {}
    for r in results:
        out[r.unit] = out.get(r.unit, 0) + r.points
    return out


def grade(folder, only=None, checkpoint=None, corpus=None, sandbox=None, reference=REFERENCE, call_timeout=20.0,
          user=None, seed="", untrusted=False, allow_weak=False, checkpoint_shown=None, record=None, policy=False,
          final_timeout=None):
    """Grade ``folder``; return a Grading (missing files fail their checks, with a message). ``policy``: hold the
    files to the course's rules on library shortcuts (grader/policy.py; ``python -m grader`` turns it on)."""
    from .sandbox import Sandbox
    units = syllabus.in_order(only or syllabus.NAMES)
    t0 = time.monotonic()
    own = sandbox is None
    sandbox = sandbox or Sandbox(folder, call_timeout=call_timeout, user=user, untrusted=untrusted,
                                 allow_weak=allow_weak)
    ref = reference_for(reference, seed) if isinstance(reference, (str, Path)) else reference
    kind = "live" if getattr(ref, "live", False) else "snapshot"
    if own:
        sandbox.start()  # the worker imports torch while pytest starts up here
    import torch
    # the checks compute on small tensors, one thread each side: two threads in the grader and two in the worker, on
    # two cores, spin against each other (BENCHMARKS.md); the final check's measurement takes what torch had here
    threads = torch.get_num_threads()
    from . import policy as course_policy  # the files as submitted, read here before any check runs
    shortcuts = course_policy.findings(folder, units) if policy else {}
    plugin = Collector(sandbox, ref, checkpoint=checkpoint, corpus=corpus, seed=seed, checkpoint_shown=checkpoint_shown,
                       threads=threads, record=record, final_timeout=final_timeout)
    plugin.shortcuts = shortcuts
    args = ["-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:stepwise", "-p", "no:warnings", "-p", "no:logging",
            "-p", "no:junitxml", "-p", "no:doctest", "-p", "no:pastebin", "-p", "no:tmpdir", "-p", "no:monkeypatch",
            "-p", "no:recwarn", "-p", "no:setuponly", "-p", "no:setupplan", "-p", "no:debugging", "-p", "no:faulthandler",
            "-p", "no:unraisableexception", "-p", "no:threadexception", "--assert=plain",
            "--rootdir", str(KIT), "-c", str(CHECKS / "pytest.ini"), *check_files(units)]
    try:
        with torch_threads(1):
            code = pytest.main(args, plugins=[plugin])
    finally:
        if own:
            sandbox.close()
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not plugin.results:
        raise GraderError(f"the checks could not run (pytest exit code {int(code)}): " + "\n".join(plugin.errors))
    wrong = {u: p for u, p in points_of(plugin.results).items() if p != syllabus.POINTS[u]}
    if wrong:
        raise GraderError("the checks' points do not add up to the syllabus's: " + ", ".join(
            f"{u} {p:g} (syllabus {syllabus.POINTS[u]})" for u, p in wrong.items()))
    return Grading(course_policy.apply(plugin.results, shortcuts), sandbox.isolation.describe(), time.monotonic() - t0,
                   seed, kind, plugin.errors)


def reference_for(folder=REFERENCE, seed=""):
    """The live reference where ``folder`` holds it; else the published snapshot (which knows one seed only).
    Raises GraderError when there is neither."""
    from .reference import Live
    if (Path(folder) / "decoder.py").is_file():
        return Live(folder)
    from .snapshot import Snapshot
    try:
        return Snapshot.load(seed)
    except FileNotFoundError as e:
        raise GraderError(str(e)) from None
