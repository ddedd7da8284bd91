"""The one parser of the solutions' marked regions and of the notebooks' ``%%module`` cells.

``solutions/*.py`` mark what students write between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(nbgrader's markers). Everything generated from them reads the regions here: the stubs
(``classroom.stubs``), the release's leak scan (``classroom.release``), the nbgrader notebooks
(``classroom.nbgrader``). The notebooks store a file as code cells headed
``%%module rmsnorm.py (part 2 of 3)``; ``classroom.notebook`` reads them back with the same
functions.
"""
import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kit.syllabus import MODULES

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HEADER = re.compile(r"^%%module\s+(\w+)\.py\s+\(part\s+(\d+)\s+of\s+(\d+)\)\s*$")


class RegionError(ValueError):
    """Markers that do not pair up, or a region outside a function."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    text: str  # with its newline
    inside: bool  # inside a solution region (the markers themselves are not)
    marker: str = None  # "begin" or "end" on a marker line


def lines(source, filename="<solution>"):
    """Every line of ``source`` with whether it is inside a region; RegionError when the markers do not pair."""
    out, inside = [], False
    for no, text in enumerate(source.splitlines(keepends=True), start=1):
        s = text.strip()
        if s == BEGIN:
            if inside:
                raise RegionError(f"{filename}:{no}: nested {BEGIN}")
            inside = True
            out.append(Line(no, text, False, "begin"))
        elif s == END:
            if not inside:
                raise RegionError(f"{filename}:{no}: {END} without {BEGIN}")
            inside = False
            out.append(Line(no, text, False, "end"))
        else:
            out.append(Line(no, text, inside))
    if inside:
        raise RegionError(f"{filename}: {BEGIN} without {END}")
    return out


def has_region(source, filename="<solution>"):
    return any(line.marker == "begin" for line in lines(source, filename))


def enclosing_functions(source):
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


def stub(source, filename="<solution>"):
    """``source`` with each region replaced by ``raise NotImplementedError("Class.method")``."""
    names = enclosing_functions(source)
    out = []
    for line in lines(source, filename):
        if line.marker == "begin":
            if line.number not in names:
                raise RegionError(f"{filename}:{line.number}: {BEGIN} outside a function")
            indent = line.text[: len(line.text) - len(line.text.lstrip())]
            out.append(f'{indent}raise NotImplementedError("{names[line.number]}")\n')
        elif line.marker is None and not line.inside:
            out.append(line.text)
    return "".join(out)


# --- notebook cells ------------------------------------------------------------------------------

def header(module, part, total):
    """The first line of a notebook cell holding part ``part`` of ``module``.py."""
    return f"%%module {module}.py (part {part} of {total})"


def parse_header(line):
    """``(module, part, total)`` from a ``%%module`` line (with or without the ``%%module``)."""
    m = HEADER.match(line if line.startswith("%%") else "%%module " + line.strip())
    if not m or m.group(1) not in MODULES or not 1 <= int(m.group(2)) <= int(m.group(3)):
        raise ValueError(f"not a part header: {line!r} (expected e.g. `{header('rmsnorm', 1, 2)}`)")
    return m.group(1), int(m.group(2)), int(m.group(3))


def join_parts(parts):
    """A module's file text from its parts, in order."""
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def cell_source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def notebook_parts(nb):
    """``({module: {part: source}}, {module: total})`` from the ``%%module`` cells of a notebook (path or dict)."""
    if not isinstance(nb, dict):
        nb = json.loads(Path(nb).read_text(encoding="utf-8"))
    parts, totals = {}, {}
    for cell in nb.get("cells", []):
        src = cell_source(cell)
        if cell.get("cell_type") != "code" or not src.startswith("%%module"):
            continue
        first, _, body = src.partition("\n")
        try:
            module, part, total = parse_header(first)
        except ValueError:
            continue
        parts.setdefault(module, {})[part] = body
        totals[module] = total
    return parts, totals
