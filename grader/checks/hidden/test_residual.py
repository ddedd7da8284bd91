"""Residual: values, argument passing, gradients, no in-place change (hidden)."""
from grader.compare import GRAD, CheckFailure, assert_close
from grader.diagnose import residual_variants
from grader.harness import STANDIN_PKG, both, call, check, grad_check, only, randn


def shift(g, dim):
    return {"__obj__": "sublayers.Shift", "pkg": STANDIN_PKG, "args": [dim],
            "load": {"weight": randn(g, dim, dim, scale=dim ** -0.5)}}


def sublayer_fn(sublayer):
    import torch
    w = sublayer["load"]["weight"]
    return lambda x, shift=0.0, scale=1.0: torch.tanh(x @ w.T) * scale + shift


@check(3)
def test_matches_x_plus_sublayer(sub, ref, g):
    """Residual(f)(x) equals x + f(x) on several shapes, T = 1 and a non-contiguous x"""
    s = shift(g, 16)
    xs = [randn(g, 2, 5, 16), randn(g, 1, 1, 16), randn(g, 3, 16), randn(g, 7, 3, 16).transpose(0, 1)]
    got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x)", init=([s], {}), calls=[call(x) for x in xs])
    f = sublayer_fn(s)
    for x, gr, er in zip(xs, got["results"], exp["results"]):
        assert_close(gr["output"], er["output"], f"Residual(f)(x) for x of shape {tuple(x.shape)}",
                     hint="return x + self.sublayer(x): the input plus the sublayer's output",
                     variants=residual_variants(x, f))


@check(1)
def test_passes_extra_arguments(sub, ref, g):
    """Residual(f)(x, *args, **kwargs) passes the extra arguments to f"""
    s = shift(g, 16)
    x = randn(g, 2, 4, 16)
    got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x, 0.5, scale=2.0)", init=([s], {}),
                    calls=[call(x, 0.5, scale=2.0)])
    f = sublayer_fn(s)
    assert_close(got["results"][0]["output"], exp["results"][0]["output"], "Residual(f)(x, 0.5, scale=2.0)",
                 hint="forward(self, x, *args, **kwargs) must call self.sublayer(x, *args, **kwargs)",
                 variants={"the extra arguments were dropped": (lambda: x + f(x), "pass *args and **kwargs on to the sublayer")})


@check(2)
def test_gradients(sub, ref, g):
    """Gradients of x and of the sublayer's weight match (the identity path included)"""
    s = shift(g, 16)
    x, up = randn(g, 2, 5, 16), randn(g, 2, 5, 16)
    got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x).backward(dy)", init=([s], {}),
                    calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "Residual(f)(x).backward(dy)", GRAD,
               hint="the gradient must flow through both paths: x itself and the sublayer")


@check(2)
def test_input_not_modified(sub, ref, g):
    """Residual leaves its input tensor unchanged (no in-place add)"""
    s = shift(g, 16)
    x = randn(g, 2, 5, 16)
    got = only(sub, "residual", "Residual", "Residual(f)(x)", init=([s], {}), calls=[call(x)])
    if got["results"][0]["inputs_changed"][0]:
        raise CheckFailure("x after calling Residual(f)(x)", "x unchanged", "x was modified in place",
                           "write `return x + self.sublayer(x)`, not `x += ...`: the caller still needs x")
