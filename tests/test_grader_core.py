"""The grader end to end: full marks for the solutions, zero for the stubs, mutants caught, crashes survived."""
import pytest
from conftest import KIT, by_name, grade, mutate

from kit.syllabus import MODULES as UNITS
from kit.syllabus import POINTS


@pytest.fixture(scope="module")
def solutions_result():
    return grade(KIT / "solutions", *UNITS)


@pytest.fixture(scope="module")
def stubs_result():
    return grade(KIT / "exercises", *UNITS)


def test_solutions_get_full_marks(solutions_result):
    data, out, code = solutions_result
    failed = [t["name"] + "\n" + t["output"] for t in data["tests"] if t["status"] != "passed"]
    assert not failed, "\n\n".join(failed)
    assert data["score"] == data["max_score"] == 85
    assert code == 0


def test_points_per_module_are_the_syllabus_weights(solutions_result):
    data, _, _ = solutions_result
    per = {}
    for t in data["tests"]:
        per[t["name"].split(":")[0]] = per.get(t["name"].split(":")[0], 0) + t["max_score"]
    assert per == {u: POINTS[u] for u in UNITS}


def test_every_check_has_visibility_and_points(solutions_result):
    data, _, _ = solutions_result
    for t in data["tests"]:
        assert t["visibility"] in ("visible", "hidden")
        assert t["max_score"] >= 0
    assert all(t["visibility"] == "visible" for t in data["tests"])  # shown by default while the assignment is open


def test_stubs_get_zero_with_not_implemented_messages(stubs_result):
    data, out, code = stubs_result
    assert data["score"] == 0 and code == 1
    for t in data["tests"]:
        assert t["status"] == "failed", t["name"]
        assert "not implemented yet:" in t["output"], (t["name"], t["output"])
    assert "not implemented yet: RMSNorm.__init__" in out
    assert "TOTAL 0/85" in out


def test_failure_message_has_the_four_parts(tmp_path):
    sub = mutate(tmp_path / "sub", "rmsnorm.py", "torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
                 "torch.rsqrt(xf.pow(2).mean(-1, keepdim=True)) + self.eps")
    data, out, _ = grade(sub, "rmsnorm")
    eps = by_name(data)["rmsnorm: eps sits inside the square root: tiny inputs with the default eps (1e-6), and eps = 0.1"]
    assert eps["status"] == "failed"
    for part in ("checked:", "expected:", "got:", "hint:", "max abs error", "at index"):
        assert part in eps["output"], eps["output"]
    assert "eps is added after the reciprocal square root" in eps["output"]


@pytest.mark.parametrize("module,file,old,new,lost,named", [
    ("rmsnorm", "rmsnorm.py", "normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
     "xf = xf - xf.mean(-1, keepdim=True)\n        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
     "rmsnorm: RMSNorm matches the reference on several shapes, T = 1 and a non-contiguous input",
     "subtracts the mean"),
    ("attention", "attention.py", "mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)",
     "mask = torch.zeros(T, T, dtype=torch.bool, device=x.device)",
     "attention: Changing token t never changes the outputs before t (and does change output t)", "no causal mask"),
    ("block", "block.py", "h = x + self.self_attn(self.input_layernorm(x))\n        return h + self.mlp(self.post_attention_layernorm(h))",
     "h = self.input_layernorm(x + self.self_attn(x))\n        return self.post_attention_layernorm(h + self.mlp(h))",
     "block: The block's wiring matches the reference block around the same stand-in components", "post-norm"),
])
def test_first_mutants_are_caught(tmp_path, module, file, old, new, lost, named):
    data, _, code = grade(mutate(tmp_path / "sub", file, old, new), module)
    tests = by_name(data)
    assert code == 1 and data["score"] < data["max_score"]
    assert tests[lost]["status"] == "failed", tests[lost]
    if named:
        assert any(named in t["output"] for t in data["tests"] if t["status"] == "failed")


