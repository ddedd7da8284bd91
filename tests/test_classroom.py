"""The classroom bundles: the student release, the Gradescope autograder, the GitHub Classroom workflow."""
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import FILES, KIT, SOLUTIONS, copy_solutions

POINTS = {"residual": 10, "rmsnorm": 15, "attention": 25, "block": 20, "decoder": 15, "final": 15}
UNITS = ["residual", "rmsnorm", "attention", "block", "decoder"]


def hidden_docstrings():
    """The first line of every hidden check's docstring: none may turn up in the release."""
    import ast
    out = []
    for f in sorted((KIT / "grader" / "checks" / "hidden").glob("test_*.py")):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and ast.get_docstring(node):
                out.append(ast.get_docstring(node).splitlines()[0])
    return out


# -- the student release ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from classroom.release import build
    return build(tmp_path_factory.mktemp("dist") / "student", github=True, quiet=True)


def test_release_holds_no_solutions_hidden_checks_or_kit_tests(release):
    from classroom.release import GIVEN, solution_lines
    from classroom.stubs import generate
    files = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()}
    assert not any(f.startswith(("solutions/", "tests/", "grader/checks/hidden/")) for f in files), sorted(files)
    assert {"Makefile", "README.md", "requirements.txt", ".github/workflows/classroom.yml", "lab/data.py",
            "grader/checks/visible/test_rmsnorm.py"} <= files
    assert {f"exercises/{name}": text for name, text in generate().items()} == \
        {f: (release / f).read_text() for f in files if f.startswith("exercises/")}
    texts = {f: (release / f).read_text(errors="replace") for f in files}
    # no line of any released file is a non-trivial solution line (indentation and comments aside)
    secret = {line for line in solution_lines() if line not in GIVEN}
    assert len(secret) > 30
    found = [(f, no, line) for f, text in texts.items() for no, line in enumerate(text.splitlines(), 1)
             if re.sub(r"\s+#[^'\"]*$", "", line).strip() in secret]
    assert not found, found
    # nor does any hidden check's description, nor diagnose's wrong variants (correct formulas among them)
    hidden = hidden_docstrings()
    assert hidden and not [(f, d) for d in hidden for f, text in texts.items() if d in text]
    assert "def attention(" not in texts["grader/diagnose.py"] and "def standin_block_parts(" in texts[
        "grader/diagnose.py"]


def test_release_ships_the_guides_and_the_experiments_only_when_asked(release, tmp_path):
    from classroom.release import build
    files = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()}
    assert "docs/guide-block.md" in files and "solutions/ANSWERS.md" not in files
    assert not any(f.startswith(("lab/experiments/", "docs/img/")) or f == "lab/variants.py" for f in files)
    assert "experiments:" not in (release / "Makefile").read_text()
    later = build(tmp_path / "later", quiet=True, experiments=True)
    files = {str(p.relative_to(later)) for p in later.rglob("*") if p.is_file()}
    assert {"lab/variants.py", "lab/experiments/gradflow.py", "docs/experiments.md", "docs/img/gradflow.png"} <= files
    assert "experiments:" in (later / "Makefile").read_text()


def test_release_builder_refuses_to_ship_solution_code(tmp_path, monkeypatch):
    from classroom import release as rel
    line = next(iter(rel.solution_lines()))
    (tmp_path / "notes.py").write_text(f"# harmless\n    {line}  # copied\n")
    assert [(f, n) for f, n, _, _ in rel.find_leaks(tmp_path)] == [("notes.py", 2)]
    leaky = dict(rel.generate())
    leaky["rmsnorm.py"] += f"\n\ndef helper(x):\n    {line}\n"
    monkeypatch.setattr(rel, "generate", lambda: leaky)
    with pytest.raises(SystemExit, match="solution code would ship"):
        rel.build(tmp_path / "student", quiet=True)
    assert not (tmp_path / "student").exists()


