"""FeedForward and TransformerBlock: parameters, shapes, causality, residual paths.

The TransformerBlock checks run your block.py around the grader's stand-in norm, attention and
MLP (grader/standins), so they judge the wiring alone: a bug in your attention costs the
attention checks, not these. The stand-ins take the place of your components whether block.py
imports them or defines them itself under their API names. The residual-paths check scores: its
expected outputs are computed here with the stand-ins. The others are INFO (0 points): names, shapes
and causality around causal stand-ins are things wrong wirings have too; the reference checks score.
"""
import torch

from grader.compare import FP32, assert_close, assert_equal, compared, fmt_shape, is_close, require, require_tensor
from grader.diagnose.crashes import bypassed, explaining
from grader.harness import (
    BLOCK_PATCH,
    BLOCK_STANDINS,
    both,
    call,
    check,
    only,
    randn,
    randomize,
    reference_state,
    standin_block_parts,
)
from kit.outcome import CheckFailure, T

BLOCK_KEYS = {"input_layernorm.weight": (32,), "self_attn.q_proj.weight": (32, 32),
              "self_attn.k_proj.weight": (32, 32), "self_attn.v_proj.weight": (32, 32),
              "self_attn.o_proj.weight": (32, 32), "post_attention_layernorm.weight": (32,),
              "mlp.gate_proj.weight": (128, 32), "mlp.up_proj.weight": (128, 32), "mlp.down_proj.weight": (32, 128)}
FFN_HINT = "down_proj(silu(gate_proj(x)) * up_proj(x))"  # code: shown as it is in every language
WIRING_HINT = "h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))"


@check(0)
def check_feedforward_parameters(sub, ref, g):
    """FeedForward(C) has gate_proj, up_proj (C -> 64 * ceil(8C/3/64)) and down_proj back, no bias"""
    for hidden, inter, width in ((32, None, 128), (32, 48, 48), (48, None, 128), (100, None, 320)):
        got = only(sub, "block", "FeedForward", f"FeedForward({hidden}, intermediate_size={inter})",
                   init=([hidden], {"intermediate_size": inter}))
        keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
        want = {"gate_proj.weight": (width, hidden), "up_proj.weight": (width, hidden),
                "down_proj.weight": (hidden, width)}
        assert_equal(keys, want, T("{call}.state_dict() names and shapes",
                                   call=f"FeedForward({hidden}, intermediate_size={inter})"),
                     T("the default is 64 * math.ceil(8 * hidden_size / 3 / 64) (128 for 32 and 48, 320 for 100); "
                       "bias=False"))
    sd = reference_state(ref, "block", "FeedForward", 32, g=g)
    x = randn(g, 2, 3, 32)
    got, exp = both(sub, ref, "block", "FeedForward", T("FeedForward(32)(x) with loaded weights"), init=([32], {}),
                    load=sd, calls=[call(x)])
    assert_close(got["results"][0]["output"], exp["results"][0]["output"], "FeedForward(32)(x)", FP32, FFN_HINT,
                 ref.variants("ffn_variants", x=x, sd=sd))


def hybrid(sub, ref, g, what, kwargs, calls=(), want=(), load=True):
    """The block over the stand-ins on both sides, with the reference's random weights loaded."""
    sd = reference_state(ref, "block", "TransformerBlock", 32, 4, max_seq_len=16,
                         **{k: v for k, v in kwargs.items() if k != "max_seq_len"}, g=g) if load else None
    init = ([32, 4], {"max_seq_len": 16, **kwargs})
    with explaining(bypassed(sub, "block", "TransformerBlock", init, BLOCK_STANDINS, BLOCK_PATCH)):
        got, exp = both(sub, ref, "block", "TransformerBlock", what, init=init, load=sd, calls=list(calls), want=want,
                        standins=BLOCK_STANDINS, patch=BLOCK_PATCH)
    return got, exp, sd


@check(0)
def check_block_parameters(sub, ref, g):
    """TransformerBlock(32, 4) has input_layernorm, self_attn, post_attention_layernorm, mlp, two distinct norms"""
    x = randn(g, 2, 5, 32)
    got, exp, _ = hybrid(sub, ref, g, "TransformerBlock(32, 4)", {}, want=["structure"], load=False)
    keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
    assert_equal(keys, BLOCK_KEYS, T("{call}.state_dict() names and shapes", call="TransformerBlock(32, 4)"),
                 T("build self.input_layernorm = RMSNorm(...), self.self_attn = CausalSelfAttention(...), "
                   "self.post_attention_layernorm = RMSNorm(...), self.mlp = FeedForward(...)"))
    ids = {name: i for name, _, i, _ in got["structure"]["modules"]}
    require(ids.get("input_layernorm") != ids.get("post_attention_layernorm"),
            T("input_layernorm and post_attention_layernorm"), T("two separate RMSNorm modules"),
            T("the same module twice"), T("create two RMSNorm objects: each sublayer needs its own weight"))
    # the block's arguments reach its components (their parameter shapes show it), and the wiring computes
    for kwargs, changed, hint in (
            ({"intermediate_size": 48}, {"mlp.gate_proj.weight": (48, 32), "mlp.up_proj.weight": (48, 32),
                                         "mlp.down_proj.weight": (32, 48)},
             T("pass intermediate_size on: self.mlp = FeedForward(hidden_size, intermediate_size)")),
            ({"num_kv_heads": 2}, {"self_attn.k_proj.weight": (16, 32), "self_attn.v_proj.weight": (16, 32)},
             T("pass num_kv_heads on: CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, "
               "rope_theta)"))):
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        other, _, _ = hybrid(sub, ref, g, f"TransformerBlock(32, 4, {args})", kwargs, load=False)
        assert_equal({k: tuple(v[0]) for k, v in other["keys"].items()}, {**BLOCK_KEYS, **changed},
                     T("{call}.state_dict() names and shapes", call=f"TransformerBlock(32, 4, {args})"), hint)
        got, exp, _ = hybrid(sub, ref, g, T("{call} over stand-ins", call=f"TransformerBlock(32, 4, {args})(x)"),
                             kwargs, calls=[call(x)])
        assert_close(got["results"][0]["output"], exp["results"][0]["output"],
                     T("{call} over the grader's stand-ins", call=f"TransformerBlock(32, 4, {args})(x)"), FP32,
                     WIRING_HINT)


