"""Malicious submissions: each attack must earn nothing, grading must finish, and the results file
must be the grader's own.

A cheating module is written so that it *only* scores if its attack works: the honest part is
the stub (0 points, "not implemented yet"), and the real code is unlocked by a successful attack.
Attacks that cannot unlock anything (exits, loops, floods) ride on honest code and must cost
only their own module. Several attacks share one grading run where they do not interfere.
"""
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import FILES, KIT, autograde, by_name, copy_solutions, grade, train_periodic

from kit.syllabus import MODULES, POINTS, TOTAL


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


# A worker taken over: submitted code replaces the function that answers the grader's requests (it lives
# in the same process), so every answer after the first is whatever the attack makes up. The parent must
# fail every check it cannot verify: nothing here computes what the checks ask for.
HIJACK = r'''
import sys as _hj_sys

_hj_main = _hj_sys.modules.get("__main__")
if _hj_main is not None and hasattr(_hj_main, "execute") and not getattr(_hj_main, "_hijacked", False):
    _hj_main._hijacked = True
    import torch as _hj_torch

    _HJ_MODE = __MODE__

    def _hj_shaped(req):
        """Well-formed and wrongly shaped: every entry the request asks for, every tensor a single zero."""
        out = {}
        if req.get("init") is not None:
            out["keys"] = {}
        for w in req.get("want") or []:
            out[w] = {} if w == "params" else {"modules": [], "params": []}
        if req.get("attrs"):
            out["attrs"] = {a: None for a in req["attrs"]}
        out["results"] = []
        for c in req.get("calls") or []:
            n = len(c.get("args") or [])
            r = {"output": _hj_torch.zeros(1), "inputs_after": [None] * n}
            if c.get("grad") is not None:
                r["input_grads"], r["param_grads"] = [None] * n, {}
            out["results"].append(r)
        return out

    def _hj_noise(req):
        """Plausible: outputs and gradients shaped like the inputs, inputs sent back untouched, random values."""
        out = _hj_shaped(req)
        for c, r in zip(req.get("calls") or [], out["results"]):
            args = c.get("args") or []
            tensors = [a for a in args if isinstance(a, _hj_torch.Tensor)]
            if tensors:
                r["output"] = _hj_torch.randn(tensors[0].shape)
                r["inputs_after"] = [a if isinstance(a, _hj_torch.Tensor) else None for a in args]
                if "input_grads" in r:
                    r["input_grads"] = [_hj_torch.randn(a.shape) if isinstance(a, _hj_torch.Tensor) else None
                                        for a in args]
        return out

    def _hj_lookahead(req):
        """Logits that read the next character off the window itself: a perfect, non-causal 'model'."""
        out = _hj_noise(req)
        if req.get("target") == "TransformerLM" and req.get("init"):
            vocab = req["init"]["args"][0]
            for c, r in zip(req.get("calls") or [], out["results"]):
                x = c["args"][0]
                logits = _hj_torch.zeros(*x.shape, vocab)
                logits.scatter_(-1, x.roll(-1, dims=-1).unsqueeze(-1), 30.0)
                r["output"] = logits
            out["results"] = out["results"][:1]  # one batch looks perfect, and nothing comes for the rest
        return out

    def _hj_replay(req):
        """The recorded reference's answer to this very request, where the release holds one."""
        hit = _HJ_RUNS.get(_hj_digest({k: v for k, v in req.items() if k != "threads"}))  # the snapshot's key
        if hit is None:
            return _hj_noise(req)
        out = dict(hit)
        if "results" in out:
            out["results"] = [r if "error" in r else dict(r, inputs_after=[
                a if isinstance(a, _hj_torch.Tensor) else None for a in c.get("args") or []])
                for c, r in zip(req.get("calls") or [], out["results"])]
        return out

    def _hj_forged(req, ctx, on_imported=None):
        if _HJ_MODE == "empty":
            return {"results": []}
        if _HJ_MODE == "extra":
            out = _hj_noise(req)
            out["results"] = out["results"] + [{"output": None, "inputs_after": []}]
            return out
        return {"shaped": _hj_shaped, "noise": _hj_noise, "lookahead": _hj_lookahead, "replay": _hj_replay}[
            _HJ_MODE](req)

    if _HJ_MODE == "replay":
        import base64 as _hj_b64
        _hj_ns = {}
        exec(__PACK_SOURCE__, _hj_ns)
        exec(__DIGEST_SOURCE__, _hj_ns)
        _hj_digest = _hj_ns["digest"]
        _HJ_RUNS = _hj_ns["unpack"](_hj_b64.b64decode(__SNAPSHOT__), 1 << 30)["runs"]
    _hj_main.execute = _hj_forged
'''


