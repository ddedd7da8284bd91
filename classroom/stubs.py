"""Generate the exercise stubs from the solutions' marked regions.

Each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's
markers) becomes ``raise NotImplementedError("Class.method")`` at the same
indentation; everything else (docstrings, signatures, given code) is copied.

    python -m classroom.stubs            # write exercises/
    python -m classroom.stubs --check    # exit 1 if exercises/ differs from what would be written
"""
import argparse
import ast
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
FILES = ["residual.py", "rmsnorm.py", "attention.py", "block.py", "decoder.py"]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def _enclosing_names(source):
    """Map each line number to the qualified name of the innermost function around it."""
    names = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                q = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, child.end_lineno + 1):
                        names[line] = q
                visit(child, q + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def make_stub(source, filename="<solution>"):
    """The stub text for one solution file."""
    names = _enclosing_names(source)
    out, inside = [], False
    for no, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{filename}:{no}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if no not in names:
                raise ValueError(f"{filename}:{no}: {BEGIN} outside a function")
            out.append(f'{indent}raise NotImplementedError("{names[no]}")\n')
        elif stripped == END:
            if not inside:
                raise ValueError(f"{filename}:{no}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{filename}: {BEGIN} without {END}")
    return "".join(out)


def generate(solutions=KIT / "solutions"):
    """``{file name: stub text}`` for the five exercise files."""
    return {f: make_stub((Path(solutions) / f).read_text(), f) for f in FILES}


HEADER = "# Generated from solutions/{name} by `make stubs`: edit the solution, not this file's skeleton.\n"


def render(solutions=KIT / "solutions"):
    return {f: HEADER.format(name=f) + text for f, text in generate(solutions).items()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classroom.stubs", description="Write exercises/ from solutions/.")
    p.add_argument("--check", action="store_true", help="only report whether exercises/ is up to date")
    p.add_argument("--out", default=str(KIT / "exercises"), help="where to write (default: %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    stale = [f for f, text in render().items() if not (out / f).is_file() or (out / f).read_text() != text]
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run `make stubs`)", file=sys.stderr)
            return 1
        print("exercises/ matches the solutions")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for f, text in render().items():
        (out / f).write_text(text)
    print(f"wrote {len(FILES)} stubs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
