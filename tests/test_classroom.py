"""The classroom bundles: the student release, the Gradescope autograder, the GitHub Classroom workflow."""
import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
import yaml
from conftest import FILES, KIT, SOLUTIONS, autograde, copy_solutions, mutate
from english import runs

from kit.syllabus import MODULES as UNITS
from kit.syllabus import POINTS, TOTAL

# -- the student release ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from classroom.release import build
    return build(tmp_path_factory.mktemp("dist") / "student", github=True, quiet=True)


def files_of(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_release_holds_no_solutions_kit_tests_or_mistake_formulas(release):
    from classroom.release import GIVEN, solution_lines
    from classroom.stubs import generate
    files = files_of(release)
    assert not any(f.startswith(("solutions/", "tests/")) for f in files), sorted(files)
    assert "grader/diagnose/variants.py" not in files and "grader/measure.py" not in files
    assert {"Makefile", "README.md", "requirements.txt", ".github/workflows/classroom.yml", "lab/data.py",
            "grader/checks/properties/rmsnorm.py", "grader/checks/reference/rmsnorm.py",
            "grader/snapshots/published.pack", "data/tinyshakespeare.txt", "classroom/notebook/__init__.py"} <= files
    assert {f"exercises/{name}": text for name, text in generate().items()} == \
        {f: (release / f).read_text() for f in files if f.startswith("exercises/")}
    # no line of any released text file is a non-trivial solution line (indentation and comments aside)
    secret = {line for line in solution_lines() if line not in GIVEN}
    assert len(secret) > 30
    found = []
    for f in files:
        try:
            text = (release / f).read_text()
        except UnicodeDecodeError:
            continue
        found += [(f, no, line) for no, line in enumerate(text.splitlines(), 1)
                  if re.sub(r"\s+#[^'\"]*$", "", line).strip() in secret]
    assert not found, found
    # nor do the recorded reference answers hold one (the builder scans every string of the snapshot)
    from grader.snapshot import Snapshot
    snap = Snapshot.load(path=release / "grader" / "snapshots" / "published.pack")
    assert snap.runs and snap.templates and snap.variant_sets


def test_release_ships_the_guides_and_the_experiments_code_only_when_asked(release, tmp_path):
    from classroom.release import build
    files = files_of(release)
    assert {"docs/guide-block.md", "docs/experiments.md", "BENCHMARKS.md"} <= files
    assert "solutions/ANSWERS.md" not in files
    assert not any(f.startswith("lab/experiments/") or f == "lab/variants.py" for f in files)
    assert "lab.experiments" not in (release / "Makefile").read_text()  # the target only says it comes later
    later = build(tmp_path / "later", quiet=True, experiments=True)
    files = files_of(later)
    assert {"lab/variants.py", "lab/experiments/gradflow.py", "docs/experiments.md", "docs/img/gradflow.png"} <= files
    assert "-m lab.experiments" in (later / "Makefile").read_text()


def test_release_readme_lists_the_points_of_every_unit(release):
    readme = (release / "README.md").read_text()
    for unit, points in POINTS.items():
        row = next((line for line in readme.splitlines() if line.startswith("|") and
                    (f"`{unit}.py`" in line or (unit == "final" and "final project" in line))), None)
        assert row is not None and row.rstrip().endswith(f"| {points} |"), (unit, row)


def test_release_builder_refuses_to_ship_solution_code(tmp_path, monkeypatch):
    from classroom import release as rel
    line = next(iter(rel.solution_lines()))
    (tmp_path / "notes.py").write_text(f"# harmless\n    {line}  # copied\n")
    assert [(f, n) for f, n, _, _ in rel.find_leaks(tmp_path)] == [("notes.py", 2)]
    leaky = dict(rel.generate())
    leaky["rmsnorm.py"] += f"\n\ndef helper(x):\n    {line}\n"
    monkeypatch.setattr(rel, "generate", lambda **kw: leaky)
    with pytest.raises(rel.ReleaseError, match="solution code would ship"):
        rel.build(tmp_path / "student", quiet=True)
    assert not (tmp_path / "student").exists()


def release_check(release, impl):
    return subprocess.run(["make", "-s", "check", f"PY={sys.executable}", f"IMPL={impl}", "ONLY=" + " ".join(UNITS)],
                          cwd=release, capture_output=True, text=True, timeout=600)


def test_release_make_check_runs_every_check_against_the_recorded_reference(release):
    mine = copy_solutions(release / "mysolution")  # a student who finished
    try:
        p = release_check(release, "mysolution")
    finally:
        shutil.rmtree(mine)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"TOTAL {TOTAL - POINTS['final']}/{TOTAL - POINTS['final']}" in p.stdout, p.stdout
    assert "the grade runs the same checks on other inputs" in p.stdout
    p = release_check(release, "exercises")
    # a failed check is the grade, not an error of the command: make fails only when nothing could be graded
    assert p.returncode == 0 and f"TOTAL 0/{TOTAL - POINTS['final']}" in p.stdout, p.stdout + p.stderr
    assert "not implemented yet: RMSNorm.__init__" in p.stdout
    p = release_check(release, "no-such-folder")
    assert p.returncode != 0 and "no-such-folder: no such folder" in p.stderr, p.stderr


def test_release_make_check_names_a_mistake_as_the_full_grader_does(release):
    from conftest import mutate
    wrong = mutate(release / "wrong", "rmsnorm.py", "torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
                   "torch.rsqrt(xf.pow(2).mean(-1, keepdim=True)) + self.eps")
    try:
        p = release_check(release, "wrong")
    finally:
        shutil.rmtree(wrong)
    assert p.returncode == 0  # graded: the failure is in the report, not in the exit status of make
    assert "likely:   eps is added after the reciprocal square root" in p.stdout, p.stdout


# -- Gradescope ---------------------------------------------------------------------------------------

def test_bundle_has_what_gradescope_expects(bundle):
    zip_path, source, seed_file = bundle
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) for i in z.infolist()}
    assert {"setup.sh", "run_autograder", "requirements.txt", "solutions/attention.py", "kit/syllabus.py",
            "grader/checks/reference/attention.py", "grader/diagnose/variants.py", "classroom/gradescope.py",
            "data/tinyshakespeare.txt", "grading_seed"} <= names
    assert not any(n.startswith(("tests/", "exercises/", "dist/")) or "__pycache__" in n for n in names)
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR
        assert subprocess.run(["bash", "-n", str(source / script)]).returncode == 0
    setup = (source / "setup.sh").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup and "bubblewrap" in setup
    assert "useradd" in setup and "chmod -R go-rwx" in setup and "cannot run" in setup
    # a new seed, kept beside the bundle for the instructor, and in it for the gradings
    assert seed_file.is_file() and stat.S_IMODE(seed_file.stat().st_mode) == 0o600
    assert (source / "grading_seed").read_text() == seed_file.read_text()