def hijack(mode, snapshot=None):
    """The attack's code for ``mode`` (``snapshot``: the bytes of a recorded reference, for "replay")."""
    import inspect

    import grader.snapshot
    import kit.tensorpack
    return (HIJACK.replace("__MODE__", repr(mode))
            .replace("__PACK_SOURCE__", repr(inspect.getsource(kit.tensorpack)))
            .replace("__DIGEST_SOURCE__", repr("import hashlib\n" + inspect.getsource(grader.snapshot.digest)))
            .replace("__SNAPSHOT__", repr(base64.b64encode(snapshot or b"").decode())))


def hijacked(folder, mode, base=KIT / "exercises", snapshot=None):
    """``base``'s five files, each starting with the attack (the first one imported installs it)."""
    folder.mkdir(parents=True)
    code = hijack(mode, snapshot)
    for f in FILES:
        (folder / f).write_text(code + "\n" + (Path(base) / f).read_text())
    return folder


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The reference's answers on the published inputs, as the student release ships them."""
    from grader.snapshot import record
    path = tmp_path_factory.mktemp("snapshot") / "published.pack"
    record(path=path)
    return path.read_bytes()


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


# -- answers the parent did not get from the submission's code ---------------------------------------

def all_failed(data, scored_only=False):
    """The names of the checks that did not fail (``scored_only``: among those worth points)."""
    return [t["name"] for t in data["tests"] if t["status"] != "failed" and (t["max_score"] or not scored_only)]


@pytest.mark.parametrize("mode", ["empty", "extra", "shaped", "noise"])
def test_a_worker_taken_over_earns_nothing_it_did_not_compute(tmp_path, mode):
    """Answers with no results, one result too many, wrongly shaped data, or plausible noise: every check
    fails, as it does for the untouched stubs (noise of the right shape passes the 0-point shape checks, as
    code returning torch.randn(x.shape) would)."""
    data, out, code = grade(hijacked(tmp_path / "sub", mode), *MODULES)
    assert code == 1 and data["score"] == 0, [(t["name"], t["score"]) for t in data["tests"] if t["score"]]
    assert not all_failed(data, scored_only=mode == "noise"), all_failed(data)
    assert len(data["tests"]) > 40


def test_replayed_reference_answers_count_only_on_the_published_inputs(tmp_path, published):
    """The release ships the reference's answers on the published inputs: replaying them passes the desk's
    checks (the student fools only themself) and nothing where a course grades, on inputs of its own."""
    sub = hijacked(tmp_path / "sub", "replay", snapshot=published)
    # the attack's files hold the 4 MB snapshot: past what the course's rules read (grader/policy.py), which would
    # take the points anyway; with the rules off the replay itself is what is tested
    desk, _, _ = grade(sub, *MODULES, extra=["--policy", "off"])
    assert desk["score"] >= 0.6 * (TOTAL - POINTS["final"]), desk["score"]  # the attack is real
    graded, out, code = grade(sub, *MODULES, extra=["--untrusted", "--allow-weak-sandbox"])
    assert code == 1 and graded["score"] == 0, [(t["name"], t["score"]) for t in graded["tests"] if t["score"]]
    assert not all_failed(graded, scored_only=True)  # unrecorded requests get noise: see above


