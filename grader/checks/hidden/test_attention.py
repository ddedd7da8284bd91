"""RoPE and causal self-attention against the reference (hidden)."""
import torch

from grader.compare import BF16, FP32, GRAD, CheckFailure, assert_close
from grader.diagnose import attention_crash, attention_staged, attention_variants, explaining, rope_tables, rotate
from grader.harness import both, call, check, compare_outputs, grad_check, only, randn, reference_state

HINT = ("project, split heads (B, H, T, D), RoPE on q and k, repeat kv heads, scores / sqrt(head_dim), "
        "causal mask, softmax(dim=-1) in float32, @ v, merge heads, o_proj")


@check(2)
def test_rope_tables_values(sub, ref):
    """precompute_rope matches the reference for theta = 10000 and theta = 500"""
    for args in ((16, 12), (8, 5, 500.0)):
        got, exp = both(sub, ref, "attention", "precompute_rope", f"precompute_rope{args}", calls=[call(*args)])
        variants = {
            f"the exponent is {e}": (lambda e=e, a=args: torch.stack(rope_tables(a[0], a[1], *a[2:], exponent=e)),
                                     "inv_freq[i] = theta ** (-2i / head_dim), i.e. "
                                     "theta ** (-torch.arange(0, head_dim, 2) / head_dim)")
            for e in ("i/d", "+2i/d", "4i/d")}
        variants["positions start at 1"] = (lambda a=args: torch.stack(rope_tables(a[0], a[1], *a[2:], start=1)),
                                            "positions = torch.arange(max_seq_len), starting at 0")
        variants["the interleaved layout (each angle repeated twice in a row)"] = (
            lambda a=args: torch.stack(rope_tables(a[0], a[1], *a[2:], layout="interleaved")),
            "rotate-half layout: cat([angles, angles], dim=-1)")
        g_out, e_out = got["results"][0]["output"], exp["results"][0]["output"]
        if not (isinstance(g_out, list) and len(g_out) == 2):
            raise CheckFailure(f"precompute_rope{args}", "(cos, sin)", repr(type(g_out)), "return cos, sin")
        assert_close(torch.stack(list(g_out)) if all(isinstance(t, torch.Tensor) and t.shape == g_out[0].shape
                                                    for t in g_out) else g_out[0],
                     torch.stack(e_out), f"torch.stack(precompute_rope{args})", FP32,
                     "angles = outer(arange(T), theta ** (-arange(0, d, 2) / d)); cos/sin of cat([angles, angles])",
                     variants)


@check(2)
def test_apply_rope_values(sub, ref, g):
    """apply_rope matches the reference on (B, H, T, D) and (T, D) inputs"""
    cos, sin = rope_tables(16, 7)
    for x in (randn(g, 2, 3, 7, 16), randn(g, 7, 16)):
        got, exp = both(sub, ref, "attention", "apply_rope", "apply_rope(x, cos, sin)", calls=[call(x, cos, sin)])
        assert_close(got["results"][0]["output"], exp["results"][0]["output"],
                     f"apply_rope(x, cos, sin) for x of shape {tuple(x.shape)}", FP32,
                     "x * cos + rotate_half(x) * sin with rotate_half(x) = cat([-x2, x1], dim=-1)",
                     {"rotate_half returns cat([x2, -x1]) (the rotation runs backwards)":
                          (lambda: rotate(x, cos, sin, "half_flipped"), "rotate_half(x) = cat([-x2, x1], dim=-1)"),
                      "pairs are interleaved (2i, 2i+1) instead of (i, i + d/2)":
                          (lambda: rotate(x, cos, sin, "interleaved"), "split x into halves: x1, x2 = x.chunk(2, -1)"),
                      "x * cos - rotate_half(x) * sin":
                          (lambda: x * cos - rotate(x, cos, sin, "half") + x * cos, "add the rotated part: + rotate_half(x) * sin")})


def attn(sub, ref, g, C, H, Hkv, xs, label, T=16, theta=10000.0, tol=FP32, dtype=None):
    sd = reference_state(ref, "attention", "CausalSelfAttention", C, H, Hkv, T, theta, g=g)
    init = ([C, H], {"num_kv_heads": Hkv, "max_seq_len": T, "rope_theta": theta})
    # a crash with a known cause is named; a wrong output that no variant explains gets a staged best guess
    with explaining(attention_crash(H, Hkv), attention_staged(sub, ref, C, H, Hkv, theta, T)):
        return compare_outputs(sub, ref, "attention", "CausalSelfAttention", label, xs, tol, HINT,
                               lambda x: attention_variants(x, sd, H, Hkv, theta), init=init, load=sd, dtype=dtype)


@check(5)
def test_matches_reference(sub, ref, g):
    """Multi-head attention matches the reference: several shapes, T = 1, T = max_seq_len, non-contiguous x"""
    xs = [randn(g, 2, 7, 32), randn(g, 1, 1, 32), randn(g, 3, 16, 32), randn(g, 5, 2, 32).transpose(0, 1),
          randn(g, 1, 4, 32, scale=4.0)]
    attn(sub, ref, g, 32, 4, None, xs, "CausalSelfAttention(32, 4, max_seq_len=16)")
    attn(sub, ref, g, 48, 3, None, [randn(g, 2, 6, 48)], "CausalSelfAttention(48, 3, rope_theta=100)", theta=100.0)


@check(2)
def test_grouped_query(sub, ref, g):
    """Grouped-query attention (4 heads sharing 2 or 1 kv heads) matches the reference"""
    attn(sub, ref, g, 32, 4, 2, [randn(g, 2, 9, 32)], "CausalSelfAttention(32, 4, num_kv_heads=2)")
    attn(sub, ref, g, 32, 4, 1, [randn(g, 2, 9, 32)], "CausalSelfAttention(32, 4, num_kv_heads=1)")


@check(3)
def test_gradients(sub, ref, g):
    """Gradients of the input and of q_proj, k_proj, v_proj, o_proj match (MHA and GQA)"""
    for Hkv in (None, 2):
        sd = reference_state(ref, "attention", "CausalSelfAttention", 32, 4, Hkv, 16, g=g)
        x, up = randn(g, 2, 9, 32), randn(g, 2, 9, 32)
        label = f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x).backward(dy)"
        with explaining(attention_crash(4, Hkv)):
            got, exp = both(sub, ref, "attention", "CausalSelfAttention", label,
                            init=([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16}), load=sd, calls=[call(x, grad=up)])
        grad_check(got["results"][0], exp["results"][0], label, GRAD, HINT)


@check(1)
def test_bfloat16(sub, ref, g):
    """A bfloat16 attention module on bfloat16 input matches the reference"""
    x = randn(g, 2, 8, 32, dtype=torch.bfloat16)
    attn(sub, ref, g, 32, 4, 2, [x], "CausalSelfAttention(32, 4, num_kv_heads=2).to(torch.bfloat16)",
         tol=BF16, dtype="bfloat16")


@check(1)
def test_input_not_modified(sub, g):
    """Attention leaves its input tensor unchanged"""
    x = randn(g, 2, 5, 32)
    got = only(sub, "attention", "CausalSelfAttention", "CausalSelfAttention(32, 4)(x)",
               init=([32, 4], {"max_seq_len": 16}), calls=[call(x)])
    if got["results"][0]["inputs_changed"][0]:
        raise CheckFailure("x after CausalSelfAttention(32, 4)(x)", "x unchanged", "x was modified in place",
                           "avoid in-place operations on the input")
