"""The nbgrader course (classroom/nbgrader.py, classroom/nbgrader_autograde.py), proven with real nbgrader.

The course is built here from the sources (dist/ is never committed), released with
`nbgrader generate_assignment`, and submissions are autograded with `nbgrader autograde` on a secret
$GRADER_SEED, in three copies of the course so they run side by side:

* ``full``: the source notebooks (the solutions): full automatic points on every module notebook;
* ``half``: residual and rmsnorm done, attention's RoPE functions only: residual 10, rmsnorm 15, and
  for attention exactly what ``python -m grader`` gives the same code;
* ``unfilled``: the release as handed out: 0; graded with it, the attacks of issue 28 on the RMSNorm
  notebook (the only notebook these students hand in): ``a_cheat`` leaves the solution cell as the stub
  and makes the "Try it" cell replace what the test cells call; ``b_leak`` (the stub too, so that no line
  of the reference is its own) prints $GRADER_SEED, the reference's source and raw HTML from its "Try it"
  cell; ``c_vandal`` overwrites ``z_victim``'s submitted notebook and the gradebook; ``d_killer`` (honest
  code) kills its kernel before the test cells run. Where bubblewrap cannot start, the kernel runs
  unsandboxed (GRADER_ALLOW_WEAK_SANDBOX=1): the cheat still gets the stub's points, and the others are
  not run (nothing keeps them out there).

Every honest notebook's exported points equal, check by check, `python -m grader --untrusted` on the
same five files with the same seed.

The final project's check needs a trained 4 x 256 checkpoint, which no test here trains (half an hour
of CPU): training is switched off (TRANSFORMER_KIT_TRAINING=off), so its 15 automatic points are 0
in every submission, and the test asserts that the check failed for that reason (no checkpoint).

nbgrader comes from requirements-nbgrader.txt; without it the nbgrader tests are skipped.
"""
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KIT, SOLUTIONS

from classroom import nbgrader as course
from classroom.notebook import Notebook
from classroom.regions import BEGIN, END, join_parts
from kit.syllabus import MODULES, POINTS, unit

NOTEBOOKS = {u: unit(u).notebook for u in [*MODULES, "final"]}

ASSIGNMENT = course.ASSIGNMENT
SEED = secrets.token_hex(16)  # the course's grading seed: the autograde's and the CLI's, in no kernel
try:  # the preprocessors need nbgrader's stack (requirements-nbgrader.txt): without it their tests skip
    from classroom.nbgrader_autograde import bwrap_works
    SANDBOX = bwrap_works()
except ImportError:
    SANDBOX = False
WEAK = "bubblewrap cannot start here: the kernel runs unsandboxed, so nothing keeps it from the seed or other files"
HALF = {"residual": None, "rmsnorm": None, "attention": {"attention-code-precompute_rope", "attention-code-apply_rope"}}


def need_nbgrader():
    return pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -r requirements-nbgrader.txt")


def cells(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))["cells"]


def src(cell):
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def nb_path(folder, module):
    return Path(folder) / f"{NOTEBOOKS[module]}.ipynb"


# ---------------------------------------------------------------------------
# The build (no nbgrader run needed)
# ---------------------------------------------------------------------------

