"""FeedForward and TransformerBlock: parameters, shapes, causality, residual paths (visible).

The TransformerBlock checks run your block.py around the grader's stand-in
norm, attention and MLP (see grader/standins), so they judge the wiring alone:
a bug in your attention costs the attention checks, not these.
"""
import torch

from grader.compare import CheckFailure, assert_equal, fmt_shape
from grader.diagnose import standin_block_parts
from grader.harness import call, check, only, randn, randomize, standin

HYBRID = {"rmsnorm": "rmsnorm", "attention": "attention"}
PATCH = {"FeedForward": standin("FeedForward", "block")}
BLOCK_KEYS = {"input_layernorm.weight": (32,), "self_attn.q_proj.weight": (32, 32),
              "self_attn.k_proj.weight": (32, 32), "self_attn.v_proj.weight": (32, 32),
              "self_attn.o_proj.weight": (32, 32), "post_attention_layernorm.weight": (32,),
              "mlp.gate_proj.weight": (128, 32), "mlp.up_proj.weight": (128, 32), "mlp.down_proj.weight": (32, 128)}


@check(1, visible=True)
def test_feedforward_parameters(sub):
    """FeedForward(32) has gate_proj, up_proj (32 -> 128) and down_proj (128 -> 32), no bias"""
    for inter, hidden in ((None, 128), (48, 48)):
        got = only(sub, "block", "FeedForward", f"FeedForward(32, intermediate_size={inter})",
                   init=([32], {"intermediate_size": inter}))
        keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
        want = {"gate_proj.weight": (hidden, 32), "up_proj.weight": (hidden, 32), "down_proj.weight": (32, hidden)}
        assert_equal(keys, want, f"FeedForward(32, intermediate_size={inter}).state_dict() names and shapes",
                     "the default is 64 * math.ceil(8 * hidden_size / 3 / 64) (128 for 32); bias=False")


@check(1, visible=True)
def test_block_parameters(sub):
    """TransformerBlock(32, 4) has input_layernorm, self_attn, post_attention_layernorm, mlp, two distinct norms"""
    got = only(sub, "block", "TransformerBlock", "TransformerBlock(32, 4)", init=([32, 4], {"max_seq_len": 16}),
               want=["structure"], hybrid=HYBRID, patch=PATCH)
    keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
    assert_equal(keys, BLOCK_KEYS, "TransformerBlock(32, 4).state_dict() names and shapes",
                 "build self.input_layernorm = RMSNorm(...), self.self_attn = CausalSelfAttention(...), "
                 "self.post_attention_layernorm = RMSNorm(...), self.mlp = FeedForward(...)")
    # the block's arguments reach its components: their parameter shapes show it
    for kwargs, changed, hint in (
            ({"intermediate_size": 48}, {"mlp.gate_proj.weight": (48, 32), "mlp.up_proj.weight": (48, 32),
                                         "mlp.down_proj.weight": (32, 48)},
             "pass intermediate_size on: self.mlp = FeedForward(hidden_size, intermediate_size)"),
            ({"num_kv_heads": 2}, {"self_attn.k_proj.weight": (16, 32), "self_attn.v_proj.weight": (16, 32)},
             "pass num_kv_heads on: CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, "
             "rope_theta)")):
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        other = only(sub, "block", "TransformerBlock", f"TransformerBlock(32, 4, {args})",
                     init=([32, 4], {"max_seq_len": 16, **kwargs}), hybrid=HYBRID, patch=PATCH)
        assert_equal({k: tuple(v[0]) for k, v in other["keys"].items()}, {**BLOCK_KEYS, **changed},
                     f"TransformerBlock(32, 4, {args}).state_dict() names and shapes", hint)
    ids = {name: i for name, _, i in got["structure"]["modules"]}
    if ids.get("input_layernorm") == ids.get("post_attention_layernorm"):
        raise CheckFailure("input_layernorm and post_attention_layernorm", "two separate RMSNorm modules",
                           "the same module twice", "create two RMSNorm objects: each sublayer needs its own weight")


@check(1, visible=True)
def test_block_shape(sub, g):
    """TransformerBlock keeps (B, T, C), also with grouped-query attention and T = 1"""
    for Hkv, shape in ((None, (2, 7, 32)), (2, (1, 1, 32))):
        x = randn(g, *shape)
        got = only(sub, "block", "TransformerBlock", f"TransformerBlock(32, 4, num_kv_heads={Hkv})(x)",
                   init=([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16}), calls=[call(x)], hybrid=HYBRID,
                   patch=PATCH)
        y = got["results"][0]["output"]
        assert_equal(fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__, fmt_shape(x),
                     f"TransformerBlock(32, 4)(x) shape for x of shape {fmt_shape(x)}")


@check(1, visible=True)
def test_block_causal(sub, g):
    """Changing token t never changes the block's outputs before t"""
    x = randn(g, 2, 9, 32)
    x2 = x.clone()
    x2[:, 5] += 3.0
    got = only(sub, "block", "TransformerBlock", "TransformerBlock(32, 4)", init=([32, 4], {"max_seq_len": 16}),
               calls=[call(x), call(x2)], hybrid=HYBRID, patch=PATCH)
    y, y2 = got["results"][0]["output"], got["results"][1]["output"]
    if not torch.allclose(y[:, :5], y2[:, :5], atol=1e-5):
        raise CheckFailure("block outputs before position 5 after changing the input at position 5",
                           "unchanged", "changed", "the block must only pass information forward in time: its attention reads x through input_layernorm")


@check(2, visible=True)
def test_residual_paths(sub, g):
    """Two residual paths: zeroing o_proj leaves x + mlp(post_attention_layernorm(x)), zeroing both gives x"""
    base = randomize({k: torch.empty(s) for k, s in BLOCK_KEYS.items()}, g)
    x = randn(g, 2, 6, 32)
    parts = standin_block_parts(base, 32, 4)
    cases = []
    for zero in (("self_attn.o_proj.weight", "mlp.down_proj.weight"), ("self_attn.o_proj.weight",),
                 ("mlp.down_proj.weight",)):
        sd = {k: (torch.zeros_like(v) if k in zero else v) for k, v in base.items()}
        cases.append((zero, sd))
    with torch.no_grad():
        attn_only = x + parts["attn"](parts["n1"](x))
        expected = [x, x + parts["mlp"](parts["n2"](x)), attn_only]
    meaning = ["both sublayers output zero, so the block must be the identity",
               "attention outputs zero, so h = x and the block is x + mlp(post_attention_layernorm(x))",
               "the MLP outputs zero, so the block is x + self_attn(input_layernorm(x))"]
    for (zero, sd), exp, why in zip(cases, expected, meaning):
        got = only(sub, "block", "TransformerBlock", f"TransformerBlock(32, 4) with {' and '.join(zero)} zeroed",
                   init=([32, 4], {"max_seq_len": 16}), load=sd, hybrid=HYBRID, patch=PATCH, calls=[call(x)])
        y = got["results"][0]["output"]
        if not (isinstance(y, torch.Tensor) and y.shape == exp.shape and torch.allclose(y, exp, atol=1e-5)):
            raise CheckFailure(f"TransformerBlock(32, 4)(x) with {' and '.join(zero)} set to zero "
                               "(around the grader's stand-in norm, attention and MLP)",
                               why, "something else" if not isinstance(y, torch.Tensor) or y.shape != exp.shape
                               else f"max abs difference {(y - exp).abs().max().item():.3g}",
                               "h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))")
