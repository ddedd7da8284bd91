"""Grade one folder in a process of its own: the one runner behind batch grading, the Gradescope
runner and the notebooks' checks.

``run(folder, work, ...)`` starts ``python -m grader --record`` on the folder with a wall-clock
limit for the whole grading, reads the exit status as ``grader/__main__.py`` defines it, and
returns an ``Outcome``: the status, the Grading read back from the record (values, not text), a
one-line message, the seconds it took and the grader's output. Every wait has a deadline; a
grading past its limit is killed with its whole process group (its sandbox dies with it), and
its temporary folders, which it keeps under ``work``, go with ``work``.
"""
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kit.host import host
from kit.host import kill as host_kill
from kit.i18n import N_
from kit.outcome import Kind, T

KIT = Path(__file__).resolve().parent.parent
# the exit status of python -m grader (and of its batch command), and what the runner makes of each
# (full marks and failures alike also need the record)
EXIT_FULL, EXIT_FAILED, EXIT_USAGE, EXIT_GRADER, EXIT_REFUSED = 0, 1, 2, 3, 4
STATUS = {EXIT_FULL: "graded", EXIT_FAILED: "graded", EXIT_USAGE: "invalid", EXIT_GRADER: "grader-error",
          EXIT_REFUSED: "refused"}
OUTPUT_LIMIT = 1 << 20  # bytes of the grader's output kept for the staff
GRADER_MB = 512  # the grading's own process (torch, the reference, the checks: ~300 MB), on top of the worker's


@dataclass
class Outcome:
    status: str  # graded, invalid, grader-error, refused, timeout, crashed, interrupted
    grading: object  # grader.run.Grading, or None
    message: str
    seconds: float
    output: str = ""

    @property
    def starved(self):
        """The checks that stopped because the grading machine ran short of memory (not the code's fault)."""
        return [] if self.grading is None else [r for r in self.grading.results
                                                if r.failure is not None and r.failure.kind is Kind.STARVED]

    @property
    def flagged(self):
        """Whether the course staff must look at this one: the grading machinery failed somewhere in it."""
        return self.status not in ("graded", "invalid") or bool(self.starved or self.grader_errors)

    @property
    def grader_errors(self):
        return [] if self.grading is None else [r for r in self.grading.results
                                                if r.failure is not None and r.failure.kind is Kind.GRADER_ERROR]


class Processes:
    """The gradings running now, so that an interrupt can stop them all."""

    def __init__(self):
        self.procs, self.lock, self.stopping = set(), threading.Lock(), False

    def add(self, proc):
        with self.lock:
            if self.stopping:
                kill(proc)
                return False
            self.procs.add(proc)
            return True

    def discard(self, proc):
        with self.lock:
            self.procs.discard(proc)

    def kill_all(self):
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            kill(p)


INTERRUPTED = T("not graded: interrupted")


def kill(proc):
    """SIGKILL a grading and everything in its process group (its sandbox dies with it); wait, with a deadline."""
    host_kill(proc, wait=30.0)


def _read_record(path):
    from .run import Grading
    try:
        return Grading.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    # a record the grading wrote, but one its submission may have shaped: deep or huge words fail here, not later
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, MemoryError, OverflowError):
        return None


def _unfinished(grading, units, why, kind):
    """``grading`` (a record written on the way) with the checks it did not reach failed by ``why``: the finished
    ones keep their points. None when nothing was finished."""
    if grading is None or not grading.results:
        return None
    from kit import syllabus
    from kit.outcome import Failure, Result
    done = {r.unit for r in grading.results}
    for unit in syllabus.in_order(units or syllabus.NAMES):
        left = syllabus.POINTS[unit] - sum(r.points for r in grading.results if r.unit == unit)
        if left > 0 or unit not in done:
            title = NOT_REACHED.get(unit, f"{unit}: the checks not reached")
            grading.results.append(Result(unit, f"{unit}.unfinished", title, max(left, 0), 0, False,
                                          Failure(kind, T("the {unit} checks not finished", unit=unit), got=why)))
    return grading


# the titles of the checks a grading did not reach, one per unit (a title is a catalog message: grader/report.py)
NOT_REACHED = {"residual": N_("residual: the checks not reached"), "rmsnorm": N_("rmsnorm: the checks not reached"),
               "attention": N_("attention: the checks not reached"), "block": N_("block: the checks not reached"),
               "decoder": N_("decoder: the checks not reached"), "final": N_("final: the checks not reached")}


