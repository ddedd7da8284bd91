"""The similarity report (grader/similarity.py): planted copies come first, the report stands alone, every flow has it.

A class of honest submissions (the solutions and the correct alternatives of tests/alternatives, each a different
attention) with planted copies: one with its variables renamed, one with its functions reordered, one sharing
another's final.pt, one with another's weights plus a little noise. The report ranks the planted pairs first and
flags nothing else; it is one HTML file that loads nothing; ``python -m grader similarity`` writes it for a
folder of nbgrader or Gradescope exports, ``python -m grader batch`` beside its CSV. Its look in a real browser is
checked where chromium is installed.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grader import similarity
from kit import checkpoint, syllabus

KIT = Path(__file__).resolve().parents[1]
ALTERNATIVES = KIT / "tests" / "alternatives"
HONEST = {"alice": KIT / "solutions" / "attention.py", "bob": ALTERNATIVES / "attention_einsum.py",
          "carol": ALTERNATIVES / "attention_loop.py", "dave": ALTERNATIVES / "attention_complex.py",
          "erin": ALTERNATIVES / "attention_sdpa.py", "fay": ALTERNATIVES / "attention_sdpa_mask.py",
          "gus": ALTERNATIVES / "attention_float64.py"}
RENAMES = {"q": "query", "k": "key", "v": "value", "x": "hidden", "B": "bsz", "T": "seqlen", "H": "n_heads",
           "cos": "cosine", "sin": "sine", "scores": "logits", "att": "weights", "mask": "causal", "y": "out"}


def renamed(text):
    """The same code with its local names changed, as a student hiding a copy would."""
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{old}\b", new, text)
    return text


def reordered(text):
    """The same code with its top-level functions and classes in the reverse order."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    start = defs[0].lineno - 1 - len(defs[0].decorator_list)
    chunks = ["".join(lines[d.lineno - 1:d.end_lineno]) for d in defs]
    return "".join(lines[:start]) + "\n\n".join(reversed(chunks)) + "\n"


def weights(seed, base=None, noise=0.0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"embed.weight": (65, 48), "blocks.0.attn.q_proj.weight": (48, 48), "norm.weight": (48,)}
    model = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    if base is not None:
        model = {n: base[n] + noise * t for n, t in model.items()}
    return model


def save(model, path):
    checkpoint.save({"model": model, "config": {"hidden_size": 48}, "vocab": "abc", "step": 100}, path)


def make_class(root):
    """The honest class and the planted copies; returns the planted pairs (code, identical file, near weights)."""
    models = {}
    for i, (name, attention) in enumerate(HONEST.items()):
        d = root / name
        d.mkdir(parents=True)
        for f in syllabus.FILES:
            shutil.copy(KIT / "solutions" / f, d / f)
        shutil.copy(attention, d / "attention.py")
        models[name] = weights(i)
        save(models[name], d / "final.pt")
    for copy, of, change in (("hugo", "bob", renamed), ("ivy", "carol", reordered)):
        d = root / copy
        d.mkdir()
        for f in syllabus.FILES:
            text = change((root / of / f).read_text())
            ast.parse(text)
            (d / f).write_text(text)
        save(weights(100 + len(copy)), d / "final.pt")
    shutil.copy(root / "dave" / "final.pt", root / "erin" / "final.pt")  # the same file handed in twice
    save(weights(7, base=models["fay"], noise=1e-3), root / "gus" / "final.pt")  # fay's weights, trained a little
    return {("bob", "hugo"), ("carol", "ivy")}, ("dave", "erin"), ("fay", "gus")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity")
    planted = make_class(root / "class")
    out = root / "report.html"
    code, ckpts = similarity.report(root / "class", out)
    return planted, code, ckpts, out


def test_planted_code_copies_rank_first_and_nothing_else_is_flagged(made):
    (copies, _, _), code, _, _ = made
    top = {(p.a, p.b) for p in code[:len(copies)]}
    assert top == copies, [(p.a, p.b, round(p.score, 2)) for p in code[:5]]
    assert all(p.flagged for p in code[:len(copies)])
    assert not any(p.flagged for p in code[len(copies):]), [(p.a, p.b, p.score) for p in code if p.flagged]
    assert min(p.score for p in code[:2]) > 0.8 > 0.4 > code[2].score


def test_planted_checkpoints_rank_first(made):
    (_, same, near), _, ckpts, _ = made
    assert (ckpts[0].a, ckpts[0].b, ckpts[0].identical) == (*same, True)
    assert (ckpts[1].a, ckpts[1].b, ckpts[1].identical) == (*near, False) and ckpts[1].distance < 0.01
    assert all(not p.near and p.distance > 0.5 for p in ckpts[2:])


