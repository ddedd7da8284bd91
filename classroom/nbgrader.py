"""Build the nbgrader course folder from the solutions, the checks and the course text.

    python -m classroom.nbgrader               # write dist/nbgrader/
    python -m classroom.nbgrader --out DIR     # write the course folder elsewhere
    python -m classroom.nbgrader --check       # exit 1 if dist/nbgrader/ differs from what would be written

The course folder holds ``nbgrader_config.py`` and ``source/tier2/``: one
notebook per module (residual, rmsnorm, attention, block, decoder) and the
final project. A module's notebook is made of

* its English course text (``classroom/notebook_text/<module>.md``) and the
  module docstring of ``solutions/<module>.py``, as read-only markdown;
* the solution file itself, cut at its top-level definitions into code cells
  that start with ``%%module <module>.py (part k of n)`` (classroom/regions.py, classroom/notebook):
  a part holding a ``### BEGIN SOLUTION`` region is a solution cell, the
  others are read-only;
* one autograder test cell per check of ``grader/checks/{properties,reference}/<module>.py``,
  worth that check's points, calling the check by its id (``nb.check("rmsnorm.eps")``). Every
  check shows at the student's desk: there the checks that compare with the reference use the
  snapshot the student release ships (published inputs); at ``nbgrader autograde`` the kit's
  preprocessors (``classroom/nbgrader_autograde.py``, installed by the generated ``nbgrader_config.py``)
  grade the notebook's code outside the student's kernel, on the course's grading seed against the
  live reference, and write those scores into the gradebook;
* the self-check questions (``classroom/notebook_text/questions.yaml``) as
  manually graded written answers.

Nothing here is edited by hand: change the solutions, the checks or the text,
then run ``make nbgrader``.
"""
import ast
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from classroom.notebook import CHECKPOINT
from classroom.notebook import MAX_MINUTES as TRAIN_MAX_MINUTES
from classroom.notebook.grading import CELL_MARGIN, FINAL_GRADING_TIMEOUT, GRADING_TIMEOUT
from classroom.regions import RegionError, has_region, header, join_parts, notebook_parts
from kit.cli import ArgumentParser
from kit.syllabus import ASSIGNMENT, MODULES, POINTS, unit

KIT = Path(__file__).resolve().parent.parent
SOLUTIONS = KIT / "solutions"
CHECKS = KIT / "grader" / "checks"
TEXT = KIT / "classroom" / "notebook_text"
COURSE_ID = f"transformer-{ASSIGNMENT}"
# seconds per cell: a test cell's grading run gets its limit (classroom/notebook/grading.py) and its margin
CELL_TIMEOUT = int(GRADING_TIMEOUT) + CELL_MARGIN
TRAIN_TIMEOUT = (TRAIN_MAX_MINUTES + 20) * 60  # the training cell: the budget, the start-up, the last evaluation
FINAL_CHECK_TIMEOUT = int(FINAL_GRADING_TIMEOUT) + CELL_MARGIN
MAX_TIMEOUT = 3 * 3600  # what a cell's metadata may ask for at most


class BuildError(Exception):
    """The sources do not make a valid course (a missing text section, a check without points, ...)."""


# ---------------------------------------------------------------------------
# Reading the sources
# ---------------------------------------------------------------------------

@dataclass
class Check:
    id: str  # rmsnorm.eps: what nb.check() takes, the grader's Result.check
    name: str
    points: float
    reference: bool
    title: str


def checks_of(module):
    """The checks of ``module`` in grading order (properties first), read from the check files."""
    out = []
    for folder in ("properties", "reference"):
        path = CHECKS / folder / f"{module}.py"
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("check_")):
                continue
            marks = [d for d in node.decorator_list
                     if isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", None)) == "check"]
            if len(marks) != 1 or not marks[0].args:
                raise BuildError(f"{path.relative_to(KIT)}::{node.name} has no @check(points) marker")
            points = ast.literal_eval(marks[0].args[0])
            doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0]
            name = node.name.removeprefix("check_")
            out.append(Check(f"{module}.{name}", name, points, folder == "reference", doc))
    return out


