"""The course's policy (grader/policy.py): library shortcuts an exercise rules out cost that exercise's points.

The reading: aliases, getattr-built and __dict__-built names, star imports, eval of constant strings and helper
modules are followed; docstrings, comments and the student's own functions of the same name are not uses. The
verdict: with the policy on, the correct alternatives that use a shortcut (tests/alternatives) lose exactly their
unit's points, with a message naming the call, the line and the rule; every other one keeps full marks; with it
off, all get full marks; ``python -m grader`` has it on unless ``--policy off`` or ``KIT_POLICY=off``.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alternatives import ALTERNATIVES, build
from alternatives import HERE as ALTERNATIVES_DIR
from mutants import Grading, copy_solutions

from grader import policy
from kit import syllabus
from kit.outcome import Kind

KIT = Path(__file__).resolve().parents[1]
SHORTCUTS = {"attention_sdpa.py": "attention", "attention_sdpa_mask.py": "attention",
             "rmsnorm_functional.py": "rmsnorm"}


def scan(tmp_path, files, units=None):
    """Findings for a folder holding ``files`` ({name: source}) and the solutions' other files."""
    copy_solutions(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return policy.findings(tmp_path, units)


def names(found, unit):
    return [(f.line, f.name) for f in found.get(unit, [])]


ATTENTION_HEAD = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
"""


@pytest.mark.parametrize("body, name", [
    ("y = F.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention"),
    ("y = torch.nn.functional.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention"),
    ("from torch.nn.functional import scaled_dot_product_attention as sdpa\ny = sdpa(q, k, v)",
     "F.scaled_dot_product_attention"),
    ("from torch.nn import functional as G\ny = G.scaled_dot_product_attention(q, k, v)",
     "F.scaled_dot_product_attention"),
    ("from torch.nn.functional import *\ny = scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention"),
    ('y = getattr(F, "scaled_" + "dot_product_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ('part = "dot_product"\ny = getattr(F, f"scaled_{part}_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ('y = getattr(F, "_".join(["scaled", "dot", "product", "attention"]))(q, k, v)', "F.scaled_dot_product_attention"),
    ('y = torch.nn.functional.__dict__["scaled_dot_product_attention"](q, k, v)', "F.scaled_dot_product_attention"),
    ('y = vars(F)["scaled_dot_product_" + "attention"](q, k, v)', "F.scaled_dot_product_attention"),
    ('y = F.__dict__.get("scaled_dot_product_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ('import importlib\ny = importlib.import_module("torch.nn.functional").scaled_dot_product_attention(q, k, v)',
     "F.scaled_dot_product_attention"),
    ('import sys\ny = sys.modules["torch.nn.functional"].scaled_dot_product_attention(q, k, v)',
     "F.scaled_dot_product_attention"),
    ('from operator import attrgetter\ny = attrgetter("functional.scaled_dot_product_attention")(nn)(q, k, v)',
     "F.scaled_dot_product_attention"),
    ('y = eval("F.scaled_dot_product_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ("y = torch._C._nn.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention"),
    ("fused = F.scaled_dot_product_attention\ny = fused(q, k, v)", "F.scaled_dot_product_attention"),
    ("mha = nn.MultiheadAttention(8, 2)", "nn.MultiheadAttention"),
    ("mha = torch.nn.modules.activation.MultiheadAttention(8, 2)", "nn.MultiheadAttention"),
    ("class Mine(nn.MultiheadAttention):\n    pass", "nn.MultiheadAttention"),
    ("y = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)",
     "torch.ops.aten._scaled_dot_product_flash_attention"),
    ('name = "scaled_dot_product"\nname += "_attention"\ny = getattr(F, name)(q, k, v)',
     "F.scaled_dot_product_attention"),
    ('y = getattr(F, "noitnetta_tcudorp_tod_delacs"[::-1])(q, k, v)', "F.scaled_dot_product_attention"),
    ('y = F.__getattribute__("scaled_dot_product_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ('y = object.__getattribute__(F, "scaled_dot_product_attention")(q, k, v)', "F.scaled_dot_product_attention"),
    ('G = __import__("torch").nn.functional\ny = G.scaled_dot_product_attention(q, k, v)',
     "F.scaled_dot_product_attention"),
    ('exec("from torch.nn.functional import scaled_dot_product_attention as s")\ny = s(q, k, v)',
     "F.scaled_dot_product_attention"),
])
def test_a_shortcut_is_found_however_it_is_named(tmp_path, body, name):
    src = ATTENTION_HEAD + "\n\ndef attend(q, k, v):\n" + textwrap.indent(body, "    ") + "\n    return y\n"
    found = scan(tmp_path, {"attention.py": src})
    first = found["attention"][0]
    assert first.name == name, found
    assert first.function == ("attend.Mine" if "class" in body else "attend")
    assert first.file == "attention.py"
    assert 7 + body.count("\n") - ("class" in body) in {f.line for f in found["attention"]}  # the line that uses it
    assert set(found) == {"attention"}


@pytest.mark.parametrize("body", [
    '"""Unlike F.scaled_dot_product_attention, this one is written out."""\n',  # a docstring names it
    "# y = F.scaled_dot_product_attention(q, k, v)\n",  # a comment
    'note = "F.scaled_dot_product_attention is not used here"\n',  # a string that is never looked up
    "from torch.nn.functional import scaled_dot_product_attention as sdpa\n",  # imported, never used
    "def scaled_dot_product_attention(q, k, v):\n    return q\n\ny = scaled_dot_product_attention(1, 2, 3)\n",
    "y = F.softmax(torch.ones(3), -1)\nz = F.dropout(y, 0.1)\n",  # allowed functions of the same module
])
def test_what_is_not_a_use(tmp_path, body):
    src = body if body.startswith("def ") else ATTENTION_HEAD + body
    assert scan(tmp_path, {"attention.py": src}) == {}


def test_each_unit_is_held_to_its_own_rules_and_helpers_to_their_importers(tmp_path):
    found = scan(tmp_path, {
        "rmsnorm.py": "import torch.nn as nn\nRMSNorm = nn.RMSNorm\n",
        "helper.py": "import torch.nn.functional as F\n\n\ndef fused(q, k, v):\n"
                     "    return F.scaled_dot_product_attention(q, k, v)\n",
        "attention.py": (KIT / "solutions" / "attention.py").read_text() + "\nfrom .helper import fused\n",
        # block.py imports attention.py and rmsnorm.py: their shortcuts are theirs, not the block's
    })
    assert names(found, "rmsnorm") == [(2, "nn.RMSNorm")]
    assert [(f.file, f.line, f.function, f.name) for f in found["attention"]] == [
        ("helper.py", 5, "fused", "F.scaled_dot_product_attention")]
    assert set(found) == {"rmsnorm", "attention"}


def test_a_name_imported_from_a_sibling_file_is_followed(tmp_path):
    found = scan(tmp_path, {
        "rmsnorm.py": (KIT / "solutions" / "rmsnorm.py").read_text()
        + "\nfrom torch.nn.functional import scaled_dot_product_attention as helper  # never used here\n",
        "attention.py": ATTENTION_HEAD + "from .rmsnorm import helper\n\n\ndef attend(q, k, v):\n"
                                         "    return helper(q, k, v)\n"})
    assert set(found) == {"attention"}
    assert found["attention"][0].written == "helper" and found["attention"][0].name == "F.scaled_dot_product_attention"


def test_layers_are_ruled_out_in_the_block_and_decoder(tmp_path):
    found = scan(tmp_path, {"block.py": (KIT / "solutions" / "block.py").read_text()
                            + "\n\nclass Cheat(nn.TransformerEncoderLayer):\n    pass\n",
                            "decoder.py": (KIT / "solutions" / "decoder.py").read_text()
                            + "\n\nstack = nn.TransformerEncoder\n"})
    assert [f.name for f in found["block"]] == ["nn.TransformerEncoderLayer"]
    assert [f.name for f in found["decoder"]] == ["nn.TransformerEncoder"]


def test_a_file_the_grader_cannot_read_counts_as_a_use(tmp_path):
    found = scan(tmp_path, {"rmsnorm.py": "x = 1\n" + "#" * (policy.MAX_SOURCE + 10) + "\n"})
    assert found["rmsnorm"][0].problem and "rmsnorm.py" in found["rmsnorm"][0].message()


def test_the_solutions_the_stubs_and_the_other_alternatives_use_no_shortcut(tmp_path):
    assert policy.findings(KIT / "solutions") == {}
    assert policy.findings(KIT / "exercises") == {}
    for alt in ALTERNATIVES:
        found = policy.findings(build([alt], tmp_path / alt.source[:-3]))
        expected = {SHORTCUTS[alt.source]} if alt.source in SHORTCUTS else set()
        assert set(found) == expected, (alt.source, found)


def test_the_syllabus_declares_the_policy_next_to_each_unit():
    assert syllabus.POLICY == "on"
    for u in syllabus.UNITS:
        assert u.own and u.forbids, u.name
    assert "torch.nn.functional.scaled_dot_product_attention" in syllabus.unit("attention").forbids
    assert "torch.nn.RMSNorm" in syllabus.unit("rmsnorm").forbids
    assert policy.enabled(None) is True and policy.enabled("off") is False and policy.enabled("of") is True
    assert ALTERNATIVES_DIR.is_dir()


# -- the verdict, graded --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One folder with two shortcuts (attention, rmsnorm) and an allowed alternative (block), graded with the
    policy on and off."""
    from grader.run import REFERENCE, grade
    root = tmp_path_factory.mktemp("policy")
    g = Grading(root)
    alts = {a.source: a for a in ALTERNATIVES}
    folder = build([alts["attention_sdpa_mask.py"], alts["rmsnorm_functional.py"], alts["block_rebind.py"]],
                   root / "shortcuts")
    units = ["rmsnorm", "attention", "block"]
    try:
        yield {on: grade(folder, only=units, sandbox=g.submission(folder), reference=REFERENCE, policy=on).results
               for on in (True, False)}
    finally:
        g.close()


def test_with_the_policy_on_a_shortcut_costs_exactly_its_units_points(graded):
    results = graded[True]
    lost = {}
    for r in results:
        lost[r.unit] = lost.get(r.unit, 0) + r.points - r.score
    assert lost == {"rmsnorm": syllabus.POINTS["rmsnorm"], "attention": syllabus.POINTS["attention"], "block": 0}
    for r in results:
        if r.unit in ("rmsnorm", "attention") and r.points > 0:
            assert r.failure.kind is Kind.NOT_ALLOWED
        elif r.unit == "block":
            assert r.passed
    sdpa = next(r for r in results if r.unit == "attention" and r.points > 0).failure
    assert sdpa.hint == ("this exercise asks you to write attention yourself: `F.scaled_dot_product_attention` is not "
                         "allowed here")
    line = next(i for i, text in enumerate((ALTERNATIVES_DIR / "attention_sdpa_mask.py").read_text().splitlines(), 1)
                if "F.scaled_dot_product_attention(" in text)
    assert sdpa.where.file == "attention.py" and sdpa.where.line == line
    assert f"attention.py line {line}" in sdpa.got and "CausalSelfAttention.forward" in sdpa.got
    norm = next(r for r in results if r.unit == "rmsnorm" and r.points > 0).failure
    assert "write RMSNorm yourself: `F.rms_norm` is not allowed here" in norm.hint


def test_with_the_policy_off_the_shortcuts_get_full_marks(graded):
    results = graded[False]
    assert all(r.passed for r in results), [r.title for r in results if not r.passed]


def test_the_command_has_the_policy_on_unless_the_instructor_turns_it_off(tmp_path):
    folder = copy_solutions(tmp_path / "sub")
    (folder / "rmsnorm.py").write_text((ALTERNATIVES_DIR / "rmsnorm_functional.py").read_text())

    def run(*extra, env=None):
        record = tmp_path / f"record{len(extra)}{bool(env)}.json"
        out = subprocess.run([sys.executable, "-m", "grader", "--impl", str(folder), "--only", "rmsnorm", "--no-color",
                              "--record", str(record), *extra], cwd=KIT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "KIT_POLICY": "", **(env or {})})
        data = json.loads(record.read_text())
        return out, sum(r["score"] for r in data["results"]), sum(r["points"] for r in data["results"])

    out, score, total = run()
    assert out.returncode == 1 and score == 0 and total == syllabus.POINTS["rmsnorm"], out.stdout + out.stderr
    assert "`F.rms_norm` is not allowed here" in out.stdout
    for extra, env in ((("--policy", "off"), None), ((), {"KIT_POLICY": "off"})):
        out, score, total = run(*extra, env=env)
        assert out.returncode == 0 and score == total, out.stdout + out.stderr
