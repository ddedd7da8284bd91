"""Text that came from submitted code, made safe to print and write: one escaping function per output format.

Anything a submission controls (an exception's message, a printed line, a parameter's name, a class
name, an uploaded file's name, a submission folder's name) may hold terminal escapes, bidi overrides
that reorder a line (U+202E), line and paragraph separators (U+2028, U+2029) or plain newlines that
would let it write a fake line into a report. ``one_line`` turns every such character into a visible
escape (``\\n``, ``\\u202e``) and caps the length; the grader applies it to every string it reads from
the worker, so reports never carry raw submitted text.

Each output then passes every piece of text it shows through the function of its format, here and
nowhere else (``grader/report.py`` and the classroom layer call them):

- ``plain_text``: a terminal, a log (GitHub Actions renders ANSI colours and reads ``::`` commands),
  notebook feedback, Gradescope's ``"text"`` output: one line, every unsafe character escaped;
- ``html_text``: the HTML report, Gradescope's ``"html"`` output, a notebook's HTML: the same, then
  ``& < > " '`` as entities, so ``<img onerror=...>`` is text;
- ``markdown_text``: Markdown (Gradescope's ``"md"``, a job summary): the same, then every ASCII
  punctuation character backslash-escaped (CommonMark), so no emphasis, link, raw HTML or table cell;
- ``csv_cell``: a CSV cell a spreadsheet opens: the same, then a cell (or a ``;``-separated part of
  one, a field in a semicolon locale) that starts with ``= + - @`` is prefixed with ``'``, so the
  spreadsheet reads text, not a formula (OWASP, CSV injection; a tab or carriage return is already
  an escape by then).
"""
import html
import re
import unicodedata

MAX = 500  # characters kept of one submitted string


def _escape(ch):
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def unsafe(ch):
    """Control characters, format characters (bidi, zero-width), separators other than the space, surrogates."""
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or (cat == "Zs" and ch != " ")


def one_line(text, limit=MAX):
    """``text`` on one line, with every unsafe character escaped, cut to about ``limit`` characters
    (``None``: not cut)."""
    text = str(text)
    if (limit is None or len(text) <= limit) and text.isprintable():  # isprintable() is False for every unsafe one
        return text
    out, n = [], 0
    for ch in text:
        piece = _escape(ch) if unsafe(ch) else ch
        if limit is not None and n + len(piece) > limit:
            out.append(" [...]")
            break
        out.append(piece)
        n += len(piece)
    return "".join(out)


def clean(value, limit=MAX):
    """Every string inside ``value`` (nested lists, tuples and dict keys included) through ``one_line``."""
    if isinstance(value, str):
        return one_line(value, limit)
    if isinstance(value, dict):
        return {clean(k, limit): clean(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, limit) for v in value]
    return value


# -- one function per output format (the length was capped where the text came in: not cut again) -----

def plain_text(text):
    """For a terminal, a log, notebook feedback, Gradescope's "text" output: one line, unsafe characters escaped."""
    return one_line(text, None)


def html_text(text):
    """For HTML (the report, Gradescope's "html" output): one line, unsafe characters escaped, markup as entities."""
    return html.escape(one_line(text, None), quote=True)


_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character: CommonMark escapes each


def markdown_text(text):
    """For Markdown (Gradescope's "md" output, a job summary): one line, unsafe characters escaped, every
    ASCII punctuation character backslash-escaped, so the text is shown as written and never parsed."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text, None))


FORMULA = "=+-@\uff1d\uff0b\uff0d\uff20"  # and their full-width forms, which some spreadsheets read the same
_FORMULA_PART = re.compile(r"(^|;)(\s*)(?=[" + re.escape(FORMULA) + "])")


def csv_cell(text):
    """For a CSV cell: one line, unsafe characters escaped, and a ``'`` before a leading ``= + - @`` (of the
    cell, or of a part after a ``;``, where a semicolon locale splits it), so a spreadsheet shows text."""
    return _FORMULA_PART.sub(r"\1'\2", one_line(text, None))