def split_solution(source, filename):
    """``(module docstring, [(name, code)])``: the file cut before each top-level definition.

    The first part holds the imports (named ``imports``); each def or class is
    one part, with the comments right above it. Joining the parts with
    ``join_parts`` gives the file without its docstring.
    """
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    lines = source.splitlines(keepends=True)
    body = tree.body[1:] if doc else tree.body
    if not body:
        raise BuildError(f"{filename}: nothing after the docstring")
    starts, names = [], []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            while first > 1 and lines[first - 2].lstrip().startswith("#"):  # comments above belong to it
                first -= 1
            starts.append(first)
            names.append(node.name)
    code_start = body[0].lineno
    if not starts or starts[0] == code_start:
        raise BuildError(f"{filename}: expected imports before the first definition")
    bounds = [code_start] + starts + [len(lines) + 1]
    parts = []
    for name, a, b in zip(["imports"] + names, bounds, bounds[1:]):
        text = "".join(lines[a - 1:b - 1]).strip("\n")
        parts.append((name, text))
    return doc, parts


def read_sections(module):
    """``{section: markdown}`` from classroom/notebook_text/<module>.md (sections start with ``<!-- name -->``)."""
    path = TEXT / f"{module}.md"
    if not path.is_file():
        raise BuildError(f"{path.relative_to(KIT)} is missing")
    sections, name = {}, None
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        m = re.match(r"^<!--\s*([\w: .-]+?)\s*-->\s*$", line)
        if m:
            name = m.group(1)
            if name in sections:
                raise BuildError(f"{path.relative_to(KIT)}: section {name!r} twice")
            sections[name] = ""
        elif name is None:
            if line.strip():
                raise BuildError(f"{path.relative_to(KIT)}: text before the first <!-- section --> line")
        else:
            sections[name] += line
    return {k: v.strip("\n") + "\n" for k, v in sections.items()}


def read_questions():
    data = yaml.safe_load((TEXT / "questions.yaml").read_text(encoding="utf-8"))
    for module, qs in data.items():
        try:
            unit(module)
        except KeyError:
            raise BuildError(f"questions.yaml: unknown notebook {module!r}") from None
        for q in qs:
            missing = {"id", "points", "question", "answer"} - set(q)
            if missing:
                raise BuildError(f"questions.yaml: {module}/{q.get('id')} lacks {', '.join(sorted(missing))}")
    return data


def docstring_markdown(doc):
    """A module docstring as markdown: ``literals`` become `code`, indented blocks become code blocks."""
    out, block = [], []

    def flush():
        if block:
            while block and not block[-1].strip():
                block.pop()
            out.extend(["```text"] + [b[4:] for b in block] + ["```", ""])
            block.clear()

    for line in doc.splitlines():
        if line.startswith("    ") and (block or not out or not out[-1].strip()):
            block.append(line)
            continue
        if block and not line.strip():
            block.append(line)
            continue
        flush()
        out.append(re.sub(r"``(.+?)``", r"`\1`", line))
    flush()
    return "\n".join(out).strip("\n") + "\n"


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------

