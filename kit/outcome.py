"""What grading comes to, as values: a ``Result`` per check, with a ``Failure`` when it did not pass.

A failure keeps its kind and its parts (what was checked, what was expected, what came out, the
likely mistake, a hint, where in the student's code) from the check that raised it to every
output; only the renderers (``grader/report.py``) turn it into text: the terminal table,
results.json, the batch CSV, notebook feedback. No code reads a message's wording to decide
anything: it reads ``kind`` and the fields.

A field's words are a ``Text``: the English brace-format template (the msgid of the catalog,
``locale/``) and its parameters (numbers, shapes, code, names: what was measured, never prose), so
that an edge can word it in any language (``render``) while ``str(text)`` stays the English.
"""
import enum
import re
import string
from dataclasses import asdict, dataclass, field, replace

from kit import i18n


class Text(str):
    """A sentence as a value: ``T(template, **params)``. It *is* its English rendering (a ``str``: records,
    comparisons and tests read it as before); ``render(text, lang)`` words it in another language from the
    catalog. A parameter is a measured value or a piece of code (shown as it is, in every language) or
    another ``Text`` (worded in the same language). An operation on the ``str`` (``+``, slicing, an f-string)
    gives plain English back: wrap the whole sentence in one template instead."""

    template: str
    params: dict

    def to_json(self):
        return {"template": self.template,
                "params": {k: v.to_json() if isinstance(v, Text) else v for k, v in self.params.items()}}


def T(template, **params):
    """``template`` (a string literal: ``make locale`` extracts it, keyword ``T``) with its ``{name}`` fields
    filled from ``params``: the English ``Text``. Fields are plain names (no ``{a.b}`` or ``{a[0]}``), each
    given once, with a format spec where a number wants one (``{err:.3g}``)."""
    return text(template, params)


# what a field may ask of its value: alignment, a width of up to 3 digits, a thousands comma, a precision and a
# type; nothing nested (``{x:{y}}``) and no conversion but !r and !s
SPEC = re.compile(r"[<>^]?\d{0,3},?(?:\.\d{1,2})?[dfgxe%]?")


def text(template, params):
    """``T(template, **params)`` for a template held at run time rather than written here: one that is already a
    catalog message (a check's title, a Text's own template given new parameters, a ``PackError``'s), never
    submitted text. The same rules for its fields."""
    fields = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier() or not SPEC.fullmatch(spec or "") or conversion not in (None, "r", "s"):
                raise ValueError(f"T(): field {name!r} of a template is not a plain name with a simple format")
            fields.add(name)
    if fields != set(params):
        raise ValueError(f"T(): {template!r} has fields {sorted(fields)}, given {sorted(params)}")
    for k, v in params.items():
        if not isinstance(v, (str, int, float)) and v is not None:  # a record keeps them as JSON
            raise TypeError(f"T(): parameter {k!r} of {template!r} is a {type(v).__name__}: give its text or number")
    out = Text(template.format(**{k: str(v) if isinstance(v, Text) else v for k, v in params.items()}))
    out.template, out.params = template, params
    return out


def render(value, lang=None):
    """``value`` worded in ``lang`` (default: the language in force): a ``Text`` from the catalog, with its
    ``Text`` parameters worded the same way; anything else as it is. A translation that does not fit its
    parameters falls back to the English (the catalog's test keeps that from happening)."""
    if not isinstance(value, Text):
        return value
    params = {k: render(v, lang) for k, v in value.params.items()}
    worded = i18n.translation(lang).gettext(value.template)
    try:
        return worded.format(**params)
    except (KeyError, IndexError, ValueError):
        return value.template.format(**params)


def said(error):
    """What an exception says: the ``Text`` it was raised with (``raise DataError(T(...))``), worded by the edge that
    shows it, else its ``str``."""
    return error.args[0] if len(error.args) == 1 and isinstance(error.args[0], Text) else str(error)


def encode(value):
    """A ``Text`` for JSON, ``{"template", "params"}`` (None for anything else): a record keeps it beside the
    field's English, which stays a plain string for every reader."""
    return value.to_json() if isinstance(value, Text) else None


def decode(english, words=None, depth=0):
    """A field read back from a record (the grading process's own): its ``Text`` from ``words`` (``encode``'s),
    else the English as it is. ``ValueError`` for words nested deeper than a message ever is."""
    if isinstance(words, dict) and isinstance(words.get("template"), str) and isinstance(words.get("params"), dict):
        if depth > 8:
            raise ValueError("a record's words are nested too deeply")
        return text(words["template"], {k: decode(v, v, depth + 1) for k, v in words["params"].items()})
    return english


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


GRADER_ERROR_HINT = T("this is a fault of the grader, not of your code: please tell the course staff")


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

    TEXTS = ("checked", "expected", "got", "likely", "hint")

    def to_dict(self):
        d = {k: v for k, v in asdict(self).items() if v is not None}
        words = {k: encode(getattr(self, k)) for k in self.TEXTS if isinstance(getattr(self, k), Text)}
        d.update({k: str(d[k]) for k in self.TEXTS if k in d}, kind=self.kind.value)
        if words:
            d["words"] = words  # the Texts of the fields, for an edge that words them in another language
        return d

    @classmethod
    def from_dict(cls, d):
        where = Where(**d["where"]) if d.get("where") else None
        words = d.get("words") if isinstance(d.get("words"), dict) else {}
        d = {k: v for k, v in d.items() if k != "words"}
        return cls(**{**d, **{k: decode(d[k], words.get(k)) for k in cls.TEXTS if k in d}, "kind": Kind(d["kind"]),
                      "where": where})


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
        d["note"] = None if self.note is None else str(self.note)
        if isinstance(self.note, Text):
            d["note_words"] = encode(self.note)
        return d

    @classmethod
    def from_dict(cls, d):
        note = decode(d.get("note"), d.get("note_words"))
        d = {k: v for k, v in d.items() if k != "note_words"}
        return cls(**{**d, "failure": Failure.from_dict(d["failure"]) if d.get("failure") else None, "note": note})


def totals(results):
    """``(score, points)`` of a list of Results."""
    return sum(r.score for r in results), sum(r.points for r in results)


def by_unit(results):
    """``{unit: score}`` in the order the units first appear."""
    out = {}
    for r in results:
        out[r.unit] = out.get(r.unit, 0) + r.score
    return out