def test_batch_and_gradescope_score_taken_over_workers_as_the_stubs(tmp_path, published, bundle):
    subs = tmp_path / "submissions"
    hijacked(subs / "empty", "empty")
    hijacked(subs / "replay", "replay", snapshot=published)
    hijacked(subs / "noise", "noise")
    out = tmp_path / "grades.csv"
    p = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--csv", str(out), "--jobs", "1",
                        "--only", *MODULES, "--allow-weak-sandbox"], cwd=KIT, capture_output=True, text=True,
                       timeout=900)
    import csv
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    assert sorted(rows) == ["empty", "noise", "replay"], p.stderr
    assert all((r["status"], r["total"]) == ("graded", "0") for r in rows.values()), rows
    seed = tmp_path / "grades-seed.txt"  # never the published inputs: a secret kept for the reruns
    assert seed.is_file() and (seed.stat().st_mode & 0o077) == 0 and len(seed.read_text().strip()) >= 32

    replay = (subs / "replay" / "residual.py").read_text()
    files = {f: (subs / "replay" / f) for f in FILES}
    data = autograde(bundle, tmp_path / "ag", files)
    assert data["score"] == 0 and data["max_score"] == TOTAL, data["output"]
    assert "replay" in replay and not all_failed(data, scored_only=True)


def test_no_check_passes_without_comparing_a_value(tmp_path):
    """Every check compares at least one value: with the counting switched off (as a check that compared
    nothing would leave it), the solutions pass nothing."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(KIT)!r})
        import grader.compare
        grader.compare.compared = lambda n=1: None
        from grader.run import grade
        from kit.outcome import Kind
        g = grade({str(KIT / "solutions")!r}, only={list(MODULES)!r}, allow_weak=True)
        print(json.dumps([[r.check, r.passed, r.failure.kind.name if r.failure else None] for r in g.results]))
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=KIT, capture_output=True, text=True, timeout=600)
    results = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(results) > 40
    assert all(not passed and kind == "GRADER_ERROR" for _, passed, kind in results), \
        [c for c, passed, kind in results if passed or kind != "GRADER_ERROR"]


# -- the final check -----------------------------------------------------------------------------------

FINAL = "final: Your trained model: training-split perplexity < 2.5 on TinyShakespeare, causal, the curriculum's 4 x 256"


def final_of(folder, checkpoint, corpus, *extra):
    data, out, code = grade(folder, "final", extra=["--checkpoint", str(checkpoint), "--corpus", str(corpus), *extra])
    return by_name(data)[FINAL], out


def test_final_check_cannot_be_forged_by_the_worker(tmp_path, trained):
    corpus, good = trained
    honest, _ = final_of(KIT / "solutions", good, corpus)
    assert honest["score"] == 15, honest["output"]  # the weights pass: what follows is the attack alone
    stubs, _ = final_of(KIT / "exercises", good, corpus)
    assert stubs["score"] == 0
    # look-ahead logits (each position shown the next character) for one batch, nothing for the rest
    forged, _ = final_of(hijacked(tmp_path / "lookahead", "lookahead"), good, corpus)
    assert forged["score"] == 0 and forged["status"] == "failed", forged["output"]
    # honest code, a short run's weights, and a worker that claims perfect logits once its first (honest) answer
    # has installed the attack: that one answer (the causality probe and the sampled windows) is all the check asks
    # of the worker, and the perplexity is the grader's own, from the weights
    _, short = train_periodic(tmp_path, KIT / "solutions", 2, "short")
    forged, _ = final_of(hijacked(tmp_path / "lookahead-honest", "lookahead", base=KIT / "solutions"), short, corpus)
    assert forged["score"] == 0 and forged["status"] == "failed", forged["output"]


def checkpoint_like(tmp_path, name, good, change):
    """``good``'s checkpoint, its state changed by ``change(state)``, written in the kit's format."""
    from kit import checkpoint
    state = checkpoint.load(good)
    change(state)
    state.pop("format", None)
    path = tmp_path / f"{name}.pt"
    checkpoint.save(state, path)
    return path


def test_a_checkpoint_that_is_not_the_curriculums_model_scores_zero(tmp_path, trained):
    import zipfile

    import torch

    from kit.checkpoint import CheckpointError, load, read_model
    corpus, good = trained
    expected = {k: tuple(v.shape) for k, v in load(good)["model"].items()}
    for name, change in {  # refused on reading, before any weight is used
        "extra": lambda s: s["model"].update(extra=torch.zeros(3)),
        "missing": lambda s: s["model"].pop("decoder.norm.weight"),
        "reshaped": lambda s: s["model"].update({"decoder.norm.weight": torch.ones(7)}),
        "integer": lambda s: s["model"].update({"decoder.norm.weight": torch.ones(256, dtype=torch.int64)}),
    }.items():
        with pytest.raises(CheckpointError, match="curriculum's model|not float32"):
            read_model(checkpoint_like(tmp_path, name, good, change), expected)
    # and end to end: the model an empty dict, an untied head, the kit's older (torch.save) format
    empty = checkpoint_like(tmp_path, "empty", good, lambda s: s.update(model={}))
    untied = checkpoint_like(tmp_path, "untied", good, lambda s: s["model"].update(
        {"lm_head.weight": s["model"]["lm_head.weight"].clone() + 1}))
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": "transformer-kit/lm-checkpoint/1", "model": {}}, legacy)
    assert zipfile.is_zipfile(legacy)
    for path, says in ((empty, "not the curriculum's model"), (untied, "tied"), (legacy, "lab.train --upgrade")):
        final, _ = final_of(KIT / "solutions", path, corpus)
        assert final["score"] == 0 and final["status"] == "failed" and says in final["output"], final["output"]


def peak_of(fn):
    """(what ``fn()`` raised or returned, the peak of Python's allocations meanwhile, in bytes)."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_hostile_checkpoint_stays_within_its_cap(tmp_path):
    """Decompression bombs, headers that claim huge tensors, sparse multi-GB files: refused before the
    data is read, the reading's memory a few MB (the cap: the expected model's size, kit.checkpoint)."""
    import zipfile

    from kit.checkpoint import CheckpointError, read_model
    expected = {"w": (256, 256)}
    bomb = tmp_path / "bomb.pt"  # a torch.save-style zip whose record inflates to 1 GB
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = bytes(1 << 24)
            for _ in range(64):
                f.write(chunk)
    assert bomb.stat().st_size < 4 << 20
    claims = tmp_path / "claims.pt"  # a safetensors header claiming a 4 TB tensor behind 1 KB of data
    head = json.dumps({"0": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 42]},
                       "__metadata__": {"tree": json.dumps({"$d": [["model", {"$d": [["w", {"$t": "0"}]]}]]})}})
    claims.write_bytes(struct.pack("<Q", len(head)) + head.encode() + bytes(1024))
    sparse = tmp_path / "sparse.pt"  # 8 GB on paper, a few bytes on disk
    with open(sparse, "wb") as f:
        f.write(struct.pack("<Q", 1 << 40))
        f.truncate(8 << 30)
    deep = tmp_path / "deep.pt"
    tree = "[" * 100_000 + "]" * 100_000
    head = json.dumps({"__metadata__": {"tree": tree}})
    deep.write_bytes(struct.pack("<Q", len(head)) + head.encode())
    odd = tmp_path / "odd.pt"  # a dtype that is not a name at all (a list: unhashable)
    head = json.dumps({"0": {"dtype": [], "shape": [256, 256], "data_offsets": [0, 4 << 16]},
                       "__metadata__": {"tree": json.dumps({"$d": [["model", {"$d": [["w", {"$t": "0"}]]}]]})}})
    odd.write_bytes(struct.pack("<Q", len(head)) + head.encode() + bytes(4 << 16))
    for path in (bomb, claims, sparse, deep, odd):
        out, peak = peak_of(lambda: read_model(path, expected))
        assert isinstance(out, CheckpointError), (path.name, out)
        assert peak < 8 << 20, (path.name, peak)