def test_build_is_reproducible_and_checkable(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert course.main(["--out", str(a)]) == 0
    assert course.main(["--out", str(b)]) == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [str(f) for f in files] == sorted(course.build())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert course.main(["--out", str(a), "--check"]) == 0
    nb = nb_path(a / "source" / ASSIGNMENT, "rmsnorm")
    nb.write_text(nb.read_text().replace("RMSNorm", "RMSnorm"))  # a hand edit
    assert course.main(["--out", str(a), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_source_notebooks(tmp_path):
    """Valid notebooks and nbgrader metadata; the grader's checks and points; the code is the solutions'."""
    need_nbgrader()
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    files = course.build()
    validator = MetadataValidator()
    for module in [*MODULES, "final"]:
        text = files[f"source/{ASSIGNMENT}/{NOTEBOOKS[module]}.ipynb"]
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
        validator.validate_nb(nb)
        tests = [c for c in nb.cells if meta(c).get("grade") and c.cell_type == "code"]
        assert sum(meta(c)["points"] for c in tests) == POINTS[module], module
        for c in nb.cells:
            m = meta(c)
            assert m.get("schema_version") == 3 or not m, c.id
        called = [s.split("nb.check(")[1].split("'")[1] for s in (src(c) for c in tests) if "nb.check(" in s]
        assert called == [c.id for c in course.checks_of(module)], module
        for c in tests:
            check = next((x for x in course.checks_of(module) if f"'{x.id}'" in src(c)), None)
            assert check is not None and meta(c)["points"] == check.points, c.id
            assert "HIDDEN TESTS" not in src(c), c.id  # every check runs at the desk (on the recorded reference)
        answers = [c for c in nb.cells if c.cell_type == "markdown" and meta(c).get("grade")]
        assert answers and all(meta(c)["solution"] and meta(c)["points"] > 0 for c in answers), module
        if module == "final":
            train = next(c for c in nb.cells if "nb.train(" in c.source)
            assert train.metadata["transformer_kit"]["timeout"] == course.TRAIN_TIMEOUT
            continue
        # the module's code cells make the solution file, less its docstring (the notebook's markdown)
        solution = (SOLUTIONS / f"{module}.py").read_text()
        doc, _ = course.split_solution(solution, module)
        made = course.code_of(text, module)
        strip = lambda t: [line for line in t.splitlines() if line.strip()]  # noqa: E731
        assert strip(made) == strip(solution.split('"""', 2)[2]), module
        assert course.docstring_markdown(doc).strip() in "".join(src(c) for c in nb.cells if c.cell_type == "markdown")
        solution_cells = [c for c in nb.cells if meta(c).get("solution") and c.cell_type == "code"]
        assert solution_cells and all(c.source.startswith("%%module") and BEGIN in c.source
                                      for c in solution_cells)


def test_cell_time_limits_reach_nbgrader(tmp_path):
    """nbgrader's own Execute preprocessor, configured by the generated nbgrader_config.py."""
    need_nbgrader()
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    assert course.main(["--out", str(tmp_path)]) == 0
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    ex = Execute(config=config)
    nb = cells(tmp_path / "source" / ASSIGNMENT / f"{NOTEBOOKS['final']}.ipynb")
    train = next(c for c in nb if "nb.train(" in src(c))
    checks = [c for c in nb if meta(c).get("grade") and c["cell_type"] == "code"]
    others = [c for c in nb if c is not train and c not in checks]
    assert ex._get_timeout(train) == course.TRAIN_TIMEOUT >= (course.TRAIN_MAX_MINUTES + 10) * 60
    assert checks and {ex._get_timeout(c) for c in checks} == {course.FINAL_CHECK_TIMEOUT}
    assert {ex._get_timeout(c) for c in others} == {course.CELL_TIMEOUT}
    module_cells = cells(tmp_path / "source" / ASSIGNMENT / f"{NOTEBOOKS['attention']}.ipynb")
    assert {ex._get_timeout(c) for c in module_cells} == {course.CELL_TIMEOUT}
    assert ex._get_timeout({"metadata": {"transformer_kit": {"timeout": 10**9}}}) == course.MAX_TIMEOUT


def test_workspace_takes_only_usable_sibling_notebooks(tmp_path):
    """A broken module notebook falls back to the stub; a complete one is used; nothing else is touched."""
    doc, parts = course.split_solution((SOLUTIONS / "rmsnorm.py").read_text(), "rmsnorm.py")
    good = [{"cell_type": "code", "source": f"%%module rmsnorm.py (part {k} of {len(parts)})\n{code}"}
            for k, (_, code) in enumerate(parts, start=1)]
    (tmp_path / f"{NOTEBOOKS['rmsnorm']}.ipynb").write_text(json.dumps({"cells": good}))
    bad = [{"cell_type": "code", "source": "%%module attention.py (part 1 of 1)\nthis is not python"}]
    (tmp_path / f"{NOTEBOOKS['attention']}.ipynb").write_text(json.dumps({"cells": bad}))
    nb = Notebook("block", folder=tmp_path / "work", notebooks_dir=tmp_path, shell=None, quiet=True)
    assert nb.sources["rmsnorm"] == f"{NOTEBOOKS['rmsnorm']}.ipynb"
    assert nb.sources["attention"] == nb.sources["residual"] == nb.sources["block"] == "stub"
    assert (nb.folder / "rmsnorm.py").read_text() == join_parts(code for _, code in parts)
    assert (nb.folder / "attention.py").read_text() == (KIT / "exercises" / "attention.py").read_text()
    with pytest.raises(AssertionError, match="have not all run"):  # nothing of the block's own ran yet
        nb.check("block.block_shape")


def test_autograde_reads_the_code_of_the_solution_cells(tmp_path):
    """The files graded at autograde: the source's read-only parts with the submitted solution cells; a module
    whose solution cell lost its `%%module` line is the stub (as in the student's kernel), with a note."""
    need_nbgrader()  # the module imports nbgrader's stack
    from classroom.nbgrader_autograde import submission_files
    source, submitted = tmp_path / "source", tmp_path / "submitted"
    for d in (source, submitted):
        d.mkdir()
    for f, text in course.build().items():
        if f.startswith("source/"):
            (source / Path(f).name).write_text(text)
    for module in ("rmsnorm", "attention"):
        shutil.copy(nb_path(source, module), submitted)
    files, notes = submission_files(source, submitted, "rmsnorm")
    assert files["rmsnorm"] == course.code_of(nb_path(source, "rmsnorm").read_text(), "rmsnorm") and not notes
    assert files["attention"] == course.code_of(nb_path(source, "attention").read_text(), "attention")
    assert files["block"] == (KIT / "exercises" / "block.py").read_text()  # not submitted: the stub
    nb = json.loads(nb_path(submitted, "rmsnorm").read_text())
    cell = next(c for c in nb["cells"] if meta(c).get("solution") and c["cell_type"] == "code")
    cell["source"] = src(cell).split("\n", 1)[1]  # the %%module line deleted
    nb_path(submitted, "rmsnorm").write_text(json.dumps(nb))
    files, notes = submission_files(source, submitted, "rmsnorm")
    assert files["rmsnorm"] == (KIT / "exercises" / "rmsnorm.py").read_text()
    assert len(notes) == 1 and "rmsnorm.py" in notes[0] and "does not start with" in notes[0], notes


def test_feedback_outputs_keep_text_and_images_only():
    """What the kernel printed reaches the feedback as text and plain images: no HTML, script, SVG, output
    metadata or paths of the grading machine."""
    need_nbgrader()  # the module imports nbgrader's stack
    from classroom.nbgrader_autograde import clean_markdown, clean_output
    png = "iVBORw0KGgo="
    out = clean_output({"output_type": "display_data", "metadata": {"width": '1" onload="x'},
                        "data": {"text/html": "<img src=x onerror=alert(1)>", "application/javascript": "alert(1)",
                                 "image/svg+xml": "<svg onload=alert(1)/>", "image/png": png,
                                 "text/plain": "<IPython.core.display.HTML object>"}}, [KIT])
    assert dict(out.data) == {"image/png": png, "text/plain": "<IPython.core.display.HTML object>"}
    assert out.metadata == {}
    assert clean_output({"output_type": "display_data", "data": {"image/png": '" onerror="alert(1)'}}, []) is None
    out = clean_output({"output_type": "error", "ename": "ValueError", "evalue": f"{KIT}/solutions/x.py",
                        "traceback": ["File /tmp/tier2-rmsnorm-ab12/rmsnorm.py:3", f"{KIT}/classroom/notebook/x.py"]},
                       [KIT])
    assert str(KIT) not in out.evalue + "".join(out.traceback) and "/tmp/" not in "".join(out.traceback)
    assert out.traceback[0] == "File rmsnorm.py:3"
    md = clean_markdown('My answer <img src=x onerror=alert(1)> and [link](javascript:alert(1))')
    assert "<img" not in md and "javascript:" not in md


# ---------------------------------------------------------------------------
# The course in Chinese (--lang zh): the English course's code and metadata, its words in Chinese
# ---------------------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_RUN = re.compile(r"\b[A-Za-z][A-Za-z'-]*(?:\s+[A-Za-z][A-Za-z'-]*){2,}\b")  # three English words in a row


def english_runs(markdown):
    """Runs of three English words in ``markdown``'s prose: outside code blocks, `code` and citations (Su et al.)."""
    prose = re.sub(r"`[^`\n]*`", " ", re.sub(r"```.*?```", " ", markdown, flags=re.S))
    prose = re.sub(r"\bet al\.", " ", prose)
    return ENGLISH_RUN.findall(prose)


def code_without_text(source):
    """A code cell as Python without its comments and docstrings (its ``%%module`` line kept as it is)."""
    import ast
    magic, rest = (source.split("\n", 1) + [""])[:2] if source.startswith("%%") else ("", source)
    tree = ast.parse(rest)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0].value, "value", None), str):
            node.body = body[1:]
    return magic, ast.dump(tree)


