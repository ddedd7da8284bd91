"""RMSNorm: parameters, shapes and the properties of the formula.

The parameters check scores: the weight is confirmed by use, on vectors where every RMSNorm-like
formula gives x * weight. The others are INFO (0 points): a shape, a unit root-mean-square or scale
invariance is something many wrong functions have (``torch.sign`` has all three), so the points
sit with the checks that compare values; these say which property broke.
"""
import torch

from grader.compare import FP32, assert_close, assert_equal, compared, fmt_shape, require, require_tensor
from grader.diagnose.crashes import explaining, no_attribute, rmsnorm_crash
from grader.harness import both, call, check, only, randn
from kit.outcome import CheckFailure, Kind, T

HINT = T("y = x / sqrt(mean(x**2, dim=-1, keepdim=True) + eps) * weight, statistics in float32")


def unit_vectors(g, *shape):
    """Vectors of +1 and -1 with as many of each: root-mean-square 1 and mean 0, so y = x * weight."""
    x = torch.ones(*shape)
    x[..., shape[-1] // 2:] = -1
    order = torch.argsort(torch.rand(*shape, generator=g), dim=-1)
    return torch.gather(x, -1, order)


@check(1)
def check_parameters(sub, ref, g):
    """RMSNorm(16) has one parameter, weight of shape (16,) filled with ones, stores eps, and scales by weight"""
    w = 1.0 + 0.3 * torch.randn(16, generator=g)
    x = unit_vectors(g, 2, 3, 16)
    got, exp = both(sub, ref, "rmsnorm", "RMSNorm", "RMSNorm(16, eps=1e-5)", init=([16], {"eps": 1e-5}),
                    want=["params"], attrs=["eps"])
    keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
    assert_equal(keys, {"weight": (16,)}, T("{call}.state_dict() names and shapes", call="RMSNorm(16)"),
                 T("self.weight = nn.Parameter(torch.ones(dim)), and no bias"))
    require(torch.equal(got["params"]["weight"], torch.ones(16)), T("RMSNorm(16).weight at initialisation"),
            T("all ones"), T("other values"), T("a fresh norm must be a pure rescaling: torch.ones(dim)"))
    eps = got["attrs"]["eps"]
    if isinstance(eps, dict) and eps.get("__missing__"):  # the worker's mark for an absent attribute
        compared()
        likely, hint = no_attribute("RMSNorm", "eps")
        raise CheckFailure("RMSNorm(16, eps=1e-5).eps", "1e-05", T("RMSNorm has no attribute eps"), hint, likely,
                           Kind.WRONG_STRUCTURE)
    assert_equal(eps, 1e-5, "RMSNorm(16, eps=1e-5).eps", T("store the eps argument as self.eps"))
    # the weight is confirmed by use: on vectors already of root-mean-square 1, the output is x * weight
    got, exp = both(sub, ref, "rmsnorm", "RMSNorm", T("RMSNorm(16, eps=1e-5) with a loaded weight"),
                    init=([16], {"eps": 1e-5}), load={"weight": w}, calls=[call(x)])
    assert_close(got["results"][0]["output"], exp["results"][0]["output"],
                 T("RMSNorm(16)(x) with weight w, for vectors x of +1 and -1 (root-mean-square 1: y = x * w)"), FP32,
                 T("multiply the normalised x by self.weight, element by element"))


@check(0)
def check_output_shape(sub, g):
    """RMSNorm keeps the input's shape and float32 dtype, for 3-D and 2-D inputs"""
    xs = [randn(g, 2, 5, 16), randn(g, 3, 16)]
    with explaining(rmsnorm_crash):
        got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)(x)", init=([16], {}), calls=[call(x) for x in xs])
    for x, r in zip(xs, got["results"]):
        y = r["output"]
        require_tensor(y, x.shape, T("{call} for x of shape {shape}", call="RMSNorm(16)(x)", shape=fmt_shape(x)),
                       T("normalise over the last dimension with keepdim=True so the statistic broadcasts back"))
        assert_equal(str(y.dtype), "torch.float32", T("RMSNorm(16)(x) dtype for a float32 x"))


@check(0)
def check_unit_rms(sub, g):
    """With weight = 1 every output vector has root-mean-square 1 (mean not removed)"""
    x = randn(g, 2, 7, 32, scale=3.0) + 2.0
    with explaining(rmsnorm_crash):
        got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(32)(x)", init=([32], {}), calls=[call(x)])
    y = require_tensor(got["results"][0]["output"], x.shape,
                       T("{call} for x of shape {shape}", call="RMSNorm(32)(x)", shape=fmt_shape(x)),
                       T("normalise over the last dimension with keepdim=True"))
    rms = y.float().pow(2).mean(-1).sqrt()
    require(torch.allclose(rms, torch.ones_like(rms), atol=1e-3),
            T("sqrt(mean(y**2)) over the last dimension of y = RMSNorm(32)(x), weight = 1"),
            T("1.0 for every vector (tolerance 1e-3)"),
            T("values from {low:.4g} to {high:.4g}", low=rms.min().item(), high=rms.max().item()),
            T("divide x by sqrt(mean(x**2, dim=-1, keepdim=True) + eps) over the last dimension"))
    require(abs(y.float().mean().item()) >= 0.2, T("mean of RMSNorm(32)(x) for x with mean 2"),
            T("a clearly positive mean (RMSNorm keeps it)"), f"{y.float().mean().item():.3g}",
            T("RMSNorm does not subtract the mean: that is LayerNorm"))


@check(0)
def check_scale_invariance(sub, g):
    """RMSNorm(a * x) == RMSNorm(x) for a = 0.5 and 20"""
    x = randn(g, 2, 5, 16)
    got = only(sub, "rmsnorm", "RMSNorm", "RMSNorm(16)", init=([16], {}), calls=[call(x), call(0.5 * x), call(20 * x)])
    outs = [require_tensor(r["output"], x.shape, "RMSNorm(16)(a * x)", HINT) for r in got["results"]]
    for a, ya in zip((0.5, 20), outs[1:]):
        err = (ya.float() - outs[0].float()).abs().max().item()
        require(err <= 1e-4 * (1 + outs[0].float().abs().max().item()),
                T("RMSNorm(16)({a} * x) against RMSNorm(16)(x)", a=a), T("equal (tolerance 1e-4)"),
                T("max abs difference {err:.3g}", err=err),
                T("dividing by the root mean square removes any scale; check the formula"))