def test_release_make_check_runs_the_visible_checks_without_solutions(release):
    mine = copy_solutions(release / "mysolution")  # a student who finished: full marks on what is visible
    try:
        p = subprocess.run(["make", "-s", "check", f"PY={sys.executable}", "IMPL=mysolution",
                            "ONLY=" + " ".join(UNITS)], cwd=release, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(mine)
    assert p.returncode == 0, p.stdout + p.stderr
    total = [line for line in p.stdout.splitlines() if line.startswith("TOTAL")][0]
    got, out_of = map(int, total.split()[1].split("/"))
    assert got == out_of and 0 < out_of < sum(POINTS[m] for m in UNITS)  # the visible checks' points only
    assert "registers the sublayer" in p.stdout
    assert not [d for d in hidden_docstrings() if d in p.stdout]


# -- Gradescope ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from classroom.gradescope import build
    tmp = tmp_path_factory.mktemp("gradescope")
    zip_path = build(tmp / "gradescope.zip", quiet=True)
    source = tmp / "source"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(source)
        for info in z.infolist():  # extractall drops the permission bits
            if info.external_attr >> 16:
                os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777)
    return zip_path, source


def autograde(bundle, root, files, **env):
    """Run the bundle's run_autograder with /autograder at ``root``; return results.json."""
    root.mkdir()
    (root / "source").symlink_to(bundle[1])
    (root / "submission").mkdir()
    for name, src in files.items():
        dest = root / "submission" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, tuple):
            dest.symlink_to(src[1])
        elif isinstance(src, Path):
            shutil.copy(src, dest)
        else:
            dest.write_text(src)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "KIT_PYTHON": sys.executable,
           "AUTOGRADER_USER": pwd.getpwuid(os.geteuid()).pw_name, **env}  # the --user path, as oneself
    p = subprocess.run(["bash", str(bundle[1] / "run_autograder")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_bundle_has_what_gradescope_expects(bundle):
    zip_path, source = bundle
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) for i in z.infolist()}
    assert {"setup.sh", "run_autograder", "requirements.txt", "solutions/attention.py",
            "grader/checks/hidden/test_attention.py", "classroom/gradescope.py"} <= names
    assert not any(n.startswith(("tests/", "exercises/", "dist/")) or "__pycache__" in n for n in names)
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR
        assert subprocess.run(["bash", "-n", str(source / script)]).returncode == 0
    setup = (source / "setup.sh").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in setup
    assert "useradd" in setup and "chmod -R go-rwx" in setup


def test_autograder_on_the_solutions_scores_all_but_the_final_check(bundle, tmp_path):
    data = autograde(bundle, tmp_path / "ag", {f: SOLUTIONS / f for f in FILES})
    assert data["score"] == 100 - POINTS["final"] and data["max_score"] == 100
    final = [t for t in data["tests"] if t["name"].startswith("final:")]
    assert final and all(t["status"] == "failed" and "final.pt" in t["output"] for t in final)
    assert "No final.pt in your upload" in data["output"]
    assert all(t["status"] == "passed" for t in data["tests"] if not t["name"].startswith("final:"))
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_due_date"}


def test_autograder_on_the_stubs_scores_zero_and_ignores_symlinks(bundle, tmp_path):
    files = {f"exercises/{f}": KIT / "exercises" / f for f in FILES if f != "residual.py"}
    # residual.py links to the reference: copied by root, it would hand the upload the solution
    files["residual.py"] = ("symlink", bundle[1] / "solutions" / "residual.py")
    data = autograde(bundle, tmp_path / "ag", files, HIDDEN_VISIBILITY="hidden")
    assert data["score"] == 0 and data["max_score"] == 100
    assert "Missing from your upload (their checks score 0): residual.py" in data["output"]
    assert {t["visibility"] for t in data["tests"]} == {"visible", "hidden"}


def test_autograder_on_a_half_done_submission_gives_its_partial_score(bundle, tmp_path):
    root = tmp_path / "ag"
    fake = '{"score": 100, "max_score": 100, "tests": [], "output": "FAKE"}'
    cheat = ("try:\n    open(%r, 'w').write(%r)\nexcept Exception:\n    pass\n"
             % (str(root / "results" / "results.json"), fake))
    files = {f: KIT / "exercises" / f for f in FILES}
    files["residual.py"] = cheat + (SOLUTIONS / "residual.py").read_text()
    files["rmsnorm.py"] = SOLUTIONS / "rmsnorm.py"
    data = autograde(bundle, root, files)
    assert data["score"] == POINTS["residual"] + POINTS["rmsnorm"] and data["max_score"] == 100
    assert "FAKE" not in json.dumps(data)
    per = {}
    for t in data["tests"]:
        per.setdefault(t["name"].split(":")[0], []).append(t["status"])
    assert set(per) == set(POINTS)
    assert all(s == "passed" for m in ("residual", "rmsnorm") for s in per[m])