def test_a_mistake_in_attention_costs_only_attention(tmp_path):
    sub = mutate(tmp_path / "sub", "attention.py", "/ math.sqrt(self.head_dim)", "/ math.sqrt(C)")
    data, _, _ = grade(sub, "attention", "block", "decoder")
    lost = {t["name"].split(":")[0] for t in data["tests"] if t["status"] == "failed" and t["max_score"] > 0}
    assert lost == {"attention"}


@pytest.mark.parametrize("body,expect", [
    ("raise RuntimeError('boom')", "your code raised RuntimeError"),
    ("import sys; sys.exit(0)", "sys.exit(0) was called"),
    ("import os; os._exit(0)", "exited with code 0"),
    ("while True: pass", "timed out"),
])
def test_grader_survives_bad_submissions(tmp_path, body, expect):
    sub = mutate(tmp_path / "sub", "residual.py", "        return x + self.sublayer(x, *args, **kwargs)",
                 "        " + body + "\n        return x + self.sublayer(x, *args, **kwargs)")
    data, out, code = grade(sub, "residual", "rmsnorm", timeout=3)
    tests = by_name(data)
    assert code == 1
    forward_checks = [t for n, t in tests.items() if n.startswith("residual:") and "registers" not in n
                      and "trains it" not in n]
    assert all(t["status"] == "failed" for t in forward_checks)
    assert any(expect in t["output"] for t in forward_checks), [t["output"] for t in forward_checks]
    # the rest of the grading went on: RMSNorm is untouched and scores full marks
    assert sum(t["score"] for n, t in tests.items() if n.startswith("rmsnorm:")) == 15


def test_stub_generator_is_in_sync():
    from classroom.stubs import KIT as K
    from classroom.stubs import render
    for name, text in render().items():
        assert (K / "exercises" / name).read_text() == text, f"exercises/{name} is stale: run `make stubs`"


def test_stubs_raise_not_implemented_in_every_marked_region():
    from classroom.regions import stub
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert stub(src) == 'def f(x):\n    y = 1\n    raise NotImplementedError("f")\n'
    with pytest.raises(ValueError):
        stub("def f():\n    ### BEGIN SOLUTION\n    pass\n")


def test_a_missing_corpus_is_the_graders_fault_not_the_students(tmp_path):
    """The final check's corpus is the grading's own input: without it the check is a grader error (Gradescope
    and the runners say "tell the course staff"), not starvation and not a verdict on the model."""
    import json
    record = tmp_path / "record.json"
    _, out, code = grade(KIT / "solutions", "final", extra=["--corpus", str(tmp_path / "gone.txt"), "--record",
                                                             str(record)], check=False)
    assert code == 3  # graded, with a grader error: the runners flag it for the staff
    (final,) = json.loads(record.read_text())["results"]
    assert final["failure"]["kind"] == "grader-error", final
    assert "gone.txt: no such file" in final["failure"]["got"] and "make data" in final["failure"]["hint"]
    assert "Errno" not in out


def test_compute_threads_one_for_the_checks_all_for_a_model_on_many_windows(tmp_path):
    """The worker computes with the threads a request asks for, never more than its sandbox has; the checks run
    with one thread in the grader too, and a grading leaves torch's setting as it found it."""
    import torch

    from grader.protocol import Request, call
    from grader.run import grade as grade_in_process
    from grader.sandbox import Sandbox
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "residual.py").write_text("import torch\n\n\nclass Residual(torch.nn.Module):\n"
                                     "    def forward(self, x):\n        return torch.tensor(torch.get_num_threads())\n")
    with Sandbox(sub, threads=2, allow_weak=True) as sandbox:
        asked = [sandbox.run(Request("residual", "Residual", init=([], {}), calls=[call(torch.zeros(1))], threads=n))
                 for n in (1, 2, 8, 1)]
    assert [a["results"][0]["output"].item() for a in asked] == [1, 2, 2, 1]
    seen = []
    real = torch.nn.Module.__call__

    def spy(self, *args, **kwargs):  # the reference's side computes in this process
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)
    before = torch.get_num_threads()
    torch.nn.Module.__call__ = spy
    try:
        graded = grade_in_process(KIT / "solutions", only=["rmsnorm"])
    finally:
        torch.nn.Module.__call__ = real
    assert all(r.passed for r in graded.results)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