# -- what the worker can send ----------------------------------------------------------------------

RAW_FRAME = '''
import os, struct, sys, time


def _rpc():  # the worker's own answer channel, found on its stack
    f = sys._getframe()
    while f is not None and f.f_code.co_name != "main":
        f = f.f_back
    return f.f_locals["rpc_out"]


def _send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(_rpc(), view):]


{attack}
time.sleep(30)
'''

FRAMES = {
    "a length of 1 TB": "_send(struct.pack('<Q', 1 << 40))",
    "a frame over the cap": "_send(struct.pack('<Q', (64 << 20) + 1) + bytes(1 << 20))",
    "a header larger than its frame": "_send(struct.pack('<Q', 64) + struct.pack('<Q', 1 << 30) + bytes(56))",
    "a tensor larger than its bytes": (
        "import json\nh = json.dumps({'0': {'dtype': 'F32', 'shape': [1 << 30], 'data_offsets': [0, 1 << 32]},"
        " '__metadata__': {'tree': '{\"$t\": \"0\"}'}}).encode()\n"
        "body = struct.pack('<Q', len(h)) + h + bytes(16)\n_send(struct.pack('<Q', len(body)) + body)"),
    "a structure nested 100,000 deep": (
        "import json\nh = json.dumps({'__metadata__': {'tree': '[' * 100000 + ']' * 100000}}).encode()\n"
        "body = struct.pack('<Q', len(h)) + h\n_send(struct.pack('<Q', len(body)) + body)"),
    "a dtype that is a list": (
        "import json\nh = json.dumps({'0': {'dtype': [], 'shape': [2], 'data_offsets': [0, 8]},"
        " '__metadata__': {'tree': '{\"$t\": \"0\"}'}}).encode()\n"
        "body = struct.pack('<Q', len(h)) + h + bytes(8)\n_send(struct.pack('<Q', len(body)) + body)"),
    "a tensor the structure does not use": (
        "import json\nh = json.dumps({'0': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},"
        " '__metadata__': {'tree': '{\"$d\": [[\"results\", []]]}'}}).encode()\n"
        "body = struct.pack('<Q', len(h)) + h + bytes(8)\n_send(struct.pack('<Q', len(body)) + body)"),
    "nine million numbers": (
        "import torch\nf = sys._getframe()\nwhile f.f_code.co_name != 'main':\n    f = f.f_back\n"
        "f.f_locals['send']({'results': [{'output': torch.zeros(9 << 20), 'inputs_after': [None]}]})"),
}


