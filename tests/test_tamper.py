"""Malicious submissions: each attack must earn nothing, grading must finish, and the results file
must be the grader's own.

A cheating module is written so that it *only* scores if its attack works: the honest part is
the stub (0 points, "not implemented yet"), and the real code is unlocked by a successful attack.
Attacks that cannot unlock anything (exits, loops, floods) ride on honest code and must cost
only their own module. Several attacks share one grading run where they do not interfere.
"""
import json
import textwrap

import pytest

from conftest import KIT, by_name, copy_solutions, grade


@pytest.fixture(scope="module")
def landlock_abi():
    """The Landlock ABI a fresh process can enforce here (0: none; C-level file access is then
    fenced only by the OS user, as in the Gradescope bundle)."""
    from grader.sandbox import landlock_abi as probe
    return probe()


def module_score(data, module):
    return sum(t["score"] for t in data["tests"] if t["name"].startswith(module + ":"))


def checks_of(data, module):
    return [t for t in data["tests"] if t["name"].startswith(module + ":")]


SPY = '''
import importlib.util
import os
import sys

import torch
import torch.nn as nn

KIT = {kit!r}
FAKES = {fakes!r}
C_LEVEL = {c_level!r}
STOLEN = []  # the attacks that worked: any of them unlocks the real code below


def _attempt(name, fn):
    try:
        fn()
    except BaseException as e:  # refused: exactly what should happen
        print("refused:", name, type(e).__name__, e)
        return
    STOLEN.append(name)


def _import_by_name():
    import solutions.residual  # noqa: F401


def _import_grader():
    import grader.run  # noqa: F401


def _import_lab():
    import lab.model  # noqa: F401


def _import_kit():
    import kit.loader  # noqa: F401


def _load_by_path(rel):
    def go():
        spec = importlib.util.spec_from_file_location("stolen", os.path.join(KIT, rel))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return go


def _read(rel):
    return lambda: open(os.path.join(KIT, rel)).read()


def _list_solutions():
    os.listdir(os.path.join(KIT, "solutions"))


def _write_fake_results():
    for path in FAKES:
        with open(path, "w") as f:
            f.write('{{"score": 100, "max_score": 100, "output": "FAKE", "tests": []}}')


def _spawn():
    import subprocess
    subprocess.run(["cat", os.path.join(KIT, "solutions", "residual.py")])


def _raw_spawn():
    import _posixsubprocess  # noqa: F401


def _c_read():  # C code opens the file itself: the audit hook never sees it, the kernel does
    torch.from_file(os.path.join(KIT, "solutions", "residual.py"), size=64, dtype=torch.uint8)


def _c_write():  # shared=True maps the file read-write: a C-level write anywhere
    for path in FAKES:
        torch.from_file(path + ".c", shared=True, size=64, dtype=torch.uint8).fill_(65)


ATTACKS = [("import solutions", _import_by_name), ("import grader", _import_grader), ("import lab", _import_lab), ("import kit", _import_kit),
           ("solutions by path", _load_by_path("solutions/residual.py")),
           ("grader by path", _load_by_path("grader/compare.py")),
           ("read a reference check", _read("grader/checks/reference/residual.py")),
           ("read a solution", _read("solutions/residual.py")), ("list solutions", _list_solutions),
           ("write fake results", _write_fake_results), ("subprocess", _spawn), ("_posixsubprocess", _raw_spawn)]
if C_LEVEL:
    ATTACKS += [("C-level read", _c_read), ("C-level write", _c_write)]
for _name, _fn in ATTACKS:
    _attempt(_name, _fn)


class Residual(nn.Module):
    def __init__(self, sublayer):
        super().__init__()
        if not STOLEN:
            raise NotImplementedError("Residual.__init__")
        self.sublayer = sublayer

    def forward(self, x, *args, **kwargs):
        if not STOLEN:
            raise NotImplementedError("Residual.forward")
        return x + self.sublayer(x, *args, **kwargs)
'''

# Wrong values, an in-place change of the input, and every comparison in the worker rigged to say "equal".
LIAR = '''
import torch
import torch.nn as nn

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *x, **k: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        x.mul_(3.0)  # in place: the caller's tensor is changed
        return normed.type_as(x) * self.weight * 1.5  # and the values are wrong
'''


def write(folder, **files):
    """The solutions, with some files replaced by the given source."""
    copy_solutions(folder)
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    return folder