# --- the wire format keeps a tensor's layout, and refuses views that leave their span ----------------------

def test_tensorpack_keeps_strides_and_offsets():
    """A non-contiguous input reaches the student's code non-contiguous (its strides and storage offset kept)."""
    import torch

    from kit.tensorpack import pack, unpack
    g = torch.Generator().manual_seed(0)
    cases = [torch.randn(4, 6, 16, generator=g).transpose(0, 1), torch.randn(10, generator=g)[2:],
             torch.randn(3, 8, generator=g)[:, ::2], torch.randn(2, 3, 4, generator=g).permute(2, 0, 1)[1:]]
    for t, u in zip(cases, unpack(pack(cases), 1 << 20)):
        assert torch.equal(t, u) and u.stride() == t.stride() and u.storage_offset() == t.storage_offset()
    # what is not worth its bytes travels compacted: an expanded tensor, a sparse slice
    wide, sparse = torch.randn(1, 5, generator=g).expand(4, 5), torch.randn(100, generator=g)[::50]
    for t, u in zip((wide, sparse), unpack(pack([wide, sparse]), 1 << 20)):
        assert torch.equal(t, u) and u.is_contiguous()
    # the worker's fresh copy of each argument keeps the layout too (a transposed x stays transposed)
    import importlib.util
    spec = importlib.util.spec_from_file_location("_worker_for_test", KIT / "grader" / "worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    for t in cases:
        f = worker._fresh(t)
        assert torch.equal(f, t) and f.stride() == t.stride() and f.storage_offset() == t.storage_offset()
        assert f.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()


@pytest.mark.parametrize("layout, why", [
    ([[4, 4], [4, 1], 1], "reaches past its span"),          # 16 elements from offset 1 in a span of 16
    ([[16, 2], [1, 1], 0], "twice"),                          # overlapping strides
    ([[8], [0], 0], "twice"),                                 # an expansion: one element read 8 times
    ([[2, 2], [-1, 1], 2], "malformed"),                      # a negative stride
    ([[2, 2], [1, 2], -1], "malformed"),                      # a negative offset
    ([[1 << 41], [1], 0], "malformed"),                       # a size past the limits
    ([[2, 2], [2, 1]], "malformed"),                          # no offset
    ([[2, 2], [2, True], 0], "malformed"),                    # a bool for an int
    ([[17], [1], 0], "more elements"),                        # more elements than the span
])
def test_tensorpack_refuses_views_outside_their_span(layout, why):
    import json

    import torch
    from safetensors.torch import save

    from kit.tensorpack import TREE, PackError, unpack
    data = save({"0": torch.arange(16.0)}, metadata={TREE: json.dumps({"$t": "0", "$v": layout})})
    with pytest.raises(PackError, match=why):
        unpack(data, 1 << 20)
    # a view of a tensor that is not 1-D, and one tensor used twice, are refused too
    data = save({"0": torch.zeros(4, 4)}, metadata={TREE: json.dumps({"$t": "0", "$v": [[4], [1], 0]})})
    with pytest.raises(PackError, match="not a span"):
        unpack(data, 1 << 20)
    data = save({"0": torch.zeros(4)}, metadata={TREE: json.dumps([{"$t": "0"}, {"$t": "0"}])})
    with pytest.raises(PackError, match="used twice"):
        unpack(data, 1 << 20)


def test_checkpoints_store_every_tensor_compacted():
    """A checkpoint's readers take each tensor's bytes as they are (kit/checkpoint.py): no views there."""
    import torch

    from kit.tensorpack import TREE, header, pack, unpack
    w = torch.randn(4, 6).t()
    data = pack({"model": {"w": w}}, layout=False)
    assert '"$v"' not in header(data, 1 << 20)[1][TREE]
    u = unpack(data, 1 << 20)["model"]["w"]
    assert torch.equal(u, w) and u.is_contiguous()