class Cells:
    """Collects a notebook's cells with valid nbgrader (schema 3) metadata and unique ids."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.cells = []
        self.ids = set()

    def _id(self, name):
        gid = f"{self.prefix}-{name}"
        gid = re.sub(r"[^A-Za-z0-9_-]", "-", gid)
        if gid in self.ids:
            raise BuildError(f"duplicate cell id {gid}")
        self.ids.add(gid)
        return gid

    def _add(self, kind, source, name, nbgrader=None, extra=None):
        gid = self._id(name)
        meta = dict(extra or {})
        if nbgrader is not None:
            meta["nbgrader"] = {"schema_version": 3, "grade_id": gid, **nbgrader}
        cell = {"cell_type": kind, "id": gid, "metadata": meta, "source": source.rstrip("\n")}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        self.cells.append(cell)
        return cell

    def text(self, source, name):
        """Read-only markdown."""
        return self._add("markdown", source, name, {"grade": False, "solution": False, "locked": True})

    def code(self, source, name, locked=True, extra=None):
        """A read-only code cell (given code), or a plain one (``locked=False``: ungraded scratch space)."""
        nbg = {"grade": False, "solution": False, "locked": True} if locked else None
        return self._add("code", source, name, nbg, extra)

    def solution(self, source, name):
        """Code the student writes: nbgrader replaces its solution regions with ``raise NotImplementedError()``."""
        return self._add("code", source, name, {"grade": False, "solution": True, "locked": False})

    def test(self, source, name, points, extra=None):
        """An autograder test cell worth ``points``."""
        return self._add("code", source, name, {"grade": True, "solution": False, "locked": True, "points": points},
                         extra)

    def answer(self, source, name, points):
        """A manually graded written answer (markdown); ``source`` is the model answer nbgrader removes."""
        return self._add("markdown", source, name, {"grade": True, "solution": True, "locked": False,
                                                    "points": points})


def notebook(cells):
    return {"cells": cells, "metadata": {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def setup_cell(module):
    return f'''# Setup (read-only): find the kit, then load the helpers that save your code and run the grader's checks.
import os
import sys
from pathlib import Path

KIT = next((p for p in (Path(os.environ.get("TRANSFORMER_KIT", ".")).resolve(), *Path.cwd().resolve().parents)
            if (p / "classroom" / "notebook" / "__init__.py").is_file()), None)
if KIT is None:
    raise RuntimeError("cannot find the transformer kit: set TRANSFORMER_KIT to the folder that holds classroom/")
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))
from classroom.notebook import Notebook

nb = Notebook({module!r})'''


def plural(n, word):
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def test_source(check, checkpoint=False):
    arg = ", checkpoint=CHECKPOINT" if checkpoint else ""
    what = "compared with the reference" if check.reference else "a property"
    return f"# Check ({plural(check.points, 'point')}, {what}): {check.title}\nnb.check({check.id!r}{arg})"


def add_questions(cells, module, questions):
    qs = questions.get(module, [])
    if not qs:
        return
    total = sum(q["points"] for q in qs)
    cells.text(f"## Self-check questions ({plural(total, 'point')}, graded by hand)\n\n"
               "Answer each question in the cell below it, in a few sentences of your own.", "questions")
    for i, q in enumerate(qs, start=1):
        cells.text(f"**Question {i}** ({plural(q['points'], 'point')}). {q['question'].strip()}",
                   f"question-{q['id']}")
        cells.answer(q["answer"].strip(), f"answer-{q['id']}", q["points"])


def module_notebook(module, questions):
    path = SOLUTIONS / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    doc, parts = split_solution(source, path.name)
    text = read_sections(module)
    common = read_sections("common")
    used = set()

    def section(name, required=False):
        if name in text:
            used.add(name)
            return text[name] if text[name].strip() else None
        if name in common:
            return common[name].replace("{file}", f"{module}.py").replace("{module}", module)
        if required:
            raise BuildError(f"classroom/notebook_text/{module}.md has no <!-- {name} --> section")
        return None

    cells = Cells(module)
    cells.text(section("intro", required=True), "intro")
    if doc:
        cells.text("## The idea, in formulas\n\n" + docstring_markdown(doc), "docstring")
    cells.code(setup_cell(module), "setup")
    cells.text(section("code", required=True), "code-intro")
    total = len(parts)
    for k, (name, code) in enumerate(parts, start=1):
        note = section(f"part: {name}")
        if note:
            cells.text(note, f"note-{name}")
        cell_src = header(module, k, total) + "\n" + code
        if has_region(code, f"{path.name}: {name}"):
            cells.solution(cell_src, f"code-{name}")
        else:
            cells.code(cell_src, f"code-{name}")
    cells.text(section("try", required=True), "try-intro")
    cells.code(section("try code", required=True), "try", locked=False)
    checks = checks_of(module)
    got = sum(c.points for c in checks)
    if got != POINTS[module]:
        raise BuildError(f"the checks of {module} add up to {got:g} points, the grader gives {POINTS[module]}")
    cells.text(section("checks", required=True), "checks-intro")
    for c in checks:
        cells.test(test_source(c), f"check-{c.name}", c.points)
    add_questions(cells, module, questions)
    unused = set(text) - used
    if unused:
        raise BuildError(f"classroom/notebook_text/{module}.md: sections not used: {', '.join(sorted(unused))}")
    return notebook(cells.cells)


LONG_CHECK = {"transformer_kit": {"timeout": FINAL_CHECK_TIMEOUT}}


def final_notebook(questions):
    text = read_sections("final")
    for name in ("intro", "collect", "train", "check"):
        if name not in text:
            raise BuildError(f"classroom/notebook_text/final.md has no <!-- {name} --> section")
    extra = set(text) - {"intro", "collect", "train", "check"}
    if extra:
        raise BuildError(f"classroom/notebook_text/final.md: sections not used: {', '.join(sorted(extra))}")
    cells = Cells("final")
    cells.text(text["intro"], "intro")
    cells.code(setup_cell("final") + f"\nCHECKPOINT = {CHECKPOINT!r}", "setup")
    cells.text(text["collect"], "collect-intro")
    cells.code("# Read-only: write the five files from the other notebooks (the kit's stubs where one is missing)\n"
               "nb.collect()", "collect")
    cells.text(text["train"], "train-intro")
    cells.code(f"# Train (not graded, but the final check needs the checkpoint it writes). It stops by\n"
               f"# itself under 2.5: about half an hour on 2 CPU cores (BENCHMARKS.md has the measured runs). At most\n"
               f"# {TRAIN_MAX_MINUTES} minutes per run. Interrupt the kernel to stop: the checkpoint is saved, and\n"
               f"# RESUME = True continues from it. While nbgrader grades this notebook it does not train.\n"
               f"MINUTES = {TRAIN_MAX_MINUTES}\nRESUME = False\n"
               "nb.train(minutes=MINUTES, resume=RESUME, checkpoint=CHECKPOINT)",
               "train", locked=False, extra={"transformer_kit": {"timeout": TRAIN_TIMEOUT}})
    cells.text(text["check"], "check-intro")
    checks = checks_of("final")
    got = sum(c.points for c in checks)
    if got != POINTS["final"]:
        raise BuildError(f"the final checks add up to {got:g} points, the grader gives {POINTS['final']}")
    for c in checks:
        cells.test(test_source(c, checkpoint=True), f"check-{c.name}", c.points, extra=LONG_CHECK)
    add_questions(cells, "final", questions)
    return notebook(cells.cells)


CONFIG = f'''"""nbgrader configuration of the transformer kit's Tier 2 course.

