"""Generate the exercise stubs from the solutions' marked regions.

Each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (classroom/regions.py) becomes
``raise NotImplementedError("Class.method")`` at the same indentation; everything else (docstrings,
signatures, given code) is copied.

In another language (``--lang zh``) the stubs speak it: the English solutions stay the one source, and
``solutions/<lang>/<file>`` holds only that file's student-facing text in the language, at the same
qualified names: its docstrings (module, classes, functions) and, in each function, the block of comments
the stub keeps above its ``raise NotImplementedError`` (the first block of whole-line comments outside the
solution regions). A translation file mirrors its solution's classes and functions, each body holding just
that text and ``...``; ``translate`` swaps each English text for its translation before the regions are
replaced, so the code of a stub is the same in every language (tests/test_i18n.py).

    python -m classroom.stubs            # write exercises/
    python -m classroom.stubs --check    # exit 1 if exercises/ differs from what would be written
    python -m classroom.stubs --lang zh --out DIR   # the stubs in Chinese
"""
import ast
import sys
from pathlib import Path

from kit.cli import ArgumentParser
from kit.syllabus import FILES

from .regions import RegionError, enclosing_functions, lines, stub

KIT = Path(__file__).resolve().parent.parent
HEADER = "# Generated from solutions/{name} by `make stubs`: edit the solution, not this file's skeleton.\n"
LANGUAGES = ("zh",)  # the languages a stub can be written in besides English: solutions/<lang>/ holds its text


class TranslationError(RegionError):
    """A translation file that does not hold exactly the student-facing texts of its solution."""


def code_only(source):
    """Python source without its comments and docstrings (``ast.dump``), to compare code across languages."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def texts(source, filename="<solution>"):
    """Where a file's student-facing text is: ``{(qualified name, "doc" | "comment"): (first line, last line)}``.

    ``"doc"``: the docstring of the module (name ``""``), of a class or of a function. ``"comment"``: in a
    function, the first block of whole-line comments of its own body outside the solution regions.
    """
    tree = ast.parse(source, filename)
    marked = {line.number: line for line in lines(source, filename)}
    owner = enclosing_functions(source)
    found = {}

    def doc(node, name):
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            found[(name, "doc")] = (first.lineno, first.end_lineno)
            return first.end_lineno
        return None

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, prefix)
                continue
            name = prefix + child.name
            doc_end = doc(child, name)
            if not isinstance(child, ast.ClassDef):
                block = []
                for no in range((doc_end or child.lineno) + 1, child.end_lineno + 1):
                    line = marked[no]
                    comment = owner.get(no) == name and line.marker is None and not line.inside \
                        and line.text.lstrip().startswith("#")
                    if comment:
                        block.append(no)
                    elif block:
                        break
                if block:
                    found[(name, "comment")] = (block[0], block[-1])
            visit(child, name + ".")

    doc(tree, "")
    visit(tree, "")
    return found


def translate(source, translation, filename="<solution>"):
    """``source`` with each student-facing text (``texts``) replaced by the one at the same place in
    ``translation``; TranslationError when the two do not hold the same texts at the same indentation."""
    ours, theirs = texts(source, filename), texts(translation, f"translation of {filename}")
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        def say(keys):
            return ", ".join(f"{kind} of {name or 'the module'}" for name, kind in keys)
        raise TranslationError(f"{filename}: the translation " + "; ".join(
            p for p in (missing and f"lacks the {say(missing)}", extra and f"has no English for the {say(extra)}")
            if p))
    out, given = source.splitlines(keepends=True), translation.splitlines(keepends=True)
    for key, (first, last) in sorted(ours.items(), key=lambda kv: kv[1][0], reverse=True):
        a, b = theirs[key]
        indent = out[first - 1][: len(out[first - 1]) - len(out[first - 1].lstrip())]
        if not given[a - 1].startswith(indent) or given[a - 1][len(indent):][:1].isspace():
            raise TranslationError(f"{filename}: the {key[1]} of {key[0] or 'the module'} in the translation is "
                                   "not indented as in the solution")
        out[first - 1:last] = given[a - 1:b]
    return "".join(out)


def generate(solutions=KIT / "solutions", lang=None):
    """``{file name: stub text}`` for the exercise files; in ``lang`` (``"zh"``), their text from
    ``solutions/<lang>/`` (None or ``"en"``: English)."""
    out = {}
    for f in FILES:
        source = (Path(solutions) / f).read_text()
        if lang not in (None, "en"):
            source = translate(source, (Path(solutions) / lang / f).read_text(encoding="utf-8"), f)
        out[f] = stub(source, f)
    return out


def render(solutions=KIT / "solutions", lang=None):
    return {f: HEADER.format(name=f) + text for f, text in generate(solutions, lang).items()}


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.stubs", description="Write exercises/ from solutions/.")
    p.add_argument("--check", action="store_true", help="only report whether exercises/ is up to date")
    p.add_argument("--out", default=str(KIT / "exercises"), help="where to write (default: %(default)s)")
    p.add_argument("--lang", choices=["en", *LANGUAGES], default="en",
                   help="the language of the stubs' docstrings and comments (default: %(default)s; solutions/<lang>/)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.lang != "en" and out.resolve() == (KIT / "exercises").resolve():
        print("error: exercises/ stays in English (the kit's own checks read it); give --out DIR", file=sys.stderr)
        return 2
    try:
        stubs = render(lang=args.lang)
    except RegionError as e:  # markers that do not pair up in solutions/, or a translation that does not fit
        print(f"error: {e}", file=sys.stderr)
        return 1
    stale = [f for f, text in stubs.items() if not (out / f).is_file() or (out / f).read_text() != text]
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run `make stubs`)", file=sys.stderr)
            return 1
        print("exercises/ matches the solutions")
        return 0
    from kit.files import write_text
    try:
        for f, text in stubs.items():
            write_text(out / f, text)
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {len(FILES)} stubs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
