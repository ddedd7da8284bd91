"""What grading comes to, as values: a ``Result`` per check, with a ``Failure`` when it did not pass.

A failure keeps its kind and its parts (what was checked, what was expected, what came out, the
likely mistake, a hint, where in the student's code) from the check that raised it to every
output; only the renderers (``grader/report.py``) turn it into text: the terminal table,
results.json, the batch CSV, notebook feedback. No code reads a message's wording to decide
anything: it reads ``kind`` and the fields.
"""
import enum
from dataclasses import asdict, dataclass, field, replace


class Kind(str, enum.Enum):
    NOT_IMPLEMENTED = "not-implemented"  # a stub's NotImplementedError is still there
    CRASHED = "crashed"  # the student's code raised, called exit, or its process died
    TIMED_OUT = "timed-out"  # no answer within the time limit
    WRONG_VALUE = "wrong-value"  # outputs or gradients differ from the reference's
    WRONG_STRUCTURE = "wrong-structure"  # names, shapes, dtypes, parameters, types
    REFUSED = "refused"  # the sandbox refused what the code tried (a file, a process, the network)
    MALFORMED = "malformed-answer"  # the worker's answer does not fit the request: never graded as correct
    NOT_RUN = "not-run"  # an earlier failure of the same code (an import that hung, say) stopped it
    NOT_ALLOWED = "not-allowed"  # the code uses a library shortcut the course's policy rules out (grader/policy.py)
    STARVED = "starved"  # the grading machine ran out of memory or time: not a verdict on the code
    GRADER_ERROR = "grader-error"  # the grader itself is broken: tell the course staff

    @property
    def students_fault(self):
        """Whether this kind of failure is a verdict on the submitted code."""
        return self not in (Kind.STARVED, Kind.GRADER_ERROR)


GRADER_ERROR_HINT = "this is a fault of the grader, not of your code: please tell the course staff"


@dataclass(frozen=True)
class Where:
    """A place in the student's code."""
    file: str
    line: int
    function: str
    code: str = ""


@dataclass(frozen=True)
class Failure:
    kind: Kind
    checked: str  # what was run: the call, the shapes
    expected: str = None
    got: str = None
    likely: str = None  # the known mistake the output matches, when one does
    hint: str = None  # what to look at
    where: Where = None

    def diagnosed(self, likely, hint=None):
        """The same failure, naming the likely mistake (and a sharper hint)."""
        return replace(self, likely=likely, hint=hint or self.hint)

    def to_dict(self):
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["kind"] = self.kind.value
        return d

    @classmethod
    def from_dict(cls, d):
        where = Where(**d["where"]) if d.get("where") else None
        return cls(**{**d, "kind": Kind(d["kind"]), "where": where})


class CheckFailure(AssertionError):
    """Raised by a check: carries the Failure, rendered only at the edges."""

    def __init__(self, checked, expected=None, got=None, hint=None, likely=None, kind=Kind.WRONG_VALUE, where=None,
                 failure=None):
        self.failure = failure or Failure(Kind(kind), checked, expected, got, likely, hint, where)
        super().__init__(self.failure.checked)

    @classmethod
    def of(cls, failure):
        return cls(None, failure=failure)


@dataclass
class Result:
    """One check's outcome."""
    unit: str  # "rmsnorm"
    check: str  # "rmsnorm.eps": unique, stable; what notebooks and the bug zoo name
    title: str  # the check's docstring's first line
    points: float
    score: float
    reference: bool  # compared with the reference (or its snapshot); False for property checks
    failure: Failure = None
    note: str = None  # what a passing check wants shown (a measured perplexity, say)
    measured: dict = field(default_factory=dict)  # numbers a check reports (the leaderboard reads them)

    @property
    def passed(self):
        return self.failure is None

    def to_dict(self):
        d = asdict(self)
        d["failure"] = self.failure.to_dict() if self.failure else None
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "failure": Failure.from_dict(d["failure"]) if d.get("failure") else None})


def totals(results):
    """``(score, points)`` of a list of Results."""
    return sum(r.score for r in results), sum(r.points for r in results)


def by_unit(results):
    """``{unit: score}`` in the order the units first appear."""
    out = {}
    for r in results:
        out[r.unit] = out.get(r.unit, 0) + r.score
    return out
