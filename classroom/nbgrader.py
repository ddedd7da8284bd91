"""Build the nbgrader course folder from the solutions, the checks and the course text.

    python -m classroom.nbgrader               # write dist/nbgrader/
    python -m classroom.nbgrader --out DIR     # write the course folder elsewhere
    python -m classroom.nbgrader --check       # exit 1 if dist/nbgrader/ differs from what would be written
    python -m classroom.nbgrader --lang zh     # the course in Simplified Chinese (make nbgrader LANG=zh)

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

In another language (``--lang zh``; else kit/i18n.py's choice: ``$KIT_LANG``, which ``make nbgrader LANG=zh``
sets, then the locale) the course speaks it (``LOCALES`` of classroom/release.py): its text comes from
``classroom/notebook_text/<ll-CC>/<module>.md`` (the English sections, by the same names), its questions and
answers from ``classroom/notebook_text/questions.<ll-CC>.yaml`` (the same ids and points), the docstrings and
stub comments of its code cells from ``solutions/<ll>/`` (``classroom.stubs.translate``, as for the release's
stubs), and this file's own words (headings, code comments) from the gettext catalog (``_()``); the build
refuses a translation that lacks a section or a question. The code and nbgrader's metadata (grade ids,
points) are the English build's. The assignment folder then holds ``locale/default`` (``COURSE_LANGUAGE``),
which the notebooks' runtime reads, as a release's: the kernel speaks the course's language unless
``$KIT_LANG`` says otherwise; and ``nbgrader_config.py`` sets ``$KIT_LANG`` (unless set) for nbgrader's own
run, so that the autograde's feedback speaks it too, and words what ``generate_assignment`` writes in place of a
solution ("YOUR CODE HERE") in the course's language.

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

from classroom.notebook import CHECKPOINT, COURSE_LANGUAGE
from classroom.notebook import MAX_MINUTES as TRAIN_MAX_MINUTES
from classroom.notebook.grading import CELL_MARGIN, FINAL_GRADING_TIMEOUT, GRADING_TIMEOUT
from classroom.regions import RegionError, has_region, header, join_parts, notebook_parts
from classroom.release import LOCALES
from classroom.stubs import code_only, translate
from kit import i18n
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


def shown(path):
    """A source's path as an error names it: relative to the kit."""
    try:
        return Path(path).relative_to(KIT)
    except ValueError:
        return path


def english(lang):
    return lang in (None, "en")


def words(lang):
    """The gettext of ``lang``: this file's own words in the course's language (English: the identity)."""
    return i18n.translation("en" if english(lang) else lang).gettext


def text_path(name, lang=None):
    """``classroom/notebook_text/<name>.md``, or its translation ``<ll-CC>/<name>.md``."""
    return TEXT / f"{name}.md" if english(lang) else TEXT / LOCALES[lang] / f"{name}.md"


def questions_path(lang=None):
    return TEXT / ("questions.yaml" if english(lang) else f"questions.{LOCALES[lang]}.yaml")


def read_sections(module, lang=None):
    """``{section: markdown}`` from classroom/notebook_text/<module>.md (sections start with ``<!-- name -->``);
    in ``lang``, from its translation, which must hold the English sections, no more, no fewer, and the same
    code in its ``try code`` section (its comments translated)."""
    path = text_path(module, lang)
    if not path.is_file():
        raise BuildError(f"{shown(path)} is missing")
    sections, name = {}, None
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        m = re.match(r"^<!--\s*([\w: .-]+?)\s*-->\s*$", line)
        if m:
            name = m.group(1)
            if name in sections:
                raise BuildError(f"{shown(path)}: section {name!r} twice")
            sections[name] = ""
        elif name is None:
            if line.strip():
                raise BuildError(f"{shown(path)}: text before the first <!-- section --> line")
        else:
            sections[name] += line
    sections = {k: v.strip("\n") + "\n" for k, v in sections.items()}
    if not english(lang):
        where = shown(path)
        ours = read_sections(module)
        missing, extra = [n for n in ours if n not in sections], [n for n in sections if n not in ours]
        if missing:
            raise BuildError(f"{where} lacks the section(s) {', '.join(missing)} of {text_path(module).name}")
        if extra:
            raise BuildError(f"{where}: section(s) {', '.join(extra)} not in {text_path(module).name}")
        differ = [n for n in ours if bool(ours[n].strip()) != bool(sections[n].strip())]
        if differ:  # an empty section makes no cell: a translation makes the same cells
            raise BuildError(f"{where}: section(s) {', '.join(differ)} empty in one language only")
        try:
            same = "try code" not in ours or code_only(sections["try code"]) == code_only(ours["try code"])
        except SyntaxError as e:
            raise BuildError(f"{where}: its <!-- try code --> section is not Python: {e}") from None
        if not same:
            raise BuildError(f"{where}: the code of its <!-- try code --> section is not the English one's "
                             "(only its comments are translated)")
    return sections