def test_autograder_on_the_solutions_scores_all_but_the_final_check(bundle, tmp_path):
    data = autograde(bundle, tmp_path / "ag", {f: SOLUTIONS / f for f in FILES})
    assert data["score"] == TOTAL - POINTS["final"] and data["max_score"] == TOTAL
    final = [t for t in data["tests"] if t["name"].startswith("final:")]
    assert final and all(t["status"] == "failed" and "final.pt" in t["output"] for t in final)
    assert "No final.pt in your upload" in data["output"]
    assert all(t["status"] == "passed" for t in data["tests"] if not t["name"].startswith("final:"))
    assert {t["visibility"] for t in data["tests"]} == {"visible"}  # while the assignment is open, by default


def test_autograder_on_the_stubs_scores_zero_and_ignores_symlinks(bundle, tmp_path):
    files = {f"exercises/{f}": KIT / "exercises" / f for f in FILES if f != "residual.py"}
    # residual.py links to the reference: copied by root, it would hand the upload the solution
    files["residual.py"] = ("symlink", bundle[1] / "solutions" / "residual.py")
    data = autograde(bundle, tmp_path / "ag", files, REFERENCE_VISIBILITY="hidden")
    assert data["score"] == 0 and data["max_score"] == TOTAL
    assert "Missing from your upload (their checks score 0): residual.py" in data["output"]
    assert {t["visibility"] for t in data["tests"]} == {"visible", "hidden"}
    hidden = sum(t["max_score"] for t in data["tests"] if t["visibility"] == "hidden")
    assert hidden > 0 and f"{hidden} of the {TOTAL} points are in checks never shown here" in data["output"]


def test_autograder_on_a_half_done_submission_gives_its_partial_score(bundle, tmp_path):
    root = tmp_path / "ag"
    fake = '{"score": 100, "max_score": 100, "tests": [], "output": "FAKE"}'
    cheat = ("try:\n    open(%r, 'w').write(%r)\nexcept Exception:\n    pass\n"
             % (str(root / "results" / "results.json"), fake))
    files = {f: KIT / "exercises" / f for f in FILES}
    files["residual.py"] = cheat + (SOLUTIONS / "residual.py").read_text()
    files["rmsnorm.py"] = SOLUTIONS / "rmsnorm.py"
    data = autograde(bundle, root, files)
    assert data["score"] == POINTS["residual"] + POINTS["rmsnorm"] and data["max_score"] == TOTAL
    assert "FAKE" not in json.dumps(data)
    per = {}
    for t in data["tests"]:
        per.setdefault(t["name"].split(":")[0], []).append(t["status"])
    assert set(per) == set(POINTS)
    assert all(s == "passed" for m in ("residual", "rmsnorm") for s in per[m])
    # the first failed attention check carries the report's pictures, as HTML (the others stay text)
    html = [t for t in data["tests"] if t.get("output_format") == "html"]
    assert len(html) == 1 and html[0]["name"].startswith("attention") and "data:image/png;base64," in html[0]["output"]
    assert html[0]["output"].startswith("<pre>checked:")


