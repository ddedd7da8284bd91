"""The kit's layout: one exercise list, dependencies that point one way, generated text that is current."""
import ast
import subprocess
import sys
from pathlib import Path

from conftest import KIT

from kit import syllabus

FLOORS = {"kit": set(), "grader": {"kit"}, "lab": {"kit"}, "classroom": {"kit", "grader", "lab"},
          "exercises": set(), "solutions": set()}
KIT_PACKAGES = {"kit", "grader", "lab", "classroom", "exercises", "solutions", "tests"}


def imports(path):
    """The top-level packages a file imports (relative imports resolved to the file's own)."""
    own = path.relative_to(KIT).parts[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(own if node.level else (node.module or "").split(".")[0])
    return found & KIT_PACKAGES


def test_dependencies_point_one_way():
    wrong = []
    for floor, allowed in FLOORS.items():
        for f in sorted((KIT / floor).rglob("*.py")):
            bad = imports(f) - allowed - {floor}
            if bad:
                wrong.append(f"{f.relative_to(KIT)} imports {', '.join(sorted(bad))}")
    assert not wrong, "\n".join(wrong)


def test_the_worker_and_its_files_import_nothing_of_the_kit():
    """They run in the sandbox from a private copy, loaded by path (grader/sandbox.py)."""
    from grader.sandbox import RUNTIME_FILES
    for name, path in RUNTIME_FILES.items():
        assert not imports(path) - {path.relative_to(KIT).parts[0]}, name
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], name


def test_the_exercise_list_is_written_once():
    """No module of the kit spells out the five file names or the points: they come from kit/syllabus.py."""
    listed = []
    for f in sorted(KIT.glob("*/**/*.py")):
        rel = f.relative_to(KIT)
        if rel.parts[0] in ("tests", ".venv", "dist") or rel == Path("kit/syllabus.py"):
            continue
        text = f.read_text()
        if all(f'"{name}.py"' in text or f"'{name}.py'" in text for name in syllabus.MODULES):
            listed.append(str(rel))
        if '"residual": 10' in text or "'residual': 10" in text:
            listed.append(f"{rel} (points)")
    assert not listed, listed


def test_the_points_of_every_unit_are_the_sum_of_its_checks():
    from classroom.nbgrader import checks_of
    for unit in syllabus.ALL:
        checks = checks_of(unit.name)
        assert checks, unit.name
        assert sum(c.points for c in checks) == unit.points, unit.name
    ids = [c.id for u in syllabus.ALL for c in checks_of(u.name)]
    assert len(ids) == len(set(ids)), "two checks share an id"


def test_generated_text_is_current():
    for cmd in (["-m", "classroom.docs", "--check"], ["-m", "classroom.stubs", "--check"]):
        p = subprocess.run([sys.executable, *cmd], cwd=KIT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr


def test_no_code_reads_the_words_of_a_message():
    """Outcomes are values: only grader/report.py words them, and nothing parses them back."""
    phrases = ("not implemented yet", "your code raised", "not run:", "got:", "likely:", "hint:")
    readers = []
    for f in sorted(KIT.glob("*/**/*.py")):
        rel = f.relative_to(KIT)
        if rel.parts[0] in ("tests", ".venv", "dist") or rel == Path("grader/report.py"):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            # a phrase used as the argument of `in`, startswith or split: reading text back
            if isinstance(node, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn)) for o in node.ops):
                for c in [node.left, *node.comparators]:
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value.strip() in phrases:
                        readers.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("startswith", "split", "partition"):
                for a in node.args:
                    if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.strip() in phrases:
                        readers.append(f"{rel}:{node.lineno}")
    assert not readers, readers


def test_every_claim_of_the_threat_model_names_a_test_that_exists():
    import re
    text = (KIT / "docs" / "threat-model.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    defined = set()
    for f in (KIT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)\(", f.read_text(), re.M))
    assert len(named) >= 15 and not named - defined, sorted(named - defined)


def test_the_python_equivalents_of_make_targets_are_the_makefiles_own():
    """README's table for machines without make: each row runs the module its Makefile target runs."""
    import re
    table = (KIT / "classroom" / "templates" / "platforms.md").read_text()
    make = (KIT / "Makefile").read_text()
    rows = re.findall(r"^\| `make ([a-z-]+)[^`]*` \| `python -m ([a-z_.]+)", table, re.M)
    assert len(rows) >= 5
    for target, module in rows:
        recipe = re.search(rf"^{target}:.*?\n((?:\t.*\n?)+)", make, re.M)
        assert recipe and f"-m {module}" in recipe.group(1), (target, module)