Generated by `make nbgrader` (python -m classroom.nbgrader): change the generator, not this file.
Run nbgrader from this folder; the notebooks find the kit above it, or at $TRANSFORMER_KIT.
"""
c = get_config()  # noqa: F821 (nbgrader defines it)

c.CourseDirectory.course_id = {COURSE_ID!r}

# Cell time limits. Every cell gets {CELL_TIMEOUT} s (grading one module takes well under a minute);
# a cell whose metadata asks for more with {{"transformer_kit": {{"timeout": seconds}}}} gets it, up
# to {MAX_TIMEOUT} s: the final project's training cell asks for {TRAIN_TIMEOUT} s ({TRAIN_MAX_MINUTES} minutes of training
# at most, plus start-up and the last evaluation), its final check {FINAL_CHECK_TIMEOUT} s (it measures 200,000
# characters with the trained model).
CELL_TIMEOUT = {CELL_TIMEOUT}
MAX_TIMEOUT = {MAX_TIMEOUT}


def cell_timeout(cell):
    asked = cell.get("metadata", {{}}).get("transformer_kit", {{}}).get("timeout")
    if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0:
        return int(min(asked, MAX_TIMEOUT))
    return CELL_TIMEOUT


c.Execute.timeout = CELL_TIMEOUT
c.Execute.timeout_func = cell_timeout
c.Execute.interrupt_on_timeout = True  # a timed-out cell is interrupted (training saves), the next cells run


# Autograding does not trust the student's kernel (classroom/nbgrader_autograde.py, docs/nbgrader.md): the
# kernel runs in a sandbox (bubblewrap) with no seed and no reference in reach, and the points of every test
# cell come from the kit's grader run outside it on the notebook's code (python -m grader --untrusted, with
# $GRADER_SEED or c.KitExecute.seed), written into the gradebook by SaveKitGrades. generate_feedback leaves
# the trained checkpoints ({CHECKPOINT}) out and writes the timestamp.txt and submission_secret.txt that
# release_feedback reads where a submission was placed by hand.
def _find_kit():
    import importlib.util
    import os
    import sys
    from pathlib import Path
    if importlib.util.find_spec("classroom") is not None:  # the kit is importable already
        return
    here = Path(__file__).resolve().parent
    for p in (os.environ.get("TRANSFORMER_KIT"), here, *here.parents):
        if p and (Path(p) / "classroom" / "nbgrader_autograde.py").is_file():
            if str(Path(p).resolve()) not in sys.path:
                sys.path.insert(0, str(Path(p).resolve()))
            return
    raise RuntimeError("cannot find the transformer kit: set TRANSFORMER_KIT to the folder that holds classroom/")


_find_kit()
from classroom.nbgrader_autograde import configure  # noqa: E402

configure(c)
'''


def dumps(nb):
    """Notebook JSON as nbformat writes it (sorted keys, one-space indent, source as a list of lines)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        cell["source"] = cell["source"].splitlines(keepends=True)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def build():
    """``{relative path: text}`` of the course folder."""
    questions = read_questions()
    files = {"nbgrader_config.py": CONFIG}
    for module in MODULES:
        files[f"source/{ASSIGNMENT}/{unit(module).notebook}.ipynb"] = dumps(module_notebook(module, questions))
    files[f"source/{ASSIGNMENT}/{unit('final').notebook}.ipynb"] = dumps(final_notebook(questions))
    return files


