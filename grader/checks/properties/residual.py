"""Residual: structure and shapes.

The shape check is INFO (0 points): shapes alone are what any tensor of the right size has, so
the points sit with the checks that compare values.
"""
import torch

from grader.compare import (
    FP32,
    GRAD,
    assert_close,
    assert_equal,
    compared,
    describe_value,
    fmt_shape,
    is_close,
    require,
)
from grader.diagnose.crashes import explaining, inplace_crash
from grader.harness import both, call, check, only, randn
from kit.outcome import CheckFailure, T

INPLACE_HINT = T("write `return x + self.sublayer(x)`, not `x += ...`: the caller still needs x")
DETACHED_HINT = T("return x + self.sublayer(x) with the sublayer's output in the graph")
WEIGHT_GRAD = T("the gradient of sublayer.weight after Residual(nn.Linear(8, 8))(x).backward(dy)")
LINEAR = {"__obj__": "torch.nn.Linear", "args": [8, 8], "kwargs": {"bias": False}}


@check(1)
def check_keeps_sublayer(sub, ref, g):
    """Residual(sublayer) registers the sublayer as self.sublayer, and trains it"""
    sd = {"sublayer.weight": randn(g, 8, 8, scale=8 ** -0.5)}
    x, dy = randn(g, 2, 5, 8), randn(g, 2, 5, 8)
    got = only(sub, "residual", "Residual", "Residual(nn.Linear(8, 8))", init=([LINEAR], {}), want=["structure"])
    mods = {name: kind for name, kind, _, _ in got["structure"]["modules"]}
    require(mods.get("sublayer") == "Linear", T("Residual(nn.Linear(8, 8)) submodules"),
            T("a submodule named 'sublayer' (the Linear)"),
            # the student's own attribute and class names: shown as they are
            T("{submodules_code}", submodules_code=", ".join(f"{n or '<root>'}: {k}" for n, k in mods.items())),
            T("store it as self.sublayer = sublayer in __init__"), "wrong-structure")
    # the name is confirmed by use: the sublayer's weight gets the reference's gradient (the input needs none)
    with explaining(inplace_crash(INPLACE_HINT)):
        got, exp = both(sub, ref, "residual", "Residual", "Residual(nn.Linear(8, 8))(x).backward(dy)",
                        init=([LINEAR], {}), load=sd, calls=[call(x, grad=dy, input_grad=False)])
    r, e = got["results"][0], exp["results"][0]
    grad = (r.get("param_grads") or {}).get("sublayer.weight")
    if not isinstance(grad, torch.Tensor):
        # no gradient: the output says whether the sublayer was skipped or its output cut from the graph
        y = r["output"]
        right = isinstance(y, torch.Tensor) and is_close(y, e["output"], FP32)
        skipped = isinstance(y, torch.Tensor) and y.shape == x.shape and torch.equal(y, x)
        compared()
        raise CheckFailure(
            WEIGHT_GRAD, T("a gradient"),
            T("none, though the output x + sublayer(x) is right") if right else
            T("none, and the output is x itself") if skipped else T("none"),
            DETACHED_HINT if right else T("call it: return x + self.sublayer(x)"),
            T("the sublayer's output is detached from the graph (.detach(), .data or torch.no_grad()): it is added, "
              "but no gradient flows back through it, so the sublayer never trains") if right else
            T("the sublayer is not called in forward") if skipped else None)
    assert_close(r["param_grads"]["sublayer.weight"], e["param_grads"]["sublayer.weight"], WEIGHT_GRAD, GRAD,
                 T("the sublayer's output must reach the result once: return x + self.sublayer(x)"))


@check(0)
def check_output_shape(sub, ref, g):
    """Residual keeps the shape (B, T, C) and dtype of its input"""
    x = randn(g, 2, 5, 8)
    got = only(sub, "residual", "Residual", "Residual(nn.Linear(8, 8))(x)", init=([LINEAR], {}), calls=[call(x)])
    y = got["results"][0]["output"]
    assert_equal(fmt_shape(y) if hasattr(y, "shape") else describe_value(y), "(2, 5, 8)",
                 T("Residual(nn.Linear(8, 8))(x) output shape for x of shape (2, 5, 8)"),
                 T("x + sublayer(x) has x's shape"))
    assert_equal(str(y.dtype), "torch.float32", T("Residual output dtype for a float32 x"))
