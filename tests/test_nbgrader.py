"""The nbgrader course (classroom/nbgrader.py, grader/notebook.py), proven with real nbgrader.

The course is built here from the sources (dist/ is never committed), released with
`nbgrader generate_assignment`, and three submissions are autograded with `nbgrader autograde`,
each in its own copy of the course so the three run side by side:

* ``full``: the source notebooks (the solutions): full automatic points on every module notebook;
* ``unfilled``: the release as handed out: 0;
* ``half``: residual and rmsnorm done, attention's RoPE functions only: residual 10, rmsnorm 15, and
  for attention exactly what ``python -m grader`` gives the same code.

The final project's check needs a trained 4 x 256 checkpoint, which no test here trains (half an hour
of CPU): training is switched off (TRANSFORMER_KIT_TRAINING=off), so its 15 automatic points are 0
in every submission, and the test asserts that the check failed for that reason (no checkpoint).

nbgrader comes from requirements-nbgrader.txt; without it the nbgrader tests are skipped.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KIT, SOLUTIONS, grade

from classroom import nbgrader as course
from classroom.notebook import Notebook
from classroom.regions import BEGIN, END, join_parts
from kit.syllabus import MODULES, POINTS, unit

NOTEBOOKS = {u: unit(u).notebook for u in [*MODULES, "final"]}

ASSIGNMENT = course.ASSIGNMENT
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


# ---------------------------------------------------------------------------
# Real nbgrader: release, then autograde three submissions
# ---------------------------------------------------------------------------

def nbgrader_env(root):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs `alembic`
    env.update(TRANSFORMER_KIT=str(KIT), TRANSFORMER_KIT_TRAINING="off",
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"), JUPYTER_DATA_DIR=str(root / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    return env


def fill(release, source, target, which):
    """Copy release notebooks to ``target``, with the solution cells ``which`` ({module: grade ids or None
    for all}) taken from the source notebooks."""
    target.mkdir(parents=True)
    for module in [*MODULES, "final"]:
        nb = json.loads(nb_path(release, module).read_text())
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
    for c in cells(nb_path(course_dir / "autograded" / student / ASSIGNMENT, module)):
        if meta(c).get("grade_id") == grade_id:
            return "\n".join("".join(o.get("text", "")) + o.get("evalue", "") for o in c.get("outputs", []))
    raise KeyError(grade_id)


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
    procs = {}
    for student, which in plans.items():
        d = root / student
        shutil.copytree(base, d)
        fill(release, source, d / "submitted" / student / ASSIGNMENT, which)
        if student == "half":  # a checkpoint in the submission: autograde reads it, feedback must not copy it
            (d / "submitted" / student / ASSIGNMENT / "runs").mkdir()
            (d / "submitted" / student / ASSIGNMENT / "runs" / "final.pt").write_bytes(b"not a checkpoint" * 64)
        log = open(d / "autograde.log", "w")
        procs[student] = (subprocess.Popen([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=d,
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log, d)
    # meanwhile: what the grader itself gives the half-done attention (the same five files)
    half = root / "half-files"
    half.mkdir()
    for m in MODULES:
        shutil.copy((SOLUTIONS if m in ("residual", "rmsnorm") else KIT / "exercises") / f"{m}.py", half / f"{m}.py")
    (half / "attention.py").write_text(course.code_of(
        nb_path(root / "half" / "submitted" / "half" / ASSIGNMENT, "attention").read_text(), "attention"))
    data, _, _ = grade(half, "attention")
    cli_attention = sum(t["score"] for t in data["tests"])
    results = {}
    for student, (proc, log, d) in procs.items():
        code = proc.wait(timeout=1200)
        log.close()
        assert code == 0, (d / "autograde.log").read_text()[-4000:]
        results[student] = scores(d, student)
    return SimpleNamespace(root=root, source=source, release=release, scores=results, cli_attention=cli_attention)


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


def test_feedback_shows_only_the_checks_own_messages(graded):
    """generate_feedback: each check cell shows the check's own message, with no kit internals and no path
    of the grading machine, and the student's checkpoint is not copied into the feedback."""
    import html
    import re
    d = graded.root / "half"
    p = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--student", "half"],
                       cwd=d, env=nbgrader_env(graded.root), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    feedback = d / "feedback" / "half" / ASSIGNMENT
    pages = {f.stem: f.read_text(encoding="utf-8") for f in feedback.glob("*.html")}
    assert set(pages) == set(NOTEBOOKS.values())
    assert not list(feedback.rglob("*.pt")), sorted(str(f) for f in feedback.rglob("*"))

    def text(page):  # what the student reads: no style sheets, no markup
        page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S | re.I)
        return html.unescape(re.sub(r"<[^>]+>", "", page))
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