def code_of(nb_json, module):
    """The file text a source notebook's ``%%module`` cells make (for checking it against the solution)."""
    parts, _ = notebook_parts(json.loads(nb_json))
    return join_parts(parts[module][k] for k in sorted(parts[module]))


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.nbgrader", description="Build the nbgrader course folder.")
    p.add_argument("--out", default=str(KIT / "dist" / "nbgrader"), help="course folder (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="only report whether the course folder is up to date")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        files = build()
    except (BuildError, RegionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stale = [f for f, text in files.items() if not (out / f).is_file() or (out / f).read_text(encoding="utf-8") != text]
    # source/tier2/ is generated as a whole: a notebook the build no longer makes is stale too
    extra = sorted(str(p.relative_to(out)) for p in (out / "source" / ASSIGNMENT).glob("*.ipynb")
                   if str(p.relative_to(out)) not in files)
    if args.check:
        if stale or extra:
            print(f"out of date: {', '.join(stale + extra)} (run `make nbgrader`)", file=sys.stderr)
            return 1
        print(f"{out} matches the sources")
        return 0
    # every file is written beside the course folder first, then renamed into place: a full or read-only
    # disk leaves the course folder as it was, and no half-built one
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        for f, text in files.items():
            (staging / f).parent.mkdir(parents=True, exist_ok=True)
            (staging / f).write_text(text, encoding="utf-8")
        for f in files:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f, out / f)
        for f in extra:
            (out / f).unlink()
    except OSError as e:
        print(f"error: cannot write {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(files)} files to {out}: nbgrader_config.py and source/{ASSIGNMENT}/ "
          f"({', '.join(unit(m).notebook for m in [*MODULES, 'final'])})")
    print(f"next: cd {out} && nbgrader generate_assignment {ASSIGNMENT}  (see docs/nbgrader.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
