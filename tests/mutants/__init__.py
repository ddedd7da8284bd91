"""The bug zoo: realistic student mistakes, each a small edit of the solutions.

A ``Mutant`` names the mistake, the file it lives in, the edit (``old`` ->
``new``, plus ``more`` edits in the same file when the mistake spans two
places), the checks it must lose (by function name without ``test_``) and a
piece of the grader's message that must name it (``named``: found in a
``likely:`` line, or in the specific ``hint:`` of a failed property check).
``says`` and ``never`` hold particular checks' messages to more: a phrase
one must show, a wrong diagnosis none may give.

``tests/test_bug_zoo.py`` grades every mutant and holds the grader to these
records; ``python -m tests.mutants.table`` regrades them all and rewrites the
table in docs/bug-zoo.md (the test keeps that table true).
"""
import shutil
from dataclasses import dataclass
from pathlib import Path

KIT = Path(__file__).resolve().parents[2]
SOLUTIONS = KIT / "solutions"
from kit.syllabus import FILES  # noqa: E402


@dataclass(frozen=True)
class Mutant:
    name: str           # the mistake, as a student would recognise it
    file: str           # e.g. "attention.py"
    old: str
    new: str
    loses: tuple        # the scored checks of the module that fail, e.g. ("matches_reference", "gradients")
    named: str          # a piece of the diagnosis or specific hint that names the mistake
    more: tuple = ()    # further (old, new) edits in the same file
    also: tuple = ()    # later modules graded too, to prove the mistake costs nothing there
    says: tuple = ()    # (check, phrase): that lost check's message must contain the phrase ("*": every lost check)
    never: tuple = ()   # phrases no lost check's message may contain (a wrong diagnosis seen before)

    @property
    def module(self):
        return self.file[:-3]

    @property
    def slug(self):
        keep = "".join(c if c.isalnum() else "-" for c in self.name.lower())
        return f"{self.module}-" + "-".join(filter(None, keep.split("-")))[:60]

    def apply(self, dest):
        """A copy of the solutions in ``dest`` with this mistake made (each anchor must occur exactly once)."""
        dest = copy_solutions(dest)
        path = dest / self.file
        text = path.read_text()
        for old, new in ((self.old, self.new), *self.more):
            count = text.count(old)
            assert count == 1, f"{self.name}: anchor found {count} times in {self.file}: {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
        return dest


def copy_solutions(dest):
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copy(SOLUTIONS / f, dest / f)
    return dest


def all_mutants():
    from . import attention, block, decoder, residual, rmsnorm
    return [*residual.MUTANTS, *rmsnorm.MUTANTS, *attention.MUTANTS, *block.MUTANTS, *decoder.MUTANTS]


def check_key(check):
    """``attention.gradients`` -> ``gradients``."""
    return check.split(".", 1)[1]


# --- grading many folders cheaply ---------------------------------------------------

class Grading:
    """Grade folders in this process, as ``python -m grader`` does, with one sandboxed worker for all of them.

    The checks, the worker and its sandbox are the real ones; only the worker process is reused across
    folders (``Sandbox.within``: each folder still loads as its own fresh package in it), which saves a
    torch import per folder. All folders must live under ``root``, the one folder the worker may read.
    ``reference`` is the live one by default; a ``grader.snapshot.Snapshot`` grades as the release does.
    """

    def __init__(self, root, reference=None):
        from grader.sandbox import Sandbox
        self.root = Path(root).resolve()
        self.sandbox = Sandbox(self.root, allow_weak=True)
        self.reference = reference

    def submission(self, folder):
        """The shared worker's handle, pointed at ``folder``."""
        folder = Path(folder).resolve()
        assert self.root in folder.parents, f"{folder} is not under {self.root}"
        return self.sandbox.within(folder)

    def grade(self, folder, modules, seed=""):
        """The grader's Results for ``modules`` of ``folder``, on the published inputs or on those of ``seed``
        (as the graded flows do: ``grader.harness.seeded``)."""
        from grader.run import REFERENCE, grade
        return grade(folder, only=list(modules), sandbox=self.submission(folder),
                     reference=self.reference or REFERENCE, seed=seed).results

    def close(self):
        self.sandbox.close()


# --- what one mutant's grading showed ---------------------------------------------------

@dataclass
class Outcome:
    mutant: Mutant
    lost: tuple         # scored checks of the mutant's module that failed (check keys)
    lost_names: tuple   # their displayed names
    elsewhere: tuple    # scored checks of other graded modules that failed: must be empty
    message: str        # the likely: or hint: text that names the mistake, or ""
    how: str            # "diagnosis" (a likely: line), "staged guess", "hint", or "" when not named
    outputs: dict       # check key -> failure text (for assertion messages)
    points: tuple       # (points lost, points of the module)
    grader_errors: tuple = ()  # checks of any graded module that ended in a grader error: must be empty
    results: tuple = ()  # every Result of the grading, as values (tests/test_bug_zoo.py words them in Chinese)

    @property
    def caught(self):
        return bool(self.lost)


def outcome(mutant, results):
    from grader.report import failure_text
    from kit.outcome import Kind
    own = [r for r in results if r.unit == mutant.module and r.points > 0 and not r.passed]
    elsewhere = tuple(f"{r.unit}: {r.title}" for r in results
                      if r.unit != mutant.module and r.points > 0 and not r.passed)
    found = []  # (0 for a likely: part, 1 for a hint:, text): a diagnosis is preferred
    for r in own:
        for rank, text in ((0, r.failure.likely), (1, r.failure.hint)):
            if text and mutant.named.lower() in text.lower():
                found.append((rank, text.strip()))
    rank, message = min(found, key=lambda f: f[0]) if found else (None, "")
    how = {0: "diagnosis", 1: "hint"}.get(rank, "")
    if how == "diagnosis" and message.startswith("best guess"):
        how = "staged guess"
    mine = [r for r in results if r.unit == mutant.module]
    points = (sum(r.points - r.score for r in mine), sum(r.points for r in mine))
    errors = tuple(f"{r.unit}: {r.title}" for r in results if r.failure and r.failure.kind is Kind.GRADER_ERROR)
    return Outcome(mutant, tuple(check_key(r.check) for r in own), tuple(r.title for r in own), elsewhere,
                   message, how, {check_key(r.check): failure_text(r.failure) for r in own}, points, errors,
                   tuple(results))
