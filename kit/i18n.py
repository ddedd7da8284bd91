"""The language a student reads: English by default, Simplified Chinese (zh-CN) on request.

The kit's fixed text is English in the code, marked with gettext's ``_()`` where it is worded (the edges:
``grader/report.py``, ``kit/cli.py``); its translations are gettext catalogs, the Python ecosystem's
standard: ``locale/zh_CN/LC_MESSAGES/kit.po`` (the source, written by hand) compiled to ``kit.mo`` by
Babel (``make locale``; the .mo is committed, so running the kit needs only the standard library's
``gettext``). A message with parts names them, ``_("{unit} ({got}/{total})").format(...)``, so a
translation can put them where its grammar wants them; ``tests/test_i18n.py`` checks that every
message of the catalog has both languages with the same placeholders.

Which language, the first that says (``choose``):

1. ``--lang en|zh`` of a command (``use``);
2. ``$KIT_LANG`` (``make check LANG=zh`` sets it: the Makefile maps its ``LANG=zh`` to ``KIT_LANG``);
3. ``locale/default``: the language a release was built in (``make release LANG=zh`` writes it);
4. the locale: the first of ``$LC_ALL``, ``$LC_MESSAGES``, ``$LANG`` that is set (POSIX's order), Chinese
   when it is ``zh...`` (``zh_CN.UTF-8``), English for anything else (``C.UTF-8``, ``en_US.UTF-8``);
5. English.
"""
import gettext
import os
import unicodedata
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
LOCALE = KIT / "locale"
DOMAIN = "kit"
LANGUAGES = {"en": "English", "zh": "简体中文"}  # code -> name; the catalog of "zh" is locale/zh_CN
CATALOG = {"zh": "zh_CN"}
DEFAULT = "en"

_chosen = None  # set by use(): the --lang of the command that runs
_translations = {}


def normalise(value):
    """``"zh"``, ``"zh_CN.UTF-8"``, ``"zh-Hans"`` -> ``"zh"``; ``"en_US"``, ``"C.UTF-8"``, ``"C"`` -> ``"en"``;
    ``None`` for an empty value or a language the kit does not speak."""
    if not value:
        return None
    code = value.strip().split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    if code in ("c", "posix"):
        return "en"
    return code if code in LANGUAGES else None


def release_default(locale_dir=LOCALE):
    """The language ``locale/default`` names (a release built with ``--lang``), else None."""
    try:
        return normalise((Path(locale_dir) / "default").read_text(encoding="utf-8"))
    except OSError:
        return None


def choose(lang=None, environ=None, locale_dir=LOCALE):
    """The language code to use: ``lang`` (a command's ``--lang``), then ``$KIT_LANG``, then the release's
    default, then the locale variables, then English."""
    environ = os.environ if environ is None else environ
    for value in (lang, environ.get("KIT_LANG")):
        if normalise(value):
            return normalise(value)
    built = release_default(locale_dir)
    if built:
        return built
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if environ.get(var):  # the first one set decides, as for every POSIX program
            return normalise(environ[var]) or DEFAULT
    return DEFAULT


def use(lang):
    """Speak ``lang`` (``"en"``, ``"zh"``, or None to go back to the environment's choice) from now on."""
    global _chosen
    if lang is not None and normalise(lang) is None:
        raise ValueError(f"unknown language {lang!r}: one of {', '.join(LANGUAGES)}")
    _chosen = normalise(lang)


def language():
    """The language in force."""
    return choose(_chosen)


def translation(lang=None):
    """The gettext translations of ``lang`` (default: the language in force); English is the identity."""
    lang = normalise(lang) or language()
    if lang not in _translations:
        if lang == DEFAULT:
            _translations[lang] = gettext.NullTranslations()
        else:
            _translations[lang] = gettext.translation(DOMAIN, localedir=str(LOCALE), languages=[CATALOG[lang]],
                                                      fallback=True)
    return _translations[lang]


def _(message):
    """``message`` in the language in force (the English text when the catalog has no translation)."""
    return translation().gettext(message)


def ngettext(singular, plural, n):
    return translation().ngettext(singular, plural, n)


def N_(message):
    """Marks a message for the catalog where it is defined (a constant); ``_()`` translates it where it is shown."""
    return message


def width(text):
    """Columns a terminal gives ``text``: 2 for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def ljust(text, columns):
    """``text`` padded with spaces to ``columns`` terminal columns."""
    return text + " " * max(columns - width(text), 0)


def extract(fileobj, keywords, comment_tags, options):
    """Babel's extraction method for the kit's Python files (``locale/babel.cfg``, ``make locale``): the messages
    Babel's own Python extractor finds (``_()``, ``N_()``, ``T()``, ...), and each check's title, the first line
    of the docstring of every function decorated with ``@check(...)`` (``grader/harness.py``), which the report
    words through ``_()``."""
    import ast

    from babel.messages.extract import extract_python
    yield from extract_python(fileobj, keywords, comment_tags, options)
    fileobj.seek(0)
    for node in ast.walk(ast.parse(fileobj.read())):
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "check" for d in node.decorator_list):
            doc = ast.get_docstring(node)
            if doc:
                yield node.lineno, None, doc.splitlines()[0].strip(), []