def _last_line(text):
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def run(folder, work, units=None, timeout=900.0, call_timeout=20.0, checkpoint=None, user=None, seed=None,
        untrusted=True, allow_weak=False, threads=None, python=sys.executable, registry=None, corpus=None,
        checkpoint_shown=None, html=None, memory_mb=None, policy=None):
    """Grade ``folder`` in a fresh process, writing only under ``work``; return an Outcome.

    ``checkpoint_shown``: what the messages call the checkpoint (default: ``checkpoint`` as given, which the
    grading, running in the kit's folder, sees resolved)."""
    shown = checkpoint_shown or (None if checkpoint is None else str(checkpoint))
    work = Path(work)
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    record = work / "record.json"
    # the grading runs in the kit's folder: every path it is given must not depend on this one's
    folder = Path(folder).resolve()
    checkpoint = None if checkpoint is None else Path(checkpoint).resolve()
    corpus = None if corpus is None else Path(corpus).resolve()
    cmd = [python, "-m", "grader", "--impl", str(folder), "--record", str(record), "--no-color",
           "--timeout", str(call_timeout)]
    if units:
        cmd += ["--only", *units]
    if html is not None:
        cmd += ["--html", str(Path(html).resolve())]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint), "--checkpoint-shown", shown]
    if corpus is not None:
        cmd += ["--corpus", str(corpus)]
    if user:
        cmd += ["--user", user]
    if untrusted:
        cmd.append("--untrusted")
    if allow_weak:
        cmd.append("--allow-weak-sandbox")
    if policy:
        cmd += ["--policy", policy]
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    if memory_mb:
        env["GRADER_MEMORY_MB"] = str(int(memory_mb))
    # as root: the whole grading (this command, its worker and all they start) in a memory cgroup of its own,
    # so that running out of memory stops this grading and no other; elsewhere each process's own limits hold
    from .cgroup import Group
    worker_mb = int(env.get("GRADER_MEMORY_MB") or 4096)
    group = Group.create("kit-grading", worker_mb + GRADER_MB)
    if seed:
        env["GRADER_SEED"] = seed
    if threads:
        env.update(GRADER_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    t0 = time.monotonic()
    with open(work / "output.txt", "w+", encoding="utf-8", errors="replace") as log:
        try:
            proc = subprocess.Popen(cmd, cwd=KIT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=host().process_groups)
            if group is not None:  # at once: the grading starts its worker only after its imports (a second)
                group.add(proc.pid)
        except BaseException:
            if group is not None:
                group.remove()
            raise
        if registry is not None and not registry.add(proc):
            if group is not None:
                group.remove()
            return Outcome("interrupted", None, INTERRUPTED, 0.0)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
            code = None
        finally:
            if group is not None:
                group.remove()  # whatever the grading left running, and only that
            if registry is not None:
                registry.discard(proc)
        seconds = time.monotonic() - t0
        log.seek(0)
        output = log.read(OUTPUT_LIMIT)
    if registry is not None and registry.stopping and (code is None or code < 0):
        return Outcome("interrupted", None, INTERRUPTED, seconds, output)
    if code is None:  # the checks finished before the limit keep their points (the record is written on the way)
        why = T("not finished: the grading was stopped after {seconds:g} s (the limit for one grading)",
                seconds=timeout)
        return Outcome("timeout", _unfinished(_read_record(record), units, why, Kind.TIMED_OUT), why, seconds, output)
    status = STATUS.get(code, "crashed")
    if code in (EXIT_FULL, EXIT_FAILED, EXIT_GRADER):
        grading = _read_record(record)
        if grading is not None and grading.complete:
            return Outcome(status if status == "graded" else "grader-error", grading, "" if status == "graded" else
                           T("the grader failed on part of this submission (see the checks marked as its fault)"),
                           seconds, output)
        if status == "graded":
            return Outcome("crashed", None, T("the grading process left no readable record"), seconds, output)
    if status in ("crashed", "grader-error"):  # killed (out of memory?) or broken: what it finished still counts
        why = T("the grading process was killed by signal {signal}", signal=-code) if code < 0 else \
            T("the grading process exited with status {status}", status=code)
        partial = _unfinished(_read_record(record), units,
                              T("{why} before these checks ran: not a verdict on your code", why=why), Kind.GRADER_ERROR)
        return Outcome(status, partial, T("{why}: {output_code}", why=why, output_code=_last_line(output)), seconds,
                       output)
    return Outcome(status, None, _last_line(output), seconds, output)