@pytest.mark.parametrize("attack", sorted(FRAMES))
def test_a_crafted_answer_fails_its_check_within_the_memory_cap(tmp_path, attack):
    from grader.protocol import MAX_FRAME, Request, call
    from grader.sandbox import Sandbox, WorkerFailure
    from kit.outcome import Kind
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text(RAW_FRAME.format(attack=FRAMES[attack]))
    import torch
    with Sandbox(folder, allow_weak=True, call_timeout=20) as sub:
        t0 = time.monotonic()
        out, peak = peak_of(lambda: sub.run(Request("residual", "Residual", calls=[call(torch.zeros(2))])))
        assert isinstance(out, WorkerFailure), out
        assert out.kind is Kind.MALFORMED, (out.kind, out.got)
        assert "timed out" not in out.got and time.monotonic() - t0 < 15
        assert peak < 2 * MAX_FRAME + (16 << 20), peak


def test_a_worker_that_stops_reading_cannot_hold_the_grader(tmp_path):
    """It answers, then starves its own reading thread of the GIL: a large request would block the grader's
    write once the pipe is full. The write has the call's deadline, so the check times out, and only it."""
    from grader.protocol import Request, call
    from grader.sandbox import Sandbox, WorkerFailure
    from kit.outcome import Kind
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text(
        "import sys, threading, time\nimport torch.nn as nn\n\n\ndef spin():\n    time.sleep(1.0)\n"
        "    sys.setswitchinterval(1000.0)\n    while True:\n        pass\n\n\n"
        "threading.Thread(target=spin, daemon=True).start()\n\n\nclass Residual(nn.Module):\n"
        "    def __init__(self, sublayer=None):\n        super().__init__()\n\n"
        "    def forward(self, x):\n        return x\n")
    import torch
    with Sandbox(folder, allow_weak=True, call_timeout=5) as sub:
        first = sub.run(Request("residual", "Residual", init=([], {}), calls=[call(torch.zeros(2))]))
        assert torch.equal(first["results"][0]["output"], torch.zeros(2))  # it answers: this tests the next one
        time.sleep(2)  # the spinning thread holds the GIL now
        t0 = time.monotonic()
        try:
            out = sub.run(Request("residual", "Residual", init=([], {}), calls=[call(torch.zeros(8 << 20))]))
        except WorkerFailure as e:
            out = e
        assert isinstance(out, WorkerFailure) and out.kind is Kind.TIMED_OUT, out
        assert time.monotonic() - t0 < 20


# -- below the audit hook: what holds when it is switched off -----------------------------------------

