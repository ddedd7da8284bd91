"""RMSNorm against the reference: values, eps, bfloat16, gradients, in-place (hidden)."""
import torch

from grader.compare import BF16_ULP, FP32, GRAD, CheckFailure
from grader.diagnose import explaining, rmsnorm_crash, rmsnorm_variants
from grader.harness import both, call, check, compare_outputs, grad_check, only, randn

HINT = "y = x / sqrt(mean(x**2, dim=-1, keepdim=True) + eps) * weight, statistics in float32"


def weights(g, dim):
    return {"weight": 1.0 + 0.3 * torch.randn(dim, generator=g)}


@check(4)
def test_matches_reference(sub, ref, g):
    """RMSNorm matches the reference on several shapes, T = 1 and a non-contiguous input"""
    sd = weights(g, 16)
    xs = [randn(g, 2, 5, 16, scale=2.0), randn(g, 1, 1, 16), randn(g, 3, 16), randn(g, 4, 6, 16).transpose(0, 1),
          randn(g, 1, 9, 16, scale=0.1) + 0.5]
    with explaining(rmsnorm_crash):
        compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16)", xs, FP32, HINT,
                        lambda x: rmsnorm_variants(x, sd["weight"], 1e-6), init=([16], {}), load=sd)


@check(1)
def test_eps(sub, ref, g):
    """eps sits inside the square root: tiny inputs, and eps = 0.1"""
    sd = weights(g, 16)
    tiny = randn(g, 2, 4, 16, scale=1e-3)
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16, eps=1e-6)", [tiny], FP32, HINT,
                    lambda x: rmsnorm_variants(x, sd["weight"], 1e-6), init=([16], {}), load=sd)
    x = randn(g, 2, 4, 16, scale=0.5)

    def variants(x):
        # first: with eps = 0.1 asked for, the default 1e-6 also looks like "eps is left out"
        ignored = {"the eps argument is ignored (the default 1e-6 is used)":
                   (rmsnorm_variants(x, sd["weight"], 1e-6)["eps is left out"][0],
                    "store the argument in __init__ (self.eps = eps) and use self.eps in forward")}
        return {**ignored, **rmsnorm_variants(x, sd["weight"], 0.1)}
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16, eps=0.1)", [x], FP32, HINT, variants,
                    init=([16], {"eps": 0.1}), load=sd)


@check(2)
def test_bfloat16(sub, ref, g):
    """A bfloat16 RMSNorm on bfloat16 input: statistics in float32, result bfloat16"""
    sd = weights(g, 256)
    x = randn(g, 4, 16, 256, scale=3.0, dtype=torch.bfloat16)
    compare_outputs(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(256).to(torch.bfloat16)", [x], BF16_ULP,
                    "compute the statistics on x.float(), cast back with .type_as(x), then multiply by weight",
                    lambda x: rmsnorm_variants(x, sd["weight"].bfloat16(), 1e-6), init=([256], {}), load=sd,
                    dtype="bfloat16")


@check(3)
def test_gradients(sub, ref, g):
    """Gradients of the input and of weight match the reference"""
    sd = weights(g, 16)
    x, up = randn(g, 3, 5, 16, scale=2.0), randn(g, 3, 5, 16)
    got, exp = both(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16)(x).backward(dy)", init=([16], {}), load=sd,
                    calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "RMSNorm(16)(x).backward(dy)", GRAD, HINT)


@check(1)
def test_input_not_modified(sub, g):
    """RMSNorm leaves its input tensor unchanged"""
    x = randn(g, 2, 5, 16)
    got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)(x)", init=([16], {}), calls=[call(x)])
    if got["results"][0]["inputs_changed"][0]:
        raise CheckFailure("x after RMSNorm(16)(x)", "x unchanged", "x was modified in place",
                           "avoid in-place operations (x.mul_, x /= ...) on the input")
