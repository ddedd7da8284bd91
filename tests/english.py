"""What a zh grading may still show in English: code, numbers, names, and what the student's own code said.

``english(value)`` lists the English sentences (runs of three or more English words) a failure's field shows in
Chinese outside code: in the translated templates (at every level of a ``Text``, backquoted code left out), in a
field that is not a ``Text`` at all, and in a parameter that is prose rather than code or a measured value. A
parameter may carry the student's own words only under a name that says so (``STUDENT_TEXT``: the text of an
exception their code raised, a line of their code)."""
import re

from kit import i18n
from kit.outcome import Text

ENGLISH = re.compile(r"(?<![A-Za-z0-9_/.-])[A-Za-z]{2,}(?:[ ,;:]+[A-Za-z]{2,}){2,}")  # not inside a path or a name
CODE = re.compile(r"`[^`]*`")
STUDENT_TEXT = ("error", "code")  # a parameter named so, or ending in _error / _code


def students(name):
    return name in STUDENT_TEXT or name.endswith(tuple("_" + n for n in STUDENT_TEXT))


def runs(text):
    return ENGLISH.findall(CODE.sub("", text))


def skeleton(value, lang="zh"):
    """``value`` worded in ``lang`` with every plain parameter left out: only the catalog's words."""
    params = {k: skeleton(v, lang) if isinstance(v, Text) else "" if isinstance(v, str) else v
              for k, v in value.params.items()}  # numbers stay: a field may format them ({err:.3g})
    return i18n.translation(lang).gettext(value.template).format(**params)


def english(value, lang="zh"):
    """The English sentences ``value`` (a failure's field, a note) shows in ``lang``: ``[(where, words)]``."""
    if value is None:
        return []
    if not isinstance(value, Text):
        return [("not a Text", w) for w in runs(str(value))]
    found = [("template " + repr(value.template[:60]), w) for w in runs(skeleton(value, lang))]
    stack = [value]
    while stack:
        t = stack.pop()
        for k, v in t.params.items():
            if isinstance(v, Text):
                stack.append(v)
            elif isinstance(v, str) and not students(k):
                found += [(f"parameter {k} of {t.template[:60]!r}", w) for w in runs(v)]
    return found