def test_spies_and_liars_earn_nothing_and_cannot_forge_the_results(tmp_path, landlock_abi):
    sub = tmp_path / "sub"
    results_json = tmp_path / "results-sub.json"  # where the grader is asked to write its results
    fake_dir = tmp_path / "results"
    fake_dir.mkdir()
    fakes = [str(results_json), str(fake_dir / "results.json")]
    write(sub, residual=SPY.format(kit=str(KIT), fakes=fakes, c_level=bool(landlock_abi)), rmsnorm=LIAR)
    data, out, code = grade(sub, "residual", "rmsnorm", timeout=10, json_path=results_json)

    # the spy: every attack refused, so the real code stayed locked: the stub's 0, check by check
    spy = checks_of(data, "residual")
    assert spy and module_score(data, "residual") == 0, json.dumps(spy, indent=1)
    assert all("not implemented yet" in t["output"] for t in spy), [t["output"] for t in spy]

    # the liar: rigged comparisons inside the worker change nothing: values and in-place are judged here
    tests = by_name(data)
    assert tests["rmsnorm: RMSNorm matches the reference on several shapes, T = 1 and a non-contiguous input"][
        "status"] == "failed"
    inplace = tests["rmsnorm: RMSNorm leaves its input tensor unchanged"]
    assert inplace["status"] == "failed" and "modified in place" in inplace["output"], inplace

    # the results file is the grader's own, and nothing was written where the spy aimed
    assert "FAKE" not in results_json.read_text()
    assert {t["name"].split(":")[0] for t in data["tests"]} == {"residual", "rmsnorm"}
    assert data["score"] == sum(t["score"] for t in data["tests"]) < 25
    assert sorted(p.name for p in fake_dir.iterdir()) == []
    assert not (tmp_path / "results-sub.json.c").exists()
    assert code == 1


def test_exits_endless_loops_and_floods_cost_only_their_own_module(tmp_path):
    sub = write(tmp_path / "sub", residual="import sys\nsys.exit(0)\n" + (KIT / "solutions/residual.py").read_text(),
                attention="while True:\n    pass\n" + (KIT / "solutions/attention.py").read_text())
    # RMSNorm is honest, but changes the global seed, default dtype and grad mode when imported,
    # and prints megabytes at import and on every call: none of that may cost it a point
    rms = (KIT / "solutions/rmsnorm.py").read_text()
    rms = rms.replace("\nimport torch\n", "\nimport torch\ntorch.manual_seed(1234)\n"
                      "torch.set_default_dtype(torch.float64)\ntorch.set_grad_enabled(False)\n"
                      "print('x' * 30_000_000)\n", 1)
    rms = rms.replace("        xf = x.float()\n", "        print('y' * 200_000)\n        xf = x.float()\n", 1)
    assert rms.count("print(") == 2
    (sub / "rmsnorm.py").write_text(rms)
    data, out, code = grade(sub, "residual", "rmsnorm", "attention", timeout=3)

    res, att = checks_of(data, "residual"), checks_of(data, "attention")
    assert all(t["status"] == "failed" and "sys.exit(0) was called" in t["output"] for t in res), res
    assert module_score(data, "rmsnorm") == 15, json.dumps(checks_of(data, "rmsnorm"), indent=1)
    assert att and all(t["status"] == "failed" for t in att)
    timed_out = [t for t in att if "timed out" in t["output"] and "not run" not in t["output"]]
    assert len(timed_out) == 1, [t["output"] for t in att]  # the hang at import cost its limit once
    assert all("not run: importing attention.py already failed" in t["output"] for t in att if t not in timed_out)
    assert code == 1


def test_hard_exits_and_memory_hogs_are_contained(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_MEMORY_MB", "1536")  # the same limit as by default, reached sooner
    hog = "import torch\n_hog = []\nwhile True:\n    _hog.append(torch.ones(1 << 25))\n"
    sub = write(tmp_path / "sub", residual="import os\nos._exit(0)\n" + (KIT / "solutions/residual.py").read_text(),
                rmsnorm=hog + (KIT / "solutions/rmsnorm.py").read_text())
    data, out, code = grade(sub, "residual", "rmsnorm", timeout=10)

    res, rms = checks_of(data, "residual"), checks_of(data, "rmsnorm")
    assert res and all(t["status"] == "failed" for t in res)
    assert "exited with code 0" in res[0]["output"]
    assert all("exited with code 0" in t["output"] for t in res)
    assert rms and all(t["status"] == "failed" for t in rms)
    assert all("memory" in t["output"] for t in rms), [t["output"] for t in rms]
    assert data["score"] == 0 and code == 1


def test_the_worker_fences_itself_with_landlock_where_the_kernel_has_it(landlock_abi):
    if not landlock_abi:
        pytest.skip("this kernel offers no Landlock: C-level file access is fenced only by an OS user "
                    "(python -m grader --user, as in the Gradescope bundle)")
    from grader.protocol import Request
    from grader.sandbox import Sandbox
    with Sandbox(KIT / "solutions", allow_weak=True) as sub:
        reply = sub.run(Request("residual", "Residual"))
        assert reply == {"results": []}
        assert f"Landlock ABI {landlock_abi}" in sub.isolation.describe()