def test_autograder_always_writes_a_results_file(bundle, tmp_path):
    data = autograde(bundle, tmp_path / "slow", {f: SOLUTIONS / f for f in FILES}, GRADING_TIMEOUT="1")
    assert data["score"] == 0 and data["tests"] == [] and "longer than 1 s" in data["output"]
    data = autograde(bundle, tmp_path / "broken", {f: SOLUTIONS / f for f in FILES},
                     KIT_PYTHON=str(tmp_path / "no-python"))
    assert data["score"] == 0 and "please tell the course staff" in data["output"]
    data = autograde(bundle, tmp_path / "nouser", {f: SOLUTIONS / f for f in FILES},
                     AUTOGRADER_USER="no-such-user-here")
    assert data["score"] == 0 and "misconfigured" in data["output"]
    data = autograde(bundle, tmp_path / "empty", {"notes.txt": "hello"})
    assert data["score"] == 0 and "No exercise files" in data["output"] and "notes.txt" in data["output"]


# -- GitHub Classroom -------------------------------------------------------------------------------

WORKFLOW = KIT / "classroom" / "github" / "classroom.yml"


def grading_steps(flow):
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    return [s for s in steps if s.get("uses", "").startswith("education/autograding-command-grader@")]


def test_workflow_is_one_command_grader_step_per_module_and_the_reporter():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert set(flow["on"]) >= {"push", "repository_dispatch"}
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    graders = grading_steps(flow)
    assert {s["id"]: int(s["with"]["max-score"]) for s in graders} == POINTS
    for s in graders:
        assert s["with"]["test-name"] == s["id"] and int(s["with"]["timeout"]) > 0
        assert f"--only {s['id']}" in s["with"]["command"] and s["with"]["command"].startswith("cd .kit && ")
    fetch = [s for s in steps if s.get("with", {}).get("path") == ".kit"]
    assert fetch and "secrets." in fetch[0]["with"]["token"] and fetch[0]["with"]["persist-credentials"] is False
    reporter = steps[-1]
    assert reporter["uses"].startswith("education/autograding-grading-reporter@")
    assert reporter["with"]["runners"].split(",") == [s["id"] for s in graders]
    for s in graders:
        assert reporter["env"][f"{s['id'].upper()}_RESULTS"].replace(" ", "") == f"${{{{steps.{s['id']}.outputs.result}}}}"


def test_workflow_commands_grade_the_solutions_like_the_runner(tmp_path):
    """Each step's command as the command grader runs it: /bin/sh, the workspace as working directory,
    PATH and HOME only, the instructor's kit in .kit/."""
    ws = tmp_path / "workspace"
    copy_solutions(ws / "exercises")
    for item in ("grader", "lab", "solutions", "requirements.txt"):
        src = KIT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, ws / ".kit" / item)
    corpus = KIT / "data" / "tinyshakespeare.txt"
    if corpus.is_file():
        (ws / ".kit" / "data").mkdir()
        shutil.copy(corpus, ws / ".kit" / "data" / corpus.name)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python").chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path)}
    for step in grading_steps(yaml.safe_load(WORKFLOW.read_text())):
        w = step["with"]
        if w.get("setup-command") and corpus.is_file():  # offline: the corpus is already in place
            subprocess.run(["/bin/sh", "-c", w["setup-command"]], cwd=ws, env=env, check=True, timeout=120,
                           capture_output=True)
        p = subprocess.run(["/bin/sh", "-c", w["command"]], cwd=ws, env=env, capture_output=True, text=True,
                           timeout=600)
        if step["id"] == "final":  # no runs/final.pt committed: the step fails, saying why
            assert p.returncode == 1 and "final.pt" in p.stdout, p.stdout + p.stderr
        else:
            assert p.returncode == 0, p.stdout + p.stderr
            assert f"TOTAL {POINTS[step['id']]}/{POINTS[step['id']]}" in p.stdout
