"""Residual: values, argument passing, gradients, no in-place change."""
import torch

from grader.compare import FP32, GRAD, assert_close, fmt_shape, is_close
from grader.diagnose.crashes import explaining, inplace_crash, noncontiguous_view
from grader.harness import both, call, check, grad_check, randn, standin_obj, unchanged_input
from kit.outcome import T

from ..properties.residual import DETACHED_HINT, INPLACE_HINT


def shift(g, dim):
    """A sublayer that takes extra arguments: ``tanh(x @ W^T) * scale + shift`` (grader/standins/sublayers.py)."""
    return standin_obj("sublayers.Shift", dim, load={"weight": randn(g, dim, dim, scale=dim ** -0.5)})


@check(5)
def check_matches_x_plus_sublayer(sub, ref, g):
    """Residual(f)(x) equals x + f(x) on several shapes, T = 1 and a non-contiguous x"""
    s = shift(g, 16)
    xs = [randn(g, 2, 5, 16), randn(g, 1, 1, 16), randn(g, 3, 16), randn(g, 7, 3, 16).transpose(0, 1)]
    with explaining(noncontiguous_view):
        got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x)", init=([s], {}),
                        calls=[call(x) for x in xs])
    for x, gr, er in zip(xs, got["results"], exp["results"]):
        what = T("Residual(f)(x) for x of shape {shape}", shape=fmt_shape(x)) if x.is_contiguous() else \
            T("Residual(f)(x) for x of shape {shape}, non-contiguous", shape=fmt_shape(x))
        assert_close(gr["output"], er["output"], what, FP32,
                     T("return x + self.sublayer(x): the input plus the sublayer's output"),
                     ref.variants("residual", x=x, weight=s["load"]["weight"]))


@check(1)
def check_passes_extra_arguments(sub, ref, g):
    """Residual(f)(x, *args, **kwargs) passes the extra arguments to f"""
    s = shift(g, 16)
    x = randn(g, 2, 4, 16)
    got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x, 0.5, scale=2.0)", init=([s], {}),
                    calls=[call(x, 0.5, scale=2.0)])
    assert_close(got["results"][0]["output"], exp["results"][0]["output"], "Residual(f)(x, 0.5, scale=2.0)", FP32,
                 T("forward(self, x, *args, **kwargs) must call self.sublayer(x, *args, **kwargs)"),
                 ref.variants("residual_arguments", x=x, weight=s["load"]["weight"]))


@check(3)
def check_gradients(sub, ref, g):
    """Gradients of x and of the sublayer's weight match (the identity path included)"""
    s = shift(g, 16)
    x, up = randn(g, 2, 5, 16), randn(g, 2, 5, 16)
    with explaining(inplace_crash(INPLACE_HINT)):
        got, exp = both(sub, ref, "residual", "Residual", "Residual(f)(x).backward(dy)", init=([s], {}),
                        calls=[call(x, grad=up)])
    r = got["results"][0]

    def identity_only(exc):
        """x's gradient is dy itself: it came through the skip path alone, the sublayer's branch is cut."""
        dx = (r.get("input_grads") or [None])[0]
        if isinstance(dx, torch.Tensor) and is_close(dx, up, GRAD) and is_close(r["output"], exp["results"][0]["output"],
                                                                               FP32):
            return (T("the sublayer's output is detached from the graph (.detach(), .data or torch.no_grad()): the "
                      "output is right, but the gradient of x is dy itself, the skip path's alone"),
                    DETACHED_HINT)
        return None
    with explaining(identity_only):
        grad_check(r, exp["results"][0], "Residual(f)(x).backward(dy)", GRAD,
                   hint=T("the gradient must flow through both paths: x itself and the sublayer"))


@check(0)
def check_input_not_modified(sub, g):
    """Residual leaves its input tensor unchanged (no in-place add)"""
    unchanged_input(sub, "residual", "Residual", "Residual(f)(x)", randn(g, 2, 5, 16),
                    INPLACE_HINT, init=([shift(g, 16)], {}))
