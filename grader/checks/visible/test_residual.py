"""Residual: structure and shapes (visible)."""
from grader.compare import CheckFailure, assert_equal, fmt_shape
from grader.harness import call, check, only, randn

LINEAR = {"__obj__": "torch.nn.Linear", "args": [8, 8], "kwargs": {"bias": False}}


@check(1, visible=True)
def test_keeps_sublayer(sub):
    """Residual(sublayer) registers the sublayer as self.sublayer"""
    got = only(sub, "residual", "Residual", "Residual(nn.Linear(8, 8))", init=([LINEAR], {}), want=["structure"])
    mods = {name: kind for name, kind, _ in got["structure"]["modules"]}
    if mods.get("sublayer") != "Linear":
        raise CheckFailure("Residual(nn.Linear(8, 8)) submodules", "a submodule named 'sublayer' (the Linear)",
                           ", ".join(f"{n or '<root>'}: {k}" for n, k in mods.items()),
                           "store it as self.sublayer = sublayer in __init__")


@check(1, visible=True)
def test_output_shape(sub, g):
    """Residual keeps the shape (B, T, C) and dtype of its input"""
    x = randn(g, 2, 5, 8)
    got = only(sub, "residual", "Residual", "Residual(nn.Linear(8, 8))(x)", init=([LINEAR], {}), calls=[call(x)])
    y = got["results"][0]["output"]
    if not hasattr(y, "shape"):
        raise CheckFailure("Residual(nn.Linear(8, 8))(x) with x of shape (2, 5, 8)", "a tensor", type(y).__name__)
    assert_equal(fmt_shape(y), "(2, 5, 8)", "Residual(nn.Linear(8, 8))(x) output shape", "x + sublayer(x) has x's shape")
    assert_equal(str(y.dtype), "torch.float32", "Residual output dtype")