def read_questions(lang=None):
    """``{notebook: [question]}`` from questions.yaml; in ``lang``, from its translation, which must ask the same
    questions (ids, in order) for the same points."""
    path = questions_path(lang)
    name = path.name
    if not path.is_file():
        raise BuildError(f"{shown(path)} is missing")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for module, qs in data.items():
        try:
            unit(module)
        except KeyError:
            raise BuildError(f"{name}: unknown notebook {module!r}") from None
        for q in qs:
            missing = {"id", "points", "question", "answer"} - set(q)
            if missing:
                raise BuildError(f"{name}: {module}/{q.get('id')} lacks {', '.join(sorted(missing))}")
    if not english(lang):
        ours = read_questions()
        for module in {**ours, **data}:
            want = [(q["id"], q["points"]) for q in ours.get(module, [])]
            got = [(q["id"], q["points"]) for q in data.get(module, [])]
            if got != want:
                lacks = [i for i, _ in want if i not in dict(got)]
                raise BuildError(f"{name}: the questions of {module} are not those of questions.yaml "
                                 + (f"(it lacks {', '.join(lacks)})" if lacks else
                                    f"(ids and points: {got}, expected {want})"))
    return data


def solution_source(module, lang=None):
    """``solutions/<module>.py``; in ``lang``, with its docstrings and stub comments from ``solutions/<ll>/``
    (``classroom.stubs.translate``: the code stays the same)."""
    path = SOLUTIONS / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    if english(lang):
        return source
    translation = SOLUTIONS / lang / path.name
    if not translation.is_file():
        raise BuildError(f"{shown(translation)} is missing")
    return translate(source, translation.read_text(encoding="utf-8"), path.name)


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

WIDE = re.compile("[\u2e80-\u9fff\u3000-\u303f\uff00-\uffef]")  # CJK characters and punctuation, full-width forms
PUNCTUATION = re.compile("[\u3000-\u303f\uff00-\uffef]")  # CJK punctuation (，。：（）) and full-width forms
BLOCK_START = re.compile(r"\s*([-*+]\s|\d+[.)]\s|>)")  # a line that starts a list item or a quote


