"""FeedForward against the reference, and the block's wiring over stand-in components (hidden).

The scored TransformerBlock checks run your block.py around the grader's
stand-in norm, attention and MLP and compare with the reference block.py
around the same stand-ins. The last checks (0 points, INFO) run your block with
your own components: they only tell you whether everything works together.
"""
import torch

from grader.compare import BF16, FP32, FP32_DEEP, GRAD, CheckFailure
from grader.diagnose import block_variants, ffn_variants
from grader.harness import both, call, check, compare_outputs, grad_check, only, randn, reference_state, standin

HINT = "h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))"
FFN_HINT = "down_proj(silu(gate_proj(x)) * up_proj(x))"
HYBRID = {"rmsnorm": "rmsnorm", "attention": "attention"}
PATCH = {"FeedForward": standin("FeedForward", "block")}
LABEL = "TransformerBlock(32, 4, rms_norm_eps=0.1, rope_theta=50) over stand-ins"


@check(3)
def test_feedforward_values(sub, ref, g):
    """FeedForward (SwiGLU) matches the reference"""
    sd = reference_state(ref, "block", "FeedForward", 32, g=g)
    xs = [randn(g, 2, 5, 32), randn(g, 1, 1, 32), randn(g, 3, 32)]
    compare_outputs(sub, ref, "block", "FeedForward", "FeedForward(32)", xs, FP32, FFN_HINT,
                    lambda x: ffn_variants(x, sd), init=([32], {}), load=sd)


@check(1)
def test_feedforward_gradients(sub, ref, g):
    """FeedForward: gradients of the input and of the three projections match"""
    sd = reference_state(ref, "block", "FeedForward", 32, g=g)
    x, up = randn(g, 2, 5, 32), randn(g, 2, 5, 32)
    got, exp = both(sub, ref, "block", "FeedForward", "FeedForward(32)(x).backward(dy)", init=([32], {}), load=sd,
                    calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "FeedForward(32)(x).backward(dy)", GRAD, FFN_HINT)


def init(Hkv=None, eps=0.1, theta=50.0):
    return ([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16, "rms_norm_eps": eps, "rope_theta": theta})


def state(ref, g, Hkv=None):
    return reference_state(ref, "block", "TransformerBlock", 32, 4, Hkv, max_seq_len=16, g=g)


@check(4)
def test_block_assembly(sub, ref, g):
    """The block's wiring matches the reference block around the same stand-in components"""
    sd = state(ref, g)
    xs = [randn(g, 2, 7, 32), randn(g, 3, 16, 32), randn(g, 4, 2, 32).transpose(0, 1)]
    compare_outputs(sub, ref, "block", "TransformerBlock", LABEL, xs, FP32, HINT,
                    lambda x: block_variants(x, sd, 32, 4, eps=0.1, theta=50.0), init=init(), load=sd,
                    hybrid=HYBRID, patch=PATCH)


@check(1)
def test_block_assembly_gqa(sub, ref, g):
    """The wiring also holds with grouped-query attention and T = 1"""
    sd = state(ref, g, 2)
    compare_outputs(sub, ref, "block", "TransformerBlock", LABEL.replace("4,", "4, num_kv_heads=2,"),
                    [randn(g, 2, 5, 32), randn(g, 1, 1, 32)], FP32, HINT,
                    lambda x: block_variants(x, sd, 32, 4, 2, eps=0.1, theta=50.0), init=init(2), load=sd,
                    hybrid=HYBRID, patch=PATCH)


@check(3)
def test_block_gradients(sub, ref, g):
    """Gradients of the input and of every parameter match, through both residual paths"""
    sd = state(ref, g)
    x, up = randn(g, 2, 6, 32), randn(g, 2, 6, 32)
    label = LABEL + ": backward(dy)"
    got, exp = both(sub, ref, "block", "TransformerBlock", label, init=init(), load=sd, calls=[call(x, grad=up)],
                    hybrid=HYBRID, patch=PATCH)
    grad_check(got["results"][0], exp["results"][0], label, GRAD, HINT)


@check(1)
def test_block_bfloat16(sub, ref, g):
    """A bfloat16 block on bfloat16 input matches the reference"""
    sd = state(ref, g)
    x = randn(g, 2, 6, 32, dtype=torch.bfloat16)
    compare_outputs(sub, ref, "block", "TransformerBlock", LABEL + ".to(torch.bfloat16)", [x], BF16, HINT,
                    init=init(), load=sd, dtype="bfloat16", hybrid=HYBRID, patch=PATCH)


@check(1)
def test_block_input_not_modified(sub, g):
    """TransformerBlock leaves its input tensor unchanged"""
    x = randn(g, 2, 5, 32)
    got = only(sub, "block", "TransformerBlock", LABEL, init=init(), calls=[call(x)], hybrid=HYBRID, patch=PATCH)
    if got["results"][0]["inputs_changed"][0]:
        raise CheckFailure("x after TransformerBlock(32, 4)(x)", "x unchanged", "x was modified in place",
                           "write h = x + ..., not x += ...: the residual stream must not be overwritten")


@check(0)
def test_block_own_components(sub, ref, g):
    """Your block with your own RMSNorm, attention and MLP against the reference (outputs, gradients)"""
    sd = reference_state(ref, "block", "TransformerBlock", 32, 4, max_seq_len=16, g=g)
    xs = [randn(g, 2, 7, 32), randn(g, 1, 1, 32)]
    hint = "not scored: when the scored checks pass, a difference here comes from a component; see its checks"
    compare_outputs(sub, ref, "block", "TransformerBlock", "TransformerBlock(32, 4)", xs, FP32_DEEP, hint,
                    init=([32, 4], {"max_seq_len": 16}), load=sd)
    x, up = randn(g, 2, 6, 32), randn(g, 2, 6, 32)
    got, exp = both(sub, ref, "block", "TransformerBlock", "TransformerBlock(32, 4)(x).backward(dy)",
                    init=([32, 4], {"max_seq_len": 16}), load=sd, calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "TransformerBlock(32, 4)(x).backward(dy)", GRAD, hint)