BELOW_THE_HOOK = '''
import os, time, torch
KIT = {kit!r}
worked = []


def attempt(name, fn):
    try:
        fn()
    except BaseException:  # refused: what should happen
        return
    worked.append(name)


def c_read(path):  # C code opens the file: no audit hook ever sees it
    return lambda: torch.from_file(path, size=16, dtype=torch.uint8)


attempt("read a solution", lambda: open(os.path.join(KIT, "solutions", "residual.py")).read())
attempt("read a solution in C", c_read(os.path.join(KIT, "solutions", "residual.py")))
attempt("write into the kit in C", lambda: torch.from_file(os.path.join(KIT, "pwned"), shared=True, size=16,
                                                            dtype=torch.uint8))
for dev in ("/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0", "/dev/zram0", "/dev/mem"):
    attempt("read " + dev, lambda dev=dev: open(dev, "rb").read(512))
    attempt("read " + dev + " in C", c_read(dev))


def double_fork():  # a grandchild in a session of its own: it leaves the worker's process group
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
        os._exit(0)
    os.wait()


for _ in range(5):
    double_fork()
raise NotImplementedError("worked: " + ", ".join(worked))
'''


def isolations():
    from grader.sandbox import bwrap_works
    levels = [pytest.param("bubblewrap", marks=pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot "
                                                                  "start here"))]
    return levels + ["process"]


def survivors(mark):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if mark.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("level", isolations())
def test_below_the_audit_hook_the_kernel_fences_hold(tmp_path, level, landlock_abi):
    """The hook switched off (a submission rewrote it, say): the kit, the disks and the instructor's files
    stay out of reach, and children that left the worker's process group die with the sandbox."""
    from grader.protocol import Request
    from grader.sandbox import Sandbox
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text(BELOW_THE_HOOK.format(kit=str(KIT)))
    with Sandbox(folder, allow_weak=True, audit_hook=False, bubblewrap=level == "bubblewrap") as sub:
        mark = str(sub.folder)  # the copy graded: in the command line of the worker, and of every process it forks
        reply = sub.run(Request("residual", "Residual"))
        assert "audit hook" not in sub.isolation.describe()
        forked = len(survivors(mark)) - len([sub.proc.pid])
        assert forked >= 5, "the attack's children did not start: this test tests nothing"
    worked = [w for w in reply["error"]["message"].removeprefix("worked:").strip().split(", ") if w]
    pwned = (KIT / "pwned").exists()
    if not pwned and level == "bubblewrap" and "write into the kit in C" in worked:
        # a kit under /tmp (a fresh clone there): the path leads onto the sandbox's private /tmp, whose
        # folders bubblewrap made to mount the interpreter on; the real kit is what must stay untouched
        worked.remove("write into the kit in C")
    if level == "bubblewrap" or landlock_abi:
        assert not pwned and worked == [], worked
    else:  # no kernel fence at all: only the OS user (--user) or bubblewrap protects the kit
        assert "read a solution" in worked
    for _ in range(50):
        if not survivors(mark):
            break
        time.sleep(0.1)
    assert not survivors(mark)
    assert not (KIT / "pwned").exists()


def test_the_audit_hook_cannot_be_rewritten_from_python(tmp_path):
    from grader.protocol import Request
    from grader.sandbox import Sandbox
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text(textwrap.dedent('''
        import gc
        def f():
            pass
        try:
            f.__code__ = (lambda: 1).__code__
        except PermissionError as e:
            code = str(e)
        try:
            gc.get_objects()
        except PermissionError as e:
            objects = str(e)
        raise NotImplementedError(code + " | " + objects)
    '''))
    with Sandbox(folder, allow_weak=True) as sub:
        message = sub.run(Request("residual", "Residual"))["error"]["message"]
    assert "refuses object.__setattr__" in message and "refuses gc.get_objects" in message, message


# -- no grading hangs or leaks ---------------------------------------------------------------------

def test_a_worker_that_closes_its_channel_and_sleeps_costs_only_its_limit(tmp_path):
    """It shuts its answer channel and sleeps: the grader sees the channel close, waits with a deadline,
    kills it, and goes on."""
    sub = write(tmp_path / "sub", residual="import os, time\nos.closerange(0, 256)\ntime.sleep(600)\n")
    t0 = time.monotonic()
    data, out, code = grade(sub, "residual", "rmsnorm", timeout=3)
    assert time.monotonic() - t0 < 90
    res = checks_of(data, "residual")
    assert res and all(t["status"] == "failed" for t in res)
    assert module_score(data, "rmsnorm") == POINTS["rmsnorm"]


