"""RMSNorm against the reference: values, eps, bfloat16, gradients, in-place."""
import torch

from grader.compare import BF16, BF16_ULP, FP32, GRAD, assert_close, fmt_dtype, require
from grader.diagnose.crashes import explaining, inplace_crash, rmsnorm_crash
from grader.harness import both, check, compare_outputs, grad_check, randn, unchanged_input
from grader.protocol import call
from kit.outcome import T

from ..properties.rmsnorm import HINT

INPLACE_HINT = T("avoid in-place operations (x.mul_, x /= ...) on the input")


def weights(g, dim):
    return {"weight": 1.0 + 0.3 * torch.randn(dim, generator=g)}


@check(6)
def check_matches_reference(sub, ref, g):
    """RMSNorm matches the reference on several shapes, T = 1 and a non-contiguous input"""
    sd = weights(g, 16)
    xs = [randn(g, 2, 5, 16, scale=2.0), randn(g, 1, 1, 16), randn(g, 3, 16), randn(g, 4, 6, 16).transpose(0, 1),
          randn(g, 1, 9, 16, scale=0.1) + 0.5]
    with explaining(rmsnorm_crash):
        compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16)", xs, FP32, HINT,
                        lambda x: ref.variants("rmsnorm_default_eps", x=x, weight=sd["weight"], eps=1e-6), init=([16], {}),
                        load=sd)


@check(2)
def check_eps(sub, ref, g):
    """eps sits inside the square root: tiny inputs with the default eps (1e-6), and eps = 0.1"""
    sd = weights(g, 16)
    tiny = randn(g, 2, 4, 16, scale=1e-3)
    # built with no eps: what is checked is the default, and the title says so
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16)", [tiny], FP32, HINT,
                    lambda x: ref.variants("rmsnorm_default_eps", x=x, weight=sd["weight"], eps=1e-6), init=([16], {}),
                    load=sd)
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16, eps=0.1)", [randn(g, 2, 4, 16, scale=0.5)], FP32,
                    HINT, lambda x: ref.variants("rmsnorm_eps_argument", x=x, weight=sd["weight"], eps=0.1),
                    init=([16], {"eps": 0.1}), load=sd)


@check(3)
def check_bfloat16(sub, ref, g):
    """bfloat16 input: statistics in float32; a bfloat16 norm gives bfloat16, a float32 one float32"""
    sd = weights(g, 256)
    x = randn(g, 4, 16, 256, scale=3.0, dtype=torch.bfloat16)
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(256).to(torch.bfloat16)", [x], BF16_ULP,
                    T("compute the statistics on x.float(), cast back with .type_as(x), then multiply by weight"),
                    lambda x: ref.variants("rmsnorm", x=x, weight=sd["weight"].bfloat16(), eps=1e-6), init=([256], {}),
                    load=sd, dtype="bfloat16")
    # a float32 norm (its weight float32) on a bfloat16 input: type_as(x) * weight promotes to float32, as in LLaMA
    what = T("RMSNorm(256) (float32 weight)(x) for a bfloat16 x")
    got, exp = both(sub, ref, "rmsnorm", "RMSNorm", what, init=([256], {}), load=sd, calls=[call(x[:2])])
    y, e = got["results"][0]["output"], exp["results"][0]["output"]
    if isinstance(y, torch.Tensor):
        require(y.dtype == e.dtype, T("the dtype of {what}", what=what), T("dtype {dtype}", dtype=fmt_dtype(e)),
                T("dtype {dtype}", dtype=fmt_dtype(y)),
                T("a bfloat16 x with a float32 weight gives float32: normalise in float32, cast back with .type_as(x), "
                  "then multiply by the weight and return the product as it is (do not cast it back to x's dtype)"))
    assert_close(y, e, what, BF16, T("normalise in float32, cast back with .type_as(x), then multiply by the float32 "
                                     "weight: the result is float32"))


@check(3)
def check_gradients(sub, ref, g):
    """Gradients of the input and of weight match the reference"""
    sd = weights(g, 16)
    x, up = randn(g, 3, 5, 16, scale=2.0), randn(g, 3, 5, 16)
    with explaining(rmsnorm_crash, inplace_crash(INPLACE_HINT)):
        got, exp = both(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16)(x).backward(dy)", init=([16], {}), load=sd,
                        calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "RMSNorm(16)(x).backward(dy)", GRAD, HINT)


@check(0)
def check_input_not_modified(sub, g):
    """RMSNorm leaves its input tensor unchanged"""
    unchanged_input(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)(x)", randn(g, 2, 5, 16),
                    INPLACE_HINT, init=([16], {}), load=weights(g, 16))