@check(0)
def check_block_shape(sub, g):
    """TransformerBlock keeps (B, T, C), also with grouped-query attention and T = 1"""
    for Hkv, shape in ((None, (2, 7, 32)), (2, (1, 1, 32))):
        x = randn(g, *shape)
        got = only(sub, "block", "TransformerBlock", f"TransformerBlock(32, 4, num_kv_heads={Hkv})(x)",
                   init=([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16}), calls=[call(x)],
                   standins=BLOCK_STANDINS, patch=BLOCK_PATCH)
        y = got["results"][0]["output"]
        require_tensor(y, x.shape, T("{call} for x of shape {shape}", call="TransformerBlock(32, 4)(x)",
                                     shape=fmt_shape(x)),
                       T("each residual branch adds to the stream: (B, T, C) in, (B, T, C) out"))


@check(0)
def check_block_causal(sub, ref, g):
    """Changing token t never changes the block's outputs before t"""
    x = randn(g, 2, 9, 32)
    x2 = x.clone()
    x2[:, 5] += 3.0
    got, exp, _ = hybrid(sub, ref, g, T("{call} over stand-ins", call="TransformerBlock(32, 4)"), {},
                         calls=[call(x), call(x2)])
    y, y2 = (require_tensor(r["output"], x.shape, "TransformerBlock(32, 4)(x)") for r in got["results"])
    require(torch.allclose(y[:, :5], y2[:, :5], atol=1e-5),
            T("block outputs before position 5 after changing the input at position 5"), T("unchanged"), T("changed"),
            T("the block must only pass information forward in time: its attention reads x through input_layernorm"))
    for a, e in zip((y, y2), (r["output"] for r in exp["results"])):
        assert_close(a[:, :1], e[:, :1], T("TransformerBlock(32, 4)(x) at position 0 over the grader's stand-ins"),
                     FP32,
                     WIRING_HINT)


PATHS_HINT = T("h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h)): each residual "
               "adds to the un-normalised stream (x, not input_layernorm(x)), and no norm sits on the stream itself")


@check(2)
def check_residual_paths(sub, ref, g):
    """Two residual paths: zeroing o_proj leaves x + mlp(post_attention_layernorm(x)), zeroing both gives x"""
    base = randomize(({k: (s, "float32") for k, s in BLOCK_KEYS.items()}, []), g)
    x = randn(g, 2, 6, 32)
    parts = standin_block_parts(base, 32, 4)
    with torch.no_grad():  # what a pre-norm block around the stand-ins gives when a sublayer outputs zero
        expected = [x, x + parts["mlp"](parts["n2"](x)), x + parts["attn"](parts["n1"](x))]
    meaning = [T("both sublayers output zero, so the block must be the identity"),
               T("attention outputs zero, so h = x and the block is x + mlp(post_attention_layernorm(x))"),
               T("the MLP outputs zero, so the block is x + self_attn(input_layernorm(x))")]
    init = ([32, 4], {"max_seq_len": 16})
    cases = []
    with explaining(bypassed(sub, "block", "TransformerBlock", init, BLOCK_STANDINS, BLOCK_PATCH)):
        for zero, exp, why in zip((("self_attn.o_proj.weight", "mlp.down_proj.weight"), ("self_attn.o_proj.weight",),
                                   ("mlp.down_proj.weight",)), expected, meaning):
            sd = {k: (torch.zeros_like(v) if k in zero else v) for k, v in base.items()}
            names = T("{first} and {second}", first=zero[0], second=zero[1]) if len(zero) == 2 else zero[0]
            what = T("TransformerBlock(32, 4)(x) with {names} set to zero (around the grader's stand-ins)", names=names)
            got = only(sub, "block", "TransformerBlock", what, init=init, load=sd, standins=BLOCK_STANDINS,
                       patch=BLOCK_PATCH, calls=[call(x)])
            y = require_tensor(got["results"][0]["output"], exp.shape, what)
            # the known wrong wirings on the same weights, only to name a mistake (the points rest on `expected`)
            cases.append((what, why, exp, y, ref.variants("block_variants", x=x, sd=sd, C=32, H=4)))
        for what, why, exp, y, _ in cases:
            err = (y - exp).abs().max().item()
            compared()
            if not err <= 1e-5:  # NaN fails too
                found = _wiring(cases)
                raise CheckFailure(what, why, T("max abs difference {err:.3g}", err=err),
                                   found[1] if found else PATHS_HINT,
                                   found[0] if found else None)


def _wiring(cases):
    """The first known wrong wiring whose output matches the block's in every case, as ``(name, hint)``."""
    for name, (_, hint) in cases[0][4].items():
        def matches(case):
            make = case[4].get(name, (None, None))[0]
            try:
                value = make() if callable(make) else make
            except Exception:  # noqa: BLE001 - a variant that does not apply here
                return False
            return isinstance(value, torch.Tensor) and is_close(case[3], value, FP32)
        if all(matches(c) for c in cases):
            return name, hint
    return None