def unwrap(markdown):
    """Markdown whose lines break beside Chinese text joined: a soft line break reads as a space, which Chinese
    text has neither between its characters nor next to its punctuation (a space stays between a Chinese
    character and a Latin word). Headings, tables and code blocks stay as they are."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        prose = not fenced and not line.lstrip().startswith(("```", "#", "|"))
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if prose and out and out[-1][1] and not BLOCK_START.match(line):
            last, first = out[-1][0].rstrip().rstrip("*")[-1:], line.lstrip().lstrip("*")[:1]
            if last and first and (WIDE.match(last) and WIDE.match(first) or PUNCTUATION.match(last)
                                   or PUNCTUATION.match(first)):
                out[-1] = (out[-1][0].rstrip() + line.lstrip(), True)
                continue
        out.append((line, prose))
    return "\n".join(line for line, _ in out)


class Cells:
    """Collects a notebook's cells with valid nbgrader (schema 3) metadata and unique ids; in a course in
    another language (``lang``) its markdown unwrapped (``unwrap``)."""

    def __init__(self, prefix, lang=None):
        self.prefix = prefix
        self.cells = []
        self.ids = set()
        self.lang = lang

    def _id(self, name):
        gid = f"{self.prefix}-{name}"
        gid = re.sub(r"[^A-Za-z0-9_-]", "-", gid)
        if gid in self.ids:
            raise BuildError(f"duplicate cell id {gid}")
        self.ids.add(gid)
        return gid

    def _add(self, kind, source, name, nbgrader=None, extra=None):
        gid = self._id(name)
        if kind == "markdown" and not english(self.lang):
            source = unwrap(source)
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


def setup_cell(module, lang=None):
    _ = words(lang)
    return _("# Setup (read-only): find the kit, then load the helpers that save your code and run the grader's "
             "checks.") + f'''
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


def points(n, lang=None):
    """``1 point``, ``2 points``, ``1.5 points`` in ``lang`` (the grader's report words them the same way)."""
    t = i18n.translation("en" if english(lang) else lang)
    return t.ngettext("{n} point", "{n} points", 1 if n == 1 else 2).format(n=f"{n:g}")


def test_source(check, checkpoint=False, lang=None):
    _ = words(lang)
    arg = ", checkpoint=CHECKPOINT" if checkpoint else ""
    line = _("# Check ({points}, compared with the reference): {title}") if check.reference else \
        _("# Check ({points}, a property): {title}")
    # the check's title: its docstring's first line, which the catalog translates (kit.i18n.extract)
    line = line.format(points=points(check.points, lang), title=_(check.title))
    return f"{line}\nnb.check({check.id!r}{arg})"


def add_questions(cells, module, questions, lang=None):
    _ = words(lang)
    qs = questions.get(module, [])
    if not qs:
        return
    total = sum(q["points"] for q in qs)
    cells.text(_("## Self-check questions ({points}, graded by hand)").format(points=points(total, lang)) + "\n\n"
               + _("Answer each question in the cell below it, in a few sentences of your own."), "questions")
    for i, q in enumerate(qs, start=1):
        cells.text(_("**Question {number}** ({points}). {question}").format(
            number=i, points=points(q["points"], lang), question=q["question"].strip()), f"question-{q['id']}")
        cells.answer(q["answer"].strip(), f"answer-{q['id']}", q["points"])


def module_notebook(module, questions, lang=None):
    _ = words(lang)
    path = SOLUTIONS / f"{module}.py"
    doc, parts = split_solution(solution_source(module, lang), path.name)
    text = read_sections(module, lang)
    common = read_sections("common", lang)
    where = shown(text_path(module, lang))
    used = set()

    def section(name, required=False):
        if name in text:
            used.add(name)
            return text[name] if text[name].strip() else None
        if name in common:
            return common[name].replace("{file}", f"{module}.py").replace("{module}", module)
        if required:
            raise BuildError(f"{where} has no <!-- {name} --> section")
        return None

    cells = Cells(module, lang)
    cells.text(section("intro", required=True), "intro")
    if doc:
        cells.text(_("## The idea, in formulas") + "\n\n" + docstring_markdown(doc), "docstring")
    cells.code(setup_cell(module, lang), "setup")
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
        cells.test(test_source(c, lang=lang), f"check-{c.name}", c.points)
    add_questions(cells, module, questions, lang)
    unused = set(text) - used
    if unused:
        raise BuildError(f"{where}: sections not used: {', '.join(sorted(unused))}")
    return notebook(cells.cells)


LONG_CHECK = {"transformer_kit": {"timeout": FINAL_CHECK_TIMEOUT}}


def final_notebook(questions, lang=None):
    _ = words(lang)
    text = read_sections("final", lang)
    where = shown(text_path("final", lang))
    for name in ("intro", "collect", "train", "check"):
        if name not in text:
            raise BuildError(f"{where} has no <!-- {name} --> section")
    extra = set(text) - {"intro", "collect", "train", "check"}
    if extra:
        raise BuildError(f"{where}: sections not used: {', '.join(sorted(extra))}")
    cells = Cells("final", lang)
    cells.text(text["intro"], "intro")
    cells.code(setup_cell("final", lang) + f"\nCHECKPOINT = {CHECKPOINT!r}", "setup")
    cells.text(text["collect"], "collect-intro")
    cells.code(_("# Read-only: write the five files from the other notebooks (the kit's stubs where one is "
                 "missing)") + "\nnb.collect()", "collect")
    cells.text(text["train"], "train-intro")
    cells.code(_("# Train (not graded, but the final check needs the checkpoint it writes). It stops by\n"
                 "# itself under 2.5: about half an hour on 2 CPU cores (BENCHMARKS.md has the measured runs). "
                 "At most\n"
                 "# {minutes} minutes per run. Interrupt the kernel to stop: the checkpoint is saved, and\n"
                 "# RESUME = True continues from it. While nbgrader grades this notebook it does not train.").format(
                     minutes=TRAIN_MAX_MINUTES) + "\n"
               f"MINUTES = {TRAIN_MAX_MINUTES}\nRESUME = False\n"
               "nb.train(minutes=MINUTES, resume=RESUME, checkpoint=CHECKPOINT)",
               "train", locked=False, extra={"transformer_kit": {"timeout": TRAIN_TIMEOUT}})
    cells.text(text["check"], "check-intro")
    checks = checks_of("final")
    got = sum(c.points for c in checks)
    if got != POINTS["final"]:
        raise BuildError(f"the final checks add up to {got:g} points, the grader gives {POINTS['final']}")
    for c in checks:
        cells.test(test_source(c, checkpoint=True, lang=lang), f"check-{c.name}", c.points, extra=LONG_CHECK)
    add_questions(cells, "final", questions, lang)
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
# In a course built in another language, after the course id: nbgrader's own run (autograde's feedback, the
# kernels it starts) speaks it, unless the instructor's $KIT_LANG says otherwise, and what nbgrader puts in the
# students' copies in place of a solution is in it too.
CONFIG_LANGUAGE = '''
# The course's language (make nbgrader LANG={lang}): the grader's words in the feedback, and the kernels nbgrader
# starts, speak it unless $KIT_LANG is set (kit/i18n.py).
import os  # noqa: E402

os.environ.setdefault('KIT_LANG', {lang!r})
# what generate_assignment writes in place of a solution (nbgrader's defaults are in English)
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
'''


def config(lang=None):
    """nbgrader_config.py of a course in ``lang``."""
    if english(lang):
        return CONFIG
    _ = words(lang)
    anchor = f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
    code_stub = _("# YOUR CODE HERE") + "\nraise NotImplementedError()"
    return CONFIG.replace(anchor, anchor + CONFIG_LANGUAGE.format(
        lang=lang, code_stub=code_stub, text_stub=_("YOUR ANSWER HERE")), 1)


def dumps(nb):
    """Notebook JSON as nbformat writes it (sorted keys, one-space indent, source as a list of lines)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        cell["source"] = cell["source"].splitlines(keepends=True)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def build(lang=None):
    """``{relative path: text}`` of the course folder, in ``lang`` (None or ``"en"``: English)."""
    if not english(lang) and lang not in LOCALES:
        raise BuildError(f"no course text in {lang!r}: one of en, {', '.join(LOCALES)}")
    questions = read_questions(lang)
    files = {"nbgrader_config.py": config(lang)}
    for module in MODULES:
        files[f"source/{ASSIGNMENT}/{unit(module).notebook}.ipynb"] = dumps(module_notebook(module, questions, lang))
    files[f"source/{ASSIGNMENT}/{unit('final').notebook}.ipynb"] = dumps(final_notebook(questions, lang))
    if not english(lang):  # the notebooks' runtime reads it (classroom/notebook): nbgrader copies it to the students
        files[f"source/{ASSIGNMENT}/{COURSE_LANGUAGE}"] = f"{lang}\n"
    return files


def code_of(nb_json, module):
    """The file text a source notebook's ``%%module`` cells make (for checking it against the solution)."""
    parts, _ = notebook_parts(json.loads(nb_json))
    return join_parts(parts[module][k] for k in sorted(parts[module]))


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.nbgrader", description="Build the nbgrader course folder.")
    p.add_argument("--out", default=str(KIT / "dist" / "nbgrader"), help="course folder (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="only report whether the course folder is up to date")
    p.add_argument("--lang", choices=["en", *LOCALES], default=None,
                   help="the course's language (default: kit/i18n.py's choice: $KIT_LANG, which make nbgrader LANG=zh "
                        "sets, then the locale; else English)")
    args = p.parse_args(argv)
    out = Path(args.out)
    lang = args.lang or i18n.language()
    try:
        files = build(lang)
    except (BuildError, RegionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stale = [f for f, text in files.items() if not (out / f).is_file() or (out / f).read_text(encoding="utf-8") != text]
    # source/tier2/ is generated as a whole: a notebook (or the language of another build) it no longer makes is
    # stale too
    made = [*(out / "source" / ASSIGNMENT).glob("*.ipynb"), out / "source" / ASSIGNMENT / COURSE_LANGUAGE]
    extra = sorted(str(p.relative_to(out)) for p in made if p.is_file() and str(p.relative_to(out)) not in files)
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
            if not f.endswith(".ipynb") and not any((out / f).parent.iterdir()):
                (out / f).parent.rmdir()  # the empty locale/ of a course built in another language before
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