def test_the_report_stands_alone_and_is_for_the_instructor(made):
    (copies, same, _), _, _, out = made
    page = out.read_text()
    assert "instructor only" in page and "never show this page to students" in page
    assert not re.search(r"<script|<link|<img|@import|url\(|src=", page, re.I)  # loads nothing, offline
    assert not re.search(r"https?://", page)
    for a, b in [*copies, same]:
        assert a in page and b in page
    assert page.count("<mark>") > 10  # the matching code is marked side by side


def test_the_stubs_text_is_not_the_students(tmp_path):
    """Two submissions that are the stubs with one same small edit do not score on the stub's text."""
    for name in ("s1", "s2", "s3"):
        d = tmp_path / name
        d.mkdir()
        for f in syllabus.FILES:
            shutil.copy(KIT / "exercises" / f, d / f)
    code, _ = similarity.compare_code(similarity.find_submissions(tmp_path))
    assert code == []


def test_exports_are_found_wherever_their_files_are(tmp_path):
    # nbgrader: submitted/<student>/<assignment>/ with notebooks whose %%module cells hold the files
    nb = tmp_path / "submitted" / "alice" / "tier2"
    nb.mkdir(parents=True)
    cells = [{"cell_type": "markdown", "source": "# RMSNorm"},
             {"cell_type": "code", "source": ["%%module rmsnorm.py (part 2 of 2)\n", "    def forward(self, x):\n",
                                              "        return x\n"]},
             {"cell_type": "code", "source": "%%module rmsnorm.py (part 1 of 2)\nclass RMSNorm:\n"}]
    import json
    (nb / "02_rmsnorm.ipynb").write_text(json.dumps({"cells": cells}))
    deep = tmp_path / "submitted" / "bob" / "tier2" / "src"
    deep.mkdir(parents=True)
    shutil.copy(KIT / "solutions" / "rmsnorm.py", deep / "rmsnorm.py")
    shutil.copy(KIT / "solutions" / "residual.py", deep.parent / "residual.py")
    os.symlink(KIT / "solutions" / "attention.py", deep / "attention.py")  # links are not followed
    subs = {s.name: s for s in similarity.find_submissions(tmp_path / "submitted")}
    assert subs["alice"].files == {"rmsnorm.py": "class RMSNorm:\n\n    def forward(self, x):\n        return x\n"}
    assert subs["bob"].where == {"rmsnorm.py": "tier2/src/rmsnorm.py", "residual.py": "tier2/residual.py"}
    # Gradescope: submission_<id>/ folders, names in submission_metadata.yml
    gs = tmp_path / "export"
    (gs / "submission_101").mkdir(parents=True)
    (gs / "submission_metadata.yml").write_text("submission_101:\n  :submitters:\n  - :name: Carol Ng\n"
                                                "    :sid: '7'\n")
    assert [s.name for s in similarity.find_submissions(gs)] == ["submission_101 (Carol Ng)"]


def test_the_command(tmp_path, made):
    root = made[3].parent / "class"
    out = tmp_path / "r.html"
    run = subprocess.run([sys.executable, "-m", "grader", "similarity", str(root), "--out", str(out)], cwd=KIT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "2 pairs of code flagged, 2 pairs of checkpoints" in run.stdout and out.is_file()
    bad = subprocess.run([sys.executable, "-m", "grader", "similarity", str(tmp_path / "nowhere"), "--out",
                          str(out)], cwd=KIT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_batch_writes_the_report_beside_its_csv(tmp_path):
    subs = tmp_path / "subs"
    for name in ("a", "b"):
        (subs / name).mkdir(parents=True)
        for f in syllabus.FILES:
            shutil.copy(KIT / "solutions" / f, subs / name / f)
    csv = tmp_path / "out" / "grades.csv"
    csv.parent.mkdir()
    run = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--csv", str(csv), "--only", "residual",
                          "--jobs", "1", "--allow-weak-sandbox", "--seed", "s"], cwd=KIT, capture_output=True,
                         text=True, timeout=500)
    assert run.returncode == 0, run.stdout + run.stderr
    report = csv.with_name("grades-similarity.html")
    assert report.is_file() and "similarity report (instructor only)" in run.stdout
    assert not any("similarity" in p.name for p in (tmp_path / "out" / "grades-results").iterdir())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here to look at the report")
def test_the_report_renders_in_a_browser(made, tmp_path):
    png = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={png}", "--window-size=1280,1400", made[3].as_uri()],
                   capture_output=True, timeout=120)
    assert png.is_file() and png.stat().st_size > 20000  # a page with tables and code, not a blank one