def test_a_grading_killed_from_outside_leaves_no_process_and_its_folders_are_swept(tmp_path):
    from grader.sandbox import kit_tmp
    mark = f"kit-killed-{os.getpid()}"
    sub = write(tmp_path / "sub", residual=f"# {mark}\nimport time\ntime.sleep(600)\n")
    before = {p.name for p in kit_tmp().iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "grader", "--impl", str(sub), "--only", "residual"], cwd=KIT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # until its worker is up (importing the submission, which sleeps)
        if survivors(str(sub)):
            break
        time.sleep(0.1)
    time.sleep(2)
    # its own folders (named after the grading's process): another grading on the machine may be making its own
    left = {p.name for p in kit_tmp().iterdir() if f"-{proc.pid}-" in p.name} - before
    assert left, "the grading made no temporary folder: this test tests nothing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for _ in range(100):  # the worker dies with its grader (bubblewrap --die-with-parent, PR_SET_PDEATHSIG)
        if not survivors(str(sub)):
            break
        time.sleep(0.1)
    assert not survivors(str(sub))
    # the next grading's first step sweeps what the killed one left
    assert not ({p.name for p in kit_tmp().iterdir()} & left)


def test_a_folder_a_worker_locked_is_still_removed(tmp_path):
    """A worker may chmod 000 folders of its own temp space (allowed there); its owner's clean-up
    (kit.files.remove_tree: the sandbox's, the batch's, the Gradescope runner's) still removes them.
    Root ignores permissions, so as root the removal runs without the capabilities that let it."""
    top = tmp_path / "box"
    deeper = top / "locked" / "deeper"
    deeper.mkdir(parents=True)
    (deeper / "f").write_text("x")
    deeper.chmod(0)
    (top / "locked").chmod(0)
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop the capabilities that ignore permissions")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
    code = ("import os, shutil, sys; sys.path.insert(0, sys.argv[2]); from kit.files import remove_tree\n"
            "shutil.rmtree(sys.argv[1], ignore_errors=True); assert os.path.exists(sys.argv[1]), 'tests nothing'\n"
            "remove_tree(sys.argv[1])")
    p = subprocess.run([*prefix, sys.executable, "-I", "-c", code, str(top), str(KIT)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr  # a plain rmtree left it, remove_tree did not
    assert not top.exists()


# -- what reaches the student: escaped text, no hidden source -------------------------------------

SPOOF = "\u202eevil\u2028\u2029\x1b[2J\x1b]0;title\x07\nPASS 10/10 all good\r\u200bTOTAL 100/100"
UNSAFE = ("\u202e", "\u2028", "\u2029", "\x1b", "\x07", "\r", "\u200b")


def test_text_from_submitted_code_is_escaped_everywhere_it_is_written(tmp_path):
    """An exception message, a printed crash tail and a parameter name that try to write fake report
    lines: every output shows them escaped, on the line of the check they belong to."""
    sub = write(tmp_path / "sub",
                residual=(KIT / "solutions/residual.py").read_text().replace(
                    "        return x + self.sublayer(x, *args, **kwargs)", f"        raise ValueError({SPOOF!r})"),
                rmsnorm=f"import os\nprint({SPOOF!r}, flush=True)\nos._exit(3)\n")
    record, classroom = tmp_path / "record.json", tmp_path / "classroom.json"
    results = tmp_path / "results.json"
    data, out, code = grade(sub, "residual", "rmsnorm", json_path=results,
                            extra=["--record", str(record), "--classroom", str(classroom)])
    assert code == 1
    from grader.report import csv_row, notebook
    from grader.run import Grading
    grading = Grading.from_dict(json.loads(record.read_text()))
    rendered = [out, results.read_text(), record.read_text(), classroom.read_text(),
                json.dumps(csv_row("s", ["residual", "rmsnorm"], grading, "graded", "", 1.0)),
                *(notebook(r) for r in grading.results if not r.passed)]
    for text in rendered:
        decoded = json.loads(text) if text.lstrip().startswith("{") else text
        flat = json.dumps(decoded, ensure_ascii=False) if not isinstance(decoded, str) else decoded
        assert not [c for c in UNSAFE if c in flat], [hex(ord(c)) for c in UNSAFE if c in flat]
    lines = out.splitlines()
    assert not any(line.lstrip().startswith(("PASS 10/10 all good", "TOTAL 100/100")) for line in lines)
    assert "\\u202eevil\\u2028" in out  # shown, escaped, where the student can find it
    tests = by_name(data)
    assert any("\\u202eevil" in t["output"] for t in tests.values() if t["name"].startswith("residual"))
    assert any("\\u202eevil" in t["output"] for t in tests.values() if t["name"].startswith("rmsnorm"))


def test_a_grader_error_names_the_check_and_shows_no_hidden_source(tmp_path):
    """A check that breaks (here: its comparison raises with the reference's source and path in the
    message) tells the student which check and to tell the staff; the details go to the staff only."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(KIT)!r})
        import grader.compare
        SECRET = open({str(KIT / "solutions" / "residual.py")!r}).read()
        def broken(*a, **k):
            raise RuntimeError("at {KIT / 'solutions' / 'residual.py'}: " + SECRET)
        grader.compare.assert_close = broken
        from grader.report import classroom, gradescope, notebook, terminal
        from grader.run import grade
        g = grade({str(KIT / "solutions")!r}, only=["residual"], allow_weak=True)
        student = [terminal(g, "t"), json.dumps(gradescope(g)), json.dumps(classroom(g)),
                   *(notebook(r) for r in g.results if not r.passed)]
        print(json.dumps({{"student": student, "staff": g.errors,
                          "kinds": [r.failure.kind.name for r in g.results if r.failure]}}))
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=KIT, capture_output=True, text=True, timeout=600)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["kinds"] and set(out["kinds"]) == {"GRADER_ERROR"}
    secret_line = next(line for line in (KIT / "solutions" / "residual.py").read_text().splitlines()
                       if "self.sublayer(" in line and "return" in line).strip()
    for text in out["student"]:
        assert "solutions" not in text and secret_line not in text and "Traceback" not in text, text[:500]
        assert "tell the course staff" in text
    assert any(secret_line in e for e in out["staff"])  # the staff log keeps what happened


# -- which isolation was in force ----------------------------------------------------------------

def test_untrusted_code_without_a_real_sandbox_is_refused_unless_asked(tmp_path):
    """No bubblewrap and no --user: --untrusted refuses (exit 4, one line); --allow-weak-sandbox grades and the
    report's first lines say which isolation was in force."""
    env = {**os.environ, "KIT_NO_BWRAP": "1"}
    cmd = [sys.executable, "-m", "grader", "--impl", str(KIT / "solutions"), "--only", "residual", "--untrusted"]
    p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 4 and p.stderr.strip().count("\n") == 0 and "--allow-weak-sandbox" in p.stderr, p.stderr
    p = subprocess.run(cmd + ["--allow-weak-sandbox"], cwd=KIT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "isolation: a separate process" in p.stdout, p.stdout
    from grader.sandbox import bwrap_works
    if bwrap_works():
        p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0 and "isolation: bubblewrap sandbox (user, PID, network" in p.stdout, p.stdout


def test_a_grading_starved_of_memory_says_so_instead_of_blaming_the_code(tmp_path, monkeypatch):
    """A call that runs out of time while the machine's memory cgroup is at its limit, or whose worker the
    kernel killed for lack of memory, is the machine's failure (Kind.STARVED), not an endless loop."""
    from grader.protocol import Request
    from grader.sandbox import Sandbox, WorkerFailure
    from kit import machine
    from kit.outcome import Kind
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(machine, "memory_short", lambda margin=0.95: "its memory limit of 512 MB is reached")
    with Sandbox(folder, allow_weak=True, call_timeout=2) as sub:
        with pytest.raises(WorkerFailure) as e:
            sub.run(Request("residual", "Residual"))
    assert e.value.kind is Kind.STARVED and "short of memory" in e.value.got and "not a verdict" in e.value.hint
    assert not e.value.kind.students_fault