def test_the_chinese_course_is_the_english_one_in_chinese():
    """`--lang zh`: every markdown cell Chinese (no English sentence outside code), the self-check questions and
    their answers too; the code cells the English build's but for docstrings and comments, which speak Chinese;
    nbgrader's metadata (grade ids, points, locks) the English build's; and the course remembers its language."""
    en, zh = course.build(), course.build("zh")
    lang_file = f"source/{ASSIGNMENT}/locale/default"
    assert sorted(zh) == sorted([*en, lang_file]) and zh[lang_file] == "zh\n"
    assert "os.environ.setdefault('KIT_LANG', 'zh')" in zh["nbgrader_config.py"]
    assert "KIT_LANG" not in en["nbgrader_config.py"]
    for module in [*MODULES, "final"]:
        f = f"source/{ASSIGNMENT}/{NOTEBOOKS[module]}.ipynb"
        en_nb, zh_nb = json.loads(en[f]), json.loads(zh[f])
        assert en_nb["metadata"] == zh_nb["metadata"]
        assert [(c["id"], c["cell_type"], c["metadata"]) for c in en_nb["cells"]] == \
            [(c["id"], c["cell_type"], c["metadata"]) for c in zh_nb["cells"]], module
        for e, z in zip(en_nb["cells"], zh_nb["cells"]):
            source = src(z)
            if z["cell_type"] == "markdown":
                assert CJK.search(source) and not english_runs(source), (z["id"], english_runs(source))
                prose = re.sub(r"```.*?```", " ", source, flags=re.S)
                assert not re.search(r"[\u4e00-\u9fff]\n[\u4e00-\u9fff]", prose), z["id"]  # no space between
                continue
            assert code_without_text(source) == code_without_text(src(e)), z["id"]
            first = source.split("\n", 1)[0]
            if first.startswith("#"):  # the cell's own comment: the setup, the try, each check, collect, train
                assert CJK.search(first), (z["id"], first)
            if first.startswith("%%module") and '"""' in src(e):  # the solution's docstrings, from solutions/zh/
                assert CJK.search(source), z["id"]
        questions = [c for c in zh_nb["cells"] if c["id"].startswith(f"{module}-question")]
        assert questions and all(src(c).startswith("**第 ") for c in questions if c["id"] != f"{module}-questions")
        answers = [c for c in zh_nb["cells"] if meta(c).get("grade") and c["cell_type"] == "markdown"]
        assert answers and all(CJK.search(src(c)) for c in answers), module


def test_a_translation_that_lacks_a_section_or_a_question_is_refused(tmp_path, monkeypatch):
    shutil.copytree(course.TEXT, tmp_path / "text")
    monkeypatch.setattr(course, "TEXT", tmp_path / "text")
    zh_text = tmp_path / "text" / "zh-CN" / "rmsnorm.md"
    original = zh_text.read_text(encoding="utf-8")
    zh_text.write_text(original.split("<!-- try code -->")[0], encoding="utf-8")
    with pytest.raises(course.BuildError, match="lacks the section.*try code"):
        course.build("zh")
    zh_text.write_text(original.replace("print(y.shape, y.dtype)", "print(y.shape)"), encoding="utf-8")
    with pytest.raises(course.BuildError, match="not the English one's"):
        course.build("zh")
    zh_text.write_text(original, encoding="utf-8")
    questions = tmp_path / "text" / "questions.zh-CN.yaml"
    text = questions.read_text(encoding="utf-8")
    questions.write_text(text.replace("  - id: two-residuals", "  - id: two-residuals-renamed"), encoding="utf-8")
    with pytest.raises(course.BuildError, match="questions of block.*lacks two-residuals"):
        course.build("zh")
    questions.write_text(text.replace("id: diagram\n    points: 2", "id: diagram\n    points: 1"), encoding="utf-8")
    with pytest.raises(course.BuildError, match="questions of block"):
        course.build("zh")
    questions.write_text(text, encoding="utf-8")
    assert course.build("zh")  # as it was: builds