def test_autograder_always_writes_a_results_file(bundle, tmp_path):
    data = autograde(bundle, tmp_path / "slow", {f: SOLUTIONS / f for f in FILES}, rc=1, GRADING_TIMEOUT="1")
    assert data["score"] == 0 and data["tests"] == [] and "longer than 1 s" in data["output"]
    data = autograde(bundle, tmp_path / "broken", {f: SOLUTIONS / f for f in FILES},
                     rc=127, KIT_PYTHON=str(tmp_path / "no-python"))
    assert data["score"] == 0 and "please tell the course staff" in data["output"]
    data = autograde(bundle, tmp_path / "nouser", {f: SOLUTIONS / f for f in FILES},
                     rc=1, AUTOGRADER_USER="no-such-user-here")
    assert data["score"] == 0 and "misconfigured" in data["output"]
    data = autograde(bundle, tmp_path / "empty", {"notes.txt": "hello"})
    assert data["score"] == 0 and "No exercise files" in data["output"] and "notes.txt" in data["output"]


def test_a_bundle_built_in_chinese_grades_in_chinese_with_the_same_scores(bundle, tmp_path):
    """`--lang zh` (make gradescope LANG=zh): the bundle's locale/default says zh, and results.json speaks it: the
    notes, the checks' names and outputs have no English sentence outside code, and every score is the English
    bundle's for the same mutated submission."""
    from classroom.gradescope import build
    zip_path, _ = build(tmp_path / "zh" / "gradescope.zip", quiet=True, lang="zh", seed=bundle[2].read_text().strip())
    source = tmp_path / "zh" / "source"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(source)
        for info in z.infolist():  # extractall drops the permission bits
            if info.external_attr >> 16:
                os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777)
    assert (source / "locale" / "default").read_text() == "zh\n"
    assert not (bundle[1] / "locale" / "default").exists()  # the English bundle: none
    wrong = mutate(tmp_path / "wrong", "rmsnorm.py", "torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
                   "1 / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)")
    files = {**{f: wrong / f for f in FILES}, "notes.txt": "my notes"}
    en = autograde(bundle, tmp_path / "en", files)
    zh = autograde((zip_path, source), tmp_path / "ag-zh", files, KIT_LANG="")  # the bundle's language decides
    assert "No final.pt in your upload" in en["output"] and "Not graded" in en["output"]
    assert (zh["score"], zh["max_score"]) == (en["score"], en["max_score"]) < (TOTAL, TOTAL)
    assert [(t["score"], t["max_score"], t["status"]) for t in zh["tests"]] == \
        [(t["score"], t["max_score"], t["status"]) for t in en["tests"]]
    assert "评分用时" in zh["output"] and "notes.txt" in zh["output"] and not runs(zh["output"]), zh["output"]
    failed = [t for t in zh["tests"] if t["status"] == "failed"]
    assert {t["name"].split(":")[0] for t in failed} == {"rmsnorm", "final"}
    for t in zh["tests"]:
        shown = re.sub(r"<[^>]*>", " ", t["output"]) if t.get("output_format") == "html" else t["output"]
        assert not runs(t["name"]) and not runs(shown), (t["name"], runs(t["name"]), runs(shown))
    assert any("期望" in t["output"] for t in failed)
    # the fallback run_autograder writes itself where the kit's Python cannot start: in the bundle's language too
    broken = autograde((zip_path, source), tmp_path / "zh-broken", files, rc=127, KIT_LANG="",
                       KIT_PYTHON=str(tmp_path / "no-python"))
    assert broken["score"] == 0 and "退出状态 127" in broken["output"] and not runs(broken["output"]), broken


# -- GitHub Classroom -------------------------------------------------------------------------------

def workflow():
    from classroom.github import workflow as text
    return text()


