"""Text that came from submitted code, made safe to print and write.

Anything a submission controls (an exception's message, a printed line, a parameter's
name, a class name) may hold terminal escapes, bidi overrides that reorder a line
(U+202E), line and paragraph separators (U+2028, U+2029) or plain newlines that would let
it write a fake line into a report. ``one_line`` turns every such character into a
visible escape (``\\n``, ``\\u202e``) and caps the length; the grader applies it to every
string it reads from the worker, so reports never carry raw submitted text.
"""
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
    """``text`` on one line, with every unsafe character escaped, cut to about ``limit`` characters."""
    text = str(text)
    if len(text) <= limit and text.isprintable():  # the common case: isprintable() is False for every unsafe one
        return text
    out, n = [], 0
    for ch in text:
        piece = _escape(ch) if unsafe(ch) else ch
        if n + len(piece) > limit:
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