def test_the_course_is_built_in_the_language_asked_for(tmp_path, monkeypatch, capsys):
    """--lang, else kit/i18n.py's choice ($KIT_LANG: make nbgrader LANG=zh); an English build over a Chinese
    one leaves no trace of it."""
    out = tmp_path / "course"
    monkeypatch.setenv("KIT_LANG", "zh")
    assert course.main(["--out", str(out)]) == 0
    assert (out / "source" / ASSIGNMENT / "locale" / "default").read_text() == "zh\n"
    assert course.main(["--out", str(out), "--check", "--lang", "zh"]) == 0
    assert course.main(["--out", str(out), "--check", "--lang", "en"]) == 1
    assert course.main(["--out", str(out), "--lang", "en"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(course.build())
    assert not (out / "source" / ASSIGNMENT / "locale").exists()
    capsys.readouterr()
    p = subprocess.run(["make", "-n", "nbgrader", "LANG=zh"], cwd=KIT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "-m classroom.nbgrader --lang zh" in p.stdout, p.stdout + p.stderr


def test_a_notebook_of_a_chinese_course_speaks_chinese(tmp_path, monkeypatch, capsys):
    """The kernel reads the course's locale/default (its assignment folder): its messages, and those of the
    grader and trainer it starts ($KIT_LANG), are Chinese; an explicit $KIT_LANG still wins."""
    from kit import i18n
    (tmp_path / "locale").mkdir()
    (tmp_path / "locale" / "default").write_text("zh\n")
    monkeypatch.setenv("KIT_LANG", "en")
    Notebook("block", folder=tmp_path / "en-work", notebooks_dir=tmp_path, shell=None)
    assert "the kit's stub" in capsys.readouterr().out and os.environ["KIT_LANG"] == "en"
    monkeypatch.delenv("KIT_LANG")
    nb = Notebook("block", folder=tmp_path / "work", notebooks_dir=tmp_path, shell=None)
    assert os.environ["KIT_LANG"] == "zh" and i18n.language() == "zh"
    out = capsys.readouterr().out
    assert "rmsnorm.py：工具包的存根（本 notebook 旁边没有找到 02_rmsnorm.ipynb）" in out, out
    with pytest.raises(AssertionError, match="还没有在这个内核中全部运行过"):
        nb.check("block.block_shape")
    nb._magic("block.py (part 2 of 3)", "x = 1")
    assert "已保存 block.py 的第 2 部分；等第 1, 3 部分也运行过之后，才会写出 block.py" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Real nbgrader: release, then autograde three submissions
# ---------------------------------------------------------------------------

def nbgrader_env(root):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs `alembic`
    env.update(TRANSFORMER_KIT=str(KIT), TRANSFORMER_KIT_TRAINING="off", GRADER_SEED=SEED,
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"), JUPYTER_DATA_DIR=str(root / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    if not SANDBOX:
        env["GRADER_ALLOW_WEAK_SANDBOX"] = "1"
    return env


def fill(release, source, target, which, modules=(*MODULES, "final"), try_code=None):
    """Copy release notebooks to ``target``, with the solution cells ``which`` ({module: grade ids or None
    for all}) taken from the source notebooks (and the "Try it" cell's code ``try_code`` where given)."""
    target.mkdir(parents=True)
    for module in modules:
        nb = json.loads(nb_path(release, module).read_text())
        if try_code is not None:
            next(c for c in nb["cells"] if c.get("id") == f"{module}-try")["source"] = try_code
        chosen = which.get(module, set())
        solved = {meta(c).get("grade_id"): c["source"] for c in cells(nb_path(source, module))}
        for c in nb["cells"]:
            gid = meta(c).get("grade_id")
            if meta(c).get("solution") and c["cell_type"] == "code" and (chosen is None or gid in chosen):
                c["source"] = solved[gid]
        nb_path(target, module).write_text(json.dumps(nb, indent=1))


def scores(course_dir, student):
    from nbgrader.api import Gradebook
    out = {}
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for nb in gb.find_submission(ASSIGNMENT, student).notebooks:
            out[nb.name] = SimpleNamespace(auto=nb.code_score, max=nb.max_code_score, written_max=nb.max_written_score,
                                           cells={g.name: g.auto_score for g in nb.grades if g.cell_type == "code"})
    return out


def outputs(course_dir, student, module, grade_id):
    """The text a cell of an autograded notebook shows (``grade_id`` None: the "Try it" cell)."""
    for c in cells(nb_path(course_dir / "autograded" / student / ASSIGNMENT, module)):
        if (meta(c).get("grade_id") == grade_id) if grade_id else c.get("id") == f"{module}-try":
            return "\n".join("".join(o.get("text", "")) + o.get("evalue", "") for o in c.get("outputs", []))
    raise KeyError(grade_id)


CHEAT = """# Try it: the test cells call nb.check and the grading helpers; make every one of them pass
import classroom.notebook as kit_notebook
import classroom.notebook.grading as kit_grading
kit_grading.run_checks = lambda *a, **k: []
kit_grading.grade_unit = lambda *a, **k: None
kit_notebook.run_checks = lambda *a, **k: []
nb.check = lambda *a, **k: print("PASS")
type(nb).check = lambda self, *a, **k: print("PASS")
"""

LEAK = """# Try it: print the course's secrets into my own feedback
import os, sys, pathlib
print("seed:", os.environ.get("GRADER_SEED"))
for pid in os.listdir("/proc"):
    try:
        print("environ", pid, open(f"/proc/{pid}/environ", "rb").read())
    except Exception as e:
        print("environ", pid, type(e).__name__)
guesses = [pathlib.Path(os.environ.get("TRANSFORMER_KIT", ".")), *pathlib.Path.cwd().parents, pathlib.Path(%(kit)r)]
for g in guesses:
    for f in (g / "solutions" / "rmsnorm.py", g / "solutions" / "ANSWERS.md", g / "grader" / "measure.py"):
        try:
            print(f, f.read_text())
        except Exception as e:
            print(f, type(e).__name__)
try:
    import solutions.rmsnorm, inspect
    print(inspect.getsource(solutions.rmsnorm))
except Exception as e:
    print("import solutions:", type(e).__name__)
from IPython.display import HTML, display
display(HTML('<img src=x onerror="alert(1)">'))
print('<img src=x onerror="alert(2)">')
"""

VANDAL = """# Try it: blank the neighbour's submission and the gradebook
import pathlib
blank = pathlib.Path(%(blank)r).read_text() if pathlib.Path(%(blank)r).exists() else "{}"
targets = [pathlib.Path(%(victim)r), pathlib.Path(%(gradebook)r), pathlib.Path(%(config)r),
           *[p / "submitted" / "z_victim" / "tier2" / "02_rmsnorm.ipynb" for p in pathlib.Path.cwd().parents],
           *[p / "gradebook.db" for p in pathlib.Path.cwd().parents]]
for t in targets:
    try:
        t.write_text(blank if t.suffix == ".ipynb" else "vandalised")
        print("wrote", t)
    except Exception as e:
        print("could not write", t, type(e).__name__)
"""

HOG = """# Try it: take far more memory than a grading gives a kernel (256 MB at a time, every page written: 16 GB)
chunks = []
for _ in range(64):
    chunks.append(b"x" * (256 << 20))
print("took", len(chunks) * 256, "MB")
"""

KILLER = """# Try it: kill the kernel's parent, then the kernel, before any test cell runs
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
os._exit(3)
"""


def submission_files(folder, files):
    """The five files of a submission, written as ``python -m grader`` takes them."""
    folder.mkdir(parents=True)
    for m, text in files.items():
        (folder / f"{m}.py").write_text(text)
    return folder


def cli_scores(folder, root):
    """``{check id: score}`` from `python -m grader --untrusted` on ``folder`` with the course's seed."""
    record = root / f"{folder.name}.record.json"
    p = subprocess.run([sys.executable, "-m", "grader", "--impl", str(folder), "--untrusted", "--seed", SEED,
                        "--record", str(record), "--no-color", *([] if SANDBOX else ["--allow-weak-sandbox"])],
                       cwd=KIT, capture_output=True, text=True, timeout=900)
    assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr[-3000:]
    return {r["check"]: r["score"] for r in json.loads(record.read_text())["results"]}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    need_nbgrader()
    root = tmp_path_factory.mktemp("nbgrader")
    env = nbgrader_env(root)
    base = root / "course"
    assert course.main(["--out", str(base)]) == 0
    p = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT], cwd=base, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    source, release = base / "source" / ASSIGNMENT, base / "release" / ASSIGNMENT
    plans = {"full": {m: None for m in MODULES}, "unfilled": {}, "half": HALF}
    procs, hashes = {}, {}
    for student, which in plans.items():
        d = root / student
        shutil.copytree(base, d)
        fill(release, source, d / "submitted" / student / ASSIGNMENT, which)
        if student == "half":  # a checkpoint in the submission: autograde reads it, feedback must not copy it
            (d / "submitted" / student / ASSIGNMENT / "runs").mkdir()
            (d / "submitted" / student / ASSIGNMENT / "runs" / "final.pt").write_bytes(b"not a checkpoint" * 64)
        if student == "unfilled":  # the attacks, on the RMSNorm notebook, graded beside the unfilled release
            sub = d / "submitted"
            fill(release, source, sub / "a_cheat" / ASSIGNMENT, {}, ["rmsnorm"], CHEAT)
            fill(release, source, sub / "e_hog" / ASSIGNMENT, {"rmsnorm": None}, ["rmsnorm"], HOG)
            if SANDBOX:
                victim = nb_path(sub / "z_victim" / ASSIGNMENT, "rmsnorm")
                fill(release, source, sub / "b_leak" / ASSIGNMENT, {}, ["rmsnorm"],
                     LEAK % {"kit": str(KIT)})
                fill(release, source, sub / "c_vandal" / ASSIGNMENT, {}, ["rmsnorm"],
                     VANDAL % {"blank": str(nb_path(release, "rmsnorm")), "victim": str(victim),
                               "gradebook": str(d / "gradebook.db"), "config": str(d / "nbgrader_config.py")})
                fill(release, source, sub / "z_victim" / ASSIGNMENT, {"rmsnorm": None}, ["rmsnorm"])
                fill(release, source, sub / "d_killer" / ASSIGNMENT, {"rmsnorm": None}, ["rmsnorm"], KILLER)
                hashes = {f: hashlib.sha256(f.read_bytes()).hexdigest()
                          for f in (victim, d / "nbgrader_config.py")}
        log = open(d / "autograde.log", "w")
        procs[student] = (subprocess.Popen([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=d,
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log, d)
    # meanwhile: what the grader itself gives the same five files, with the same seed
    half_files = {m: (SOLUTIONS if m in ("residual", "rmsnorm") else KIT / "exercises").joinpath(f"{m}.py").read_text()
                  for m in MODULES}
    half_files["attention"] = course.code_of(
        nb_path(root / "half" / "submitted" / "half" / ASSIGNMENT, "attention").read_text(), "attention")
    full_files = {m: course.code_of(nb_path(source, m).read_text(), m) for m in MODULES}
    cli = {"half": cli_scores(submission_files(root / "half-files", half_files), root),
           "full": cli_scores(submission_files(root / "full-files", full_files), root)}
    stubs = {m: (KIT / "exercises" / f"{m}.py").read_text() for m in MODULES}
    cli["stub"] = cli_scores(submission_files(root / "stub-files", stubs), root)
    results = {}
    for student, (proc, log, d) in procs.items():
        code = proc.wait(timeout=1800)
        log.close()
        assert code == 0, (d / "autograde.log").read_text()[-4000:]
        results[student] = scores(d, student)
    attackers = ["a_cheat", "e_hog", *(["b_leak", "c_vandal", "d_killer", "z_victim"] if SANDBOX else [])]
    for student in attackers:
        results[student] = scores(root / "unfilled", student)
    cli_attention = sum(v for k, v in cli["half"].items() if k.startswith("attention."))
    return SimpleNamespace(root=root, source=source, release=release, scores=results, cli_attention=cli_attention,
                           cli=cli, hashes=hashes)


def test_release_has_stubs_and_every_check(graded):
    for module in [*MODULES, "final"]:
        released = {meta(c).get("grade_id"): c for c in cells(nb_path(graded.release, module))}
        text = nb_path(graded.release, module).read_text()
        for marker in (BEGIN, END):
            assert marker not in text, (module, marker)
        assert [c.id for c in course.checks_of(module)] == [
            src(c).split("nb.check(")[1].split("'")[1] for c in cells(nb_path(graded.release, module))
            if "nb.check(" in src(c)]
        for c in cells(nb_path(graded.source, module)):
            m, body = meta(c), src(c)
            if m.get("solution") and c["cell_type"] == "code":
                got = src(released[m["grade_id"]])
                assert got.count("raise NotImplementedError()") == body.count(BEGIN) > 0, m["grade_id"]
                assert got.splitlines()[0] == body.splitlines()[0]  # the %%module line stays
            elif m.get("solution"):
                assert src(released[m["grade_id"]]).strip() == "YOUR ANSWER HERE", m["grade_id"]


def test_autograde_solutions_full_marks(graded):
    got = graded.scores["full"]
    for module in MODULES:
        s = got[NOTEBOOKS[module]]
        assert (s.auto, s.max) == (POINTS[module], POINTS[module]), (module, s.cells)
        assert s.written_max > 0  # the self-check questions wait for a person
    final = got[NOTEBOOKS["final"]]
    assert (final.auto, final.max) == (0, POINTS["final"])  # no checkpoint: see the module docstring
    out = "".join(outputs(graded.root / "full", "full", "final", gid) for gid in final.cells)
    assert f"FAIL 0/{POINTS['final']}" in out and "runs/final.pt" in out, out  # failed for want of a checkpoint


def test_autograde_unfilled_release_zero(graded):
    got = graded.scores["unfilled"]
    assert {name: s.auto for name, s in got.items()} == {NOTEBOOKS[m]: 0 for m in [*MODULES, "final"]}
    out = outputs(graded.root / "unfilled", "unfilled", "rmsnorm", "rmsnorm-check-parameters")
    assert "not implemented yet" in out, out  # the grader's message reaches the notebook


def test_autograde_half_done_partial(graded):
    got = {m: graded.scores["half"][NOTEBOOKS[m]].auto for m in [*MODULES, "final"]}
    assert 0 < graded.cli_attention < POINTS["attention"]
    assert got == {"residual": POINTS["residual"], "rmsnorm": POINTS["rmsnorm"], "attention": graded.cli_attention,
                   "block": 0, "decoder": 0, "final": 0}


def text(page):
    """What a student reads on a feedback page: no style sheets, no markup."""
    page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def feedback(graded, course_copy, student):
    """``{notebook: html}`` of ``nbgrader generate_feedback`` for ``student`` (run once)."""
    d = graded.root / course_copy
    fb = d / "feedback" / student / ASSIGNMENT
    if not fb.is_dir():
        p = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--student", student],
                           cwd=d, env=nbgrader_env(graded.root), capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {f.stem: f.read_text(encoding="utf-8") for f in fb.glob("*.html")}


def cell_scores(graded, student, module):
    """``{check id: points}`` the gradebook holds for ``student``'s notebook of ``module``."""
    cells = graded.scores[student][NOTEBOOKS[module]].cells
    return {gid.replace(f"{module}-check-", f"{module}.", 1): v for gid, v in cells.items()}


def unit_of(scores, module):
    return {k: v for k, v in scores.items() if k.split(".")[0] == module}


def test_honest_grades_equal_the_grader_check_by_check(graded):
    """The gradebook (what `nbgrader export` writes) holds, cell by cell, what `python -m grader --untrusted`
    gives the same five files on the same seed: the solutions, and a half-done submission."""
    for student in ("full", "half"):
        for module in MODULES:
            assert cell_scores(graded, student, module) == unit_of(graded.cli[student], module), (student, module)
    p = subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=graded.root / "full",
                       env=nbgrader_env(graded.root), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    import csv
    rows = list(csv.DictReader((graded.root / "full" / "grades.csv").open()))
    assert len(rows) == 1 and float(rows[0]["raw_score"]) == sum(
        v for k, v in graded.cli["full"].items() if k.split(".")[0] in MODULES) == sum(POINTS[m] for m in MODULES)


def test_attack_stub_with_patched_checks_scores_as_the_stub(graded):
    """(a) A stub solution cell and a "Try it" cell that replaces nb.check and the grading helpers: the
    kernel's test cells print PASS, the gradebook holds the grader's points for the stub (0), cell by cell."""
    assert cell_scores(graded, "a_cheat", "rmsnorm") == unit_of(graded.cli["stub"], "rmsnorm")
    assert graded.scores["a_cheat"][NOTEBOOKS["rmsnorm"]].auto == 0
    out = outputs(graded.root / "unfilled", "a_cheat", "rmsnorm", "rmsnorm-check-parameters")
    assert "not implemented yet" in out and "PASS" not in out, out  # the grader's message replaced the kernel's


@pytest.mark.skipif(not SANDBOX, reason=WEAK)
def test_attack_reading_the_seed_and_the_reference_leaks_nothing(graded):
    """(b) A "Try it" cell that prints $GRADER_SEED, every process's environment, the reference's source and
    raw HTML: the kernel had none of them, the feedback shows no seed, no reference code and no live HTML."""
    tried = outputs(graded.root / "unfilled", "b_leak", "rmsnorm", None)
    assert "seed: None" in tried and "import solutions: ModuleNotFoundError" in tried, tried[:3000]
    from classroom.regions import lines as region_lines
    released = nb_path(graded.release, "rmsnorm").read_text()
    reference = [x.text.strip() for x in region_lines((SOLUTIONS / "rmsnorm.py").read_text())
                 if x.inside and len(x.text.strip()) > 30 and x.text.strip() not in released]
    assert reference
    pages = feedback(graded, "unfilled", "b_leak")
    autograded = nb_path(graded.root / "unfilled" / "autograded" / "b_leak" / ASSIGNMENT, "rmsnorm").read_text()
    assert pages
    for where, page in {**pages, "autograded notebook": autograded}.items():
        assert SEED not in page, where
        for line in reference:
            assert line not in text(page) and line not in page, (where, line)
    page = pages[NOTEBOOKS["rmsnorm"]]
    assert not re.search(r"<img[^>]*onerror", page, re.I)  # shown as text, never as markup
    assert 'onerror="alert(2)"' in text(page)
    assert cell_scores(graded, "b_leak", "rmsnorm") == unit_of(graded.cli["stub"], "rmsnorm")


@pytest.mark.skipif(not SANDBOX, reason=WEAK)
def test_attack_writing_another_submission_changes_nothing(graded):
    """(c) A kernel that overwrites another student's submitted notebook, the gradebook and the course's
    configuration: it could write none of them, and the neighbour graded after it gets the grader's points."""
    for f, digest in graded.hashes.items():
        assert hashlib.sha256(f.read_bytes()).hexdigest() == digest, f
    tried = outputs(graded.root / "unfilled", "c_vandal", "rmsnorm", None)
    assert "could not write" in tried and "wrote " not in tried, tried[:3000]
    assert cell_scores(graded, "z_victim", "rmsnorm") == unit_of(graded.cli["full"], "rmsnorm")
    assert graded.scores["z_victim"][NOTEBOOKS["rmsnorm"]].auto == POINTS["rmsnorm"]


@pytest.mark.skipif(not SANDBOX, reason=WEAK)
def test_a_kernel_that_dies_still_gets_its_code_graded(graded):
    """A "Try it" cell that kills its kernel (and tries its parent) before the test cells run: the
    notebook is still graded, on its code, by the grader."""
    assert cell_scores(graded, "d_killer", "rmsnorm") == unit_of(graded.cli["full"], "rmsnorm")
    assert graded.scores["d_killer"][NOTEBOOKS["rmsnorm"]].auto == POINTS["rmsnorm"]


def test_a_kernel_that_takes_too_much_memory_is_bounded_and_its_code_graded(graded):
    """A "Try it" cell that writes 16 GB (honest code otherwise): the kernel's memory bound stops it (a memory
    cgroup of 4,096 MB where the grading can make one, which kills the kernel, else RLIMIT_AS, which raises
    MemoryError in the cell), the log says which bound was in force, and the code is graded all the same."""
    log = (graded.root / "unfilled" / "autograde.log").read_text()
    bound = re.search(r"running 02_rmsnorm in a kernel with isolation: [^\n]*memory: (cgroup|RLIMIT_AS) of "
                      r"4096 MB", log)
    assert bound, log[-3000:]
    tried = outputs(graded.root / "unfilled", "e_hog", "rmsnorm", None)
    assert "took 16384 MB" not in tried, tried[:2000]
    autograded = nb_path(graded.root / "unfilled" / "autograded" / "e_hog" / ASSIGNMENT, "rmsnorm")
    shown = json.dumps([c.get("outputs", []) for c in cells(autograded)], ensure_ascii=False)
    if bound.group(1) == "cgroup":
        assert "used more than the 4096 MB of memory a grading gives it" in shown, shown[:3000]
    else:
        assert "MemoryError" in tried, tried[:2000]
    assert cell_scores(graded, "e_hog", "rmsnorm") == unit_of(graded.cli["full"], "rmsnorm")
    assert graded.scores["e_hog"][NOTEBOOKS["rmsnorm"]].auto == POINTS["rmsnorm"]


def test_the_kernels_memory_bound_without_a_cgroup_is_its_address_space(monkeypatch):
    """Where no memory cgroup can be made (not root, no cgroup file system: KIT_NO_CGROUP simulates it) the kernel's
    bound is RLIMIT_AS, set by the shim that starts it: an allocation past it fails in the cell, the kernel lives.
    A limit that is not a number, or absurdly small, is the instructor's mistake, said before any kernel starts."""
    need_nbgrader()
    from classroom.nbgrader_autograde import CONFINE, AutogradeError, KitExecute
    monkeypatch.setenv("KIT_NO_CGROUP", "1")
    monkeypatch.delenv("GRADER_KERNEL_MEMORY_MB", raising=False)
    assert KitExecute()._kernel_memory() == (None, 4096, "memory: RLIMIT_AS of 4096 MB per process")
    assert KitExecute(kernel_memory_mb=1024)._kernel_memory()[1] == 1024
    hog = "import sys\ntry:\n    b = bytearray(2 << 30)\nexcept MemoryError:\n    sys.exit(7)\nprint('took 2 GB')"
    p = subprocess.run([sys.executable, "-I", "-c", CONFINE, "", str(1024 << 20), sys.executable, "-I", "-c", hog],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 7, (p.returncode, p.stdout, p.stderr)
    for bad in ("lots", "64"):
        monkeypatch.setenv("GRADER_KERNEL_MEMORY_MB", bad)
        with pytest.raises(AutogradeError, match="GRADER_KERNEL_MEMORY_MB|at least 256 MB"):
            KitExecute()._kernel_memory()


def test_without_bubblewrap_autograde_refuses_unless_allowed(graded, tmp_path):
    """Where bubblewrap cannot start (KIT_NO_BWRAP simulates it), autograde runs no student's notebook unless
    the instructor allows a weak sandbox; allowed, the kernel is unsandboxed and says so in the log, and the
    points still come from the grader: the cheat of (a) still scores as the stub."""
    d = tmp_path / "course"
    shutil.copytree(graded.root / "course", d)
    fill(graded.release, graded.source, d / "submitted" / "a_cheat" / ASSIGNMENT, {}, ["rmsnorm"], CHEAT)
    env = {k: v for k, v in nbgrader_env(graded.root).items() if k != "GRADER_ALLOW_WEAK_SANDBOX"}
    env["KIT_NO_BWRAP"] = "1"
    cmd = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT]
    p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "refusing to run a student's notebook with no sandbox" in p.stdout + p.stderr, \
        (p.stdout + p.stderr)[-3000:]
    p = subprocess.run([*cmd, "--force"], cwd=d, env={**env, "GRADER_ALLOW_WEAK_SANDBOX": "1"}, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "isolation: none" in p.stdout + p.stderr
    got = scores(d, "a_cheat")[NOTEBOOKS["rmsnorm"]].cells
    assert {g.replace("rmsnorm-check-", "rmsnorm.", 1): v for g, v in got.items()} == \
        unit_of(graded.cli["stub"], "rmsnorm")


def test_release_feedback_for_submissions_placed_by_hand(graded, tmp_path):
    """`nbgrader release_feedback` works for a submission placed by hand (no timestamp.txt, no exchange)."""
    feedback(graded, "half", "half")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    os.chmod(exchange, 0o777)
    p = subprocess.run([sys.executable, "-m", "nbgrader", "release_feedback", ASSIGNMENT, "--student", "half",
                        f"--Exchange.root={exchange}"], cwd=graded.root / "half", env=nbgrader_env(graded.root),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stdout + p.stderr, p.stdout[-3000:] + p.stderr[-3000:]
    assert len(list(exchange.rglob("*.html"))) == len(NOTEBOOKS)


def test_feedback_shows_only_the_checks_own_messages(graded):
    """generate_feedback: each check cell shows the check's own message, with no kit internals and no path
    of the grading machine, and the student's checkpoint is not copied into the feedback."""
    d = graded.root / "half"
    pages = feedback(graded, "half", "half")
    assert set(pages) == set(NOTEBOOKS.values())
    fb = d / "feedback" / "half" / ASSIGNMENT
    assert not list(fb.rglob("*.pt")), sorted(str(f) for f in fb.rglob("*"))
    for name, page in pages.items():  # no path of the grading machine anywhere (the "Try it" tracebacks included)
        for leak in (str(KIT), str(graded.root), "/home/student", "/tmp/", "/opt/transformer-kit", "make train",
                     "git add"):
            assert leak not in text(page), (name, leak)
    assert "not implemented yet" in text(pages[NOTEBOOKS["block"]])
    # the attention's failure comes with its pictures (the reference's attention maps, gradient norms)
    assert pages[NOTEBOOKS["attention"]].count("data:image/png;base64,") >= 2
    assert "Attention weights" in text(pages[NOTEBOOKS["attention"]])
    final = text(pages[NOTEBOOKS["final"]])
    assert "runs/final.pt" in final and "not a readable checkpoint" in final
    # every check cell's output (what the feedback shows under it): the check's message and nothing else
    for module in [*MODULES, "final"]:
        checked = 0
        for c in cells(nb_path(d / "autograded" / "half" / ASSIGNMENT, module)):
            if not (meta(c).get("grade") and "nb.check(" in src(c)):
                continue
            checked += 1
            out = "\n".join("".join(o.get("text", "")) + o.get("evalue", "") + "".join(o.get("traceback", []))
                            for o in c.get("outputs", []))
            for leak in (str(KIT), str(graded.root), "Traceback", "File \"", "grading.py", "site-packages", "/tmp/"):
                assert leak not in out, (module, meta(c)["grade_id"], leak, out[:800])
        assert checked, module


def test_validate_within_nbgraders_default_cell_time_limit(graded, tmp_path):
    """A student's Validate button runs without the course's configuration (30 s per cell): the final
    notebook neither trains nor times out there."""
    nb = tmp_path / f"{NOTEBOOKS['final']}.ipynb"
    shutil.copy(nb_path(graded.root / "full" / "submitted" / "full" / ASSIGNMENT, "final"), nb)
    for m in MODULES:
        shutil.copy(nb_path(graded.root / "full" / "submitted" / "full" / ASSIGNMENT, m), tmp_path)
    p = subprocess.run([sys.executable, "-m", "nbgrader", "validate", nb.name, f"{NOTEBOOKS['attention']}.ipynb"],
                       cwd=tmp_path, env=nbgrader_env(graded.root), capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert "Timeout" not in out and "timed out" not in out, out[-3000:]
    assert "runs/final.pt" in out, out[-3000:]  # its check fails for want of a checkpoint, and says so
    assert "nb.check('attention." not in out, out[-3000:]  # every attention check passes (only prose is missing)
