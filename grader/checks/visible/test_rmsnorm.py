"""RMSNorm: parameters, shapes and the properties of the formula (visible)."""
import torch

from grader.compare import CheckFailure, assert_equal, fmt_shape
from grader.diagnose import explaining, rmsnorm_crash
from grader.harness import call, check, only, randn


@check(1, visible=True)
def test_parameters(sub):
    """RMSNorm(16) has one parameter, weight of shape (16,) filled with ones, and stores eps"""
    got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16, eps=1e-5)", init=([16], {"eps": 1e-5}), want=["params"],
               attrs=["eps"])
    keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
    assert_equal(keys, {"weight": (16,)}, "RMSNorm(16).state_dict() names and shapes",
                 "self.weight = nn.Parameter(torch.ones(dim)), and no bias")
    if not torch.equal(got["params"]["weight"], torch.ones(16)):
        raise CheckFailure("RMSNorm(16).weight at initialisation", "all ones", "other values",
                           "a fresh norm must be a pure rescaling: torch.ones(dim)")
    assert_equal(got["attrs"]["eps"], 1e-5, "RMSNorm(16, eps=1e-5).eps", "store the eps argument as self.eps")


@check(1, visible=True)
def test_output_shape(sub, g):
    """RMSNorm keeps the input's shape and float32 dtype, for 3-D and 2-D inputs"""
    xs = [randn(g, 2, 5, 16), randn(g, 3, 16)]
    with explaining(rmsnorm_crash):
        got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)(x)", init=([16], {}), calls=[call(x) for x in xs])
    for x, r in zip(xs, got["results"]):
        y = r["output"]
        if not isinstance(y, torch.Tensor):
            raise CheckFailure(f"RMSNorm(16)(x) with x of shape {fmt_shape(x)}", "a tensor", type(y).__name__)
        assert_equal(fmt_shape(y), fmt_shape(x), f"RMSNorm(16)(x) output shape for x of shape {fmt_shape(x)}",
                     "normalise over the last dimension with keepdim=True so the statistic broadcasts back")
        assert_equal(str(y.dtype), "torch.float32", "RMSNorm(16)(x) dtype for a float32 x")


@check(1, visible=True)
def test_unit_rms(sub, g):
    """With weight = 1 every output vector has root-mean-square 1 (mean not removed)"""
    x = randn(g, 2, 7, 32, scale=3.0) + 2.0
    got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(32)(x)", init=([32], {}), calls=[call(x)])
    y = got["results"][0]["output"]
    rms = y.pow(2).mean(-1).sqrt()
    if not torch.allclose(rms, torch.ones_like(rms), atol=1e-3):
        raise CheckFailure("sqrt(mean(y**2)) over the last dimension of y = RMSNorm(32)(x), weight = 1",
                           "1.0 for every vector (tolerance 1e-3)",
                           f"values from {rms.min().item():.4g} to {rms.max().item():.4g}",
                           "divide x by sqrt(mean(x**2, dim=-1, keepdim=True) + eps) over the last dimension")
    if abs(y.mean().item()) < 0.2:
        raise CheckFailure("mean of RMSNorm(32)(x) for x with mean 2", "a clearly positive mean (RMSNorm keeps it)",
                           f"{y.mean().item():.3g}", "RMSNorm does not subtract the mean: that is LayerNorm")


@check(1, visible=True)
def test_scale_invariance(sub, g):
    """RMSNorm(a * x) == RMSNorm(x) for a = 0.5 and 20"""
    x = randn(g, 2, 5, 16)
    got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)", init=([16], {}), calls=[call(x), call(0.5 * x), call(20 * x)])
    y, *scaled = (r["output"] for r in got["results"])
    for a, ya in zip((0.5, 20), scaled):
        if not torch.allclose(ya, y, atol=1e-4, rtol=1e-4):
            err = (ya - y).abs().max().item()
            raise CheckFailure(f"RMSNorm(16)({a} * x) against RMSNorm(16)(x)", "equal (tolerance 1e-4)",
                               f"max abs difference {err:.3g}",
                               "dividing by the root mean square removes any scale; check the formula")