def test_workflow_grades_once_and_hands_the_checks_to_the_reporter():
    flow = yaml.safe_load(workflow())
    assert isinstance(flow["on"], dict) and set(flow["on"]) >= {"push", "repository_dispatch", "workflow_dispatch"}
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    fetch = [s for s in steps if s.get("with", {}).get("path") == ".kit"]
    assert fetch and "secrets." in fetch[0]["with"]["token"] and fetch[0]["with"]["persist-credentials"] is False
    grading = next(s for s in steps if s.get("id") == "grading")
    assert "--classroom" in grading["run"] and "GITHUB_OUTPUT" in grading["run"]
    assert "secrets.GRADER_SEED" in grading["env"]["GRADER_SEED"]
    reporter = steps[-1]
    assert reporter["uses"].startswith("classroom-resources/autograding-grading-reporter@")
    assert reporter["with"]["runners"] == "grading"
    assert reporter["env"]["GRADING_RESULTS"].replace(" ", "") == "${{steps.grading.outputs.result}}"


def reporter_totals(payload):
    """What classroom-resources/autograding-grading-reporter computes from one runner's results (its
    notify-classroom.js: the tests' scores summed, the runner's max_score; status 'fail'/'error' fails the job)."""
    return sum(t["score"] for t in payload["tests"]), payload["max_score"], payload["status"]


def test_workflow_grading_step_gives_the_graders_total(tmp_path):
    """The grading step's script as the runner runs it (bash, the workspace as working directory, the kit in
    .kit/): the reporter's total is the grader's, partial credit per check."""
    ws = tmp_path / "workspace"
    copy_solutions(ws / "exercises")
    wrong = ws / "exercises" / "rmsnorm.py"  # one 2-point mistake: eps outside the square root
    wrong.write_text(wrong.read_text().replace("torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
                                               "1 / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)"))
    for item in ("grader", "kit", "lab", "solutions", "requirements.txt", "data"):
        src = KIT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, ws / ".kit" / item,
                                                           **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                              if src.is_dir() else {}))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python").chmod(0o755)
    out = tmp_path / "github_output"
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path),
           "GITHUB_OUTPUT": str(out), "GRADER_SEED": "the-course-seed"}
    step = next(s for s in yaml.safe_load(workflow())["jobs"]["run-autograding-tests"]["steps"]
                if s.get("id") == "grading")
    p = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    line = next(x for x in out.read_text().splitlines() if x.startswith("result="))
    payload = json.loads(base64.b64decode(line[len("result="):]))
    score, max_score, status = reporter_totals(payload)
    assert max_score == TOTAL and status == "fail"
    lost = [t for t in payload["tests"] if t["status"] != "pass" and t["max_score"] > 0]
    # the final check (no runs/final.pt committed) and the eps check only: the rest of RMSNorm scores
    assert {t["name"].split(":")[0] for t in lost} == {"rmsnorm", "final"}, [t["name"] for t in lost]
    assert score == TOTAL - POINTS["final"] - sum(t["max_score"] for t in lost if t["name"].startswith("rmsnorm"))
    assert score > TOTAL - POINTS["final"] - POINTS["rmsnorm"]  # partial credit, not all or nothing per unit
    final = next(t for t in lost if t["name"].startswith("final"))
    assert "git add -f runs/final.pt" in final["message"]


def release_links(root):
    """(file, target) of every relative link and image in the release's Markdown and notebooks."""
    import re
    out = []
    for f in sorted(root.rglob("*")):
        if f.suffix not in (".md", ".ipynb") or not f.is_file():
            continue
        text = f.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<img [^>]*src=\"([^\"]+)\"", text):
            if not re.match(r"[a-z]+:|#", target):
                out.append((f, target.split("#")[0]))
    return out


@pytest.mark.parametrize("experiments", [False, True])
def test_every_link_in_the_release_resolves_inside_it(release, tmp_path, experiments):
    import re
    root = release
    if experiments:
        from classroom.release import build
        root = build(tmp_path / "later", quiet=True, experiments=True)
    links = release_links(root)
    assert len(links) > 10
    broken = [(str(f.relative_to(root)), t) for f, t in links if not (f.parent / t).resolve().is_relative_to(
        root.resolve()) or not (f.parent / t).exists()]
    assert not broken, broken
    # and every `make TARGET` the release's text mentions is a target of its Makefile
    # (BENCHMARKS.md records the full kit's runs, and says so on top)
    targets = set(re.findall(r"^([a-z][a-z-]*):", (root / "Makefile").read_text(), re.M))
    said = set()
    for f in root.rglob("*.md"):
        if f.name != "BENCHMARKS.md":
            said |= set(re.findall(r"`make ([a-z][a-z-]*)", f.read_text(encoding="utf-8")))
    assert said and not said - targets, sorted(said - targets)
    assert "not this release's" in (root / "BENCHMARKS.md").read_text()
    if not experiments:
        p = subprocess.run(["make", "-s", "experiments"], cwd=root, capture_output=True, text=True)
        assert p.returncode != 0 and "later release" in p.stderr + (root / "docs" / "experiments.md").read_text()
