"""RoPE and causal self-attention against the reference."""
import torch

from grader.compare import BF16, FP32, GRAD, assert_close, compared, describe_value, require
from grader.diagnose.crashes import attention_crash, explaining, forward_variant, nondeterministic
from grader.diagnose.probe import attention_staged
from grader.harness import (
    both,
    call,
    check,
    compare_outputs,
    grad_check,
    only,
    randn,
    reference_state,
    request,
    unchanged_input,
)
from grader.protocol import changed
from kit.outcome import CheckFailure, Kind, T

from ..properties.attention import rope_size

HINT = T("project, split heads (B, H, T, D), RoPE on q and k, repeat kv heads, scores / sqrt(head_dim), "
         "causal mask, softmax(dim=-1) in float32, @ v, merge heads, o_proj")


@check(3)
def check_rope_tables_values(sub, ref, g):
    """precompute_rope matches the reference for the default theta = 10000 and for another theta"""
    D, n = rope_size(g)
    theta = round(200.0 + 800.0 * float(torch.rand(1, generator=g)), 3)  # drawn per grading: no answer to replay
    for args in ((D, n), (8, 5, theta)):
        got, exp = both(sub, ref, "attention", "precompute_rope", f"precompute_rope{args}", calls=[call(*args)])
        g_out, e_out = got["results"][0]["output"], exp["results"][0]["output"]
        require(isinstance(g_out, list) and len(g_out) == 2, f"precompute_rope{args}", "(cos, sin)",
                describe_value(g_out), "`return cos, sin`", Kind.WRONG_STRUCTURE)
        stacked = torch.stack(list(g_out)) if all(isinstance(t, torch.Tensor) and t.shape == g_out[0].shape
                                                  for t in g_out) else g_out[0]
        full = (*args, 10000.0)[:3]
        # the docstring leaves the tables' dtype open: float32 and float64 are both right (compared in float64)
        if isinstance(stacked, torch.Tensor) and stacked.dtype == torch.float64:
            stacked = stacked.float()
        assert_close(stacked, torch.stack(e_out), f"torch.stack(precompute_rope{args})", FP32,
                     T("angles = outer(arange(T), theta ** (-arange(0, d, 2) / d)); cos/sin of cat([angles, angles])"),
                     ref.variants("rope_table_variants", head_dim=full[0], max_seq_len=full[1], theta=full[2]))


@check(3)
def check_apply_rope_values(sub, ref, g):
    """apply_rope matches the reference on (B, H, T, D) and (T, D) inputs, tables longer than T; x left unchanged"""
    tables = ref.run(request("attention", "precompute_rope", calls=[call(16, 12)]), "precompute_rope(16, 12)")
    cos, sin = tables["results"][0]["output"]
    for x, rows in ((randn(g, 2, 3, 7, 16), 7), (randn(g, 7, 16), 7), (randn(g, 2, 2, 7, 16), 12)):
        what, shape = "apply_rope(x, cos, sin)", str(tuple(x.shape))
        if rows > x.shape[-2]:
            label = T("{call} for x of shape {shape} and tables of {rows} rows (the first {used} are used)",
                      call=what, shape=shape, rows=rows, used=x.shape[-2])
        else:
            label = T("{call} for x of shape {shape}", call=what, shape=shape)
        args = (x, cos[:rows], sin[:rows])
        got, exp = both(sub, ref, "attention", "apply_rope", label, calls=[call(*args)])
        assert_close(got["results"][0]["output"], exp["results"][0]["output"], label, FP32,
                     T("x * cos + rotate_half(x) * sin with rotate_half(x) = cat([-x2, x1], dim=-1)"),
                     ref.variants("apply_rope_variants", x=x, cos=cos[:rows], sin=sin[:rows]))
        # a function's inputs are the caller's: attention passes q and k, which it may still need
        for name, before, after in zip(("x", "cos", "sin"), args, got["results"][0]["inputs_after"]):
            require(not changed(before, after), T("{name} after {call}", name=name, call=label),
                    T("{name} unchanged", name=name), T("{name} was modified in place", name=name),
                    T("return a new tensor: x * cos + rotate_half(x) * sin, not x.mul_(cos) or x *= cos (the caller's "
                      "tensor changes with it)"))


def attn(sub, ref, g, C, H, Hkv, xs, label, T=16, theta=10000.0, tol=FP32, dtype=None):
    sd = reference_state(ref, "attention", "CausalSelfAttention", C, H, Hkv, T, theta, g=g)
    init = ([C, H], {"num_kv_heads": Hkv, "max_seq_len": T, "rope_theta": theta})
    # a crash with a known cause is named; a wrong output that no variant explains gets a staged best guess,
    # unless the same input gives two outputs (then no step of the computation is to blame)
    with explaining(nondeterministic(sub, "attention", "CausalSelfAttention", xs[0], init=init, load=sd, dtype=dtype),
                    attention_crash(H, Hkv), attention_staged(sub, ref, C, H, Hkv, theta, T)):
        return compare_outputs(sub, ref, "attention", "CausalSelfAttention", label, xs, tol, HINT,
                               lambda x: ref.variants("attention_variants", x=x, sd=sd, H=H, Hkv=Hkv, theta=theta),
                               init=init, load=sd, dtype=dtype)


@check(7)
def check_matches_reference(sub, ref, g):
    """Multi-head attention matches the reference: several shapes, T = 1, T = max_seq_len, non-contiguous x"""
    xs = [randn(g, 2, 7, 32), randn(g, 1, 1, 32), randn(g, 3, 16, 32), randn(g, 5, 2, 32).transpose(0, 1),
          randn(g, 1, 4, 32, scale=4.0)]
    attn(sub, ref, g, 32, 4, None, xs, "CausalSelfAttention(32, 4, max_seq_len=16)")
    # 500: no power of 10000 that a wrong exponent gives (theta = 100 with -4i/d is 10000 with -2i/d), so an ignored
    # rope_theta and a wrong exponent give different numbers
    attn(sub, ref, g, 48, 3, None, [randn(g, 2, 6, 48)], "CausalSelfAttention(48, 3, rope_theta=500)", theta=500.0)


@check(2)
def check_grouped_query(sub, ref, g):
    """Grouped-query attention (4 heads sharing 2 or 1 kv heads) matches the reference"""
    attn(sub, ref, g, 32, 4, 2, [randn(g, 2, 9, 32)], "CausalSelfAttention(32, 4, num_kv_heads=2)")
    attn(sub, ref, g, 32, 4, 1, [randn(g, 2, 9, 32)], "CausalSelfAttention(32, 4, num_kv_heads=1)")


@check(4)
def check_gradients(sub, ref, g):
    """Gradients of the input and of q_proj, k_proj, v_proj, o_proj match (MHA and GQA)"""
    for Hkv in (None, 2):
        sd = reference_state(ref, "attention", "CausalSelfAttention", 32, 4, Hkv, 16, g=g)
        x, up = randn(g, 2, 9, 32), randn(g, 2, 9, 32)
        label = f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x).backward(dy)"
        init = ([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16})
        variants = ref.variants("attention_variants", x=x, sd=sd, H=4, Hkv=Hkv)  # to name a wrong forward pass
        with explaining(attention_crash(4, Hkv)):
            got, exp = both(sub, ref, "attention", "CausalSelfAttention", label, init=init, load=sd,
                            calls=[call(x, grad=up)])
        with explaining(nondeterministic(sub, "attention", "CausalSelfAttention", x, init=init, load=sd),
                        forward_variant(sub, "attention", "CausalSelfAttention", x, variants, FP32, init=init,
                                        load=sd)):
            grad_check(got["results"][0], exp["results"][0], label, GRAD, HINT)


@check(2)
def check_bfloat16(sub, ref, g):
    """A bfloat16 attention module on bfloat16 input matches the reference; its tensors follow .to() (buffers)"""
    what = "CausalSelfAttention(32, 4, num_kv_heads=2).to(torch.bfloat16)"
    got = only(sub, "attention", "CausalSelfAttention", what, init=([32, 4], {"num_kv_heads": 2, "max_seq_len": 16}),
               dtype="bfloat16", want=["structure"])
    plain = [f"self.{name} ({dtype})" for name, dtype, registered in got["structure"]["tensors"] if not registered]
    compared()
    if plain:
        raise CheckFailure(T("the tensors {module} holds besides its parameters", module=what),
                           T("buffers, which model.to(...) converts and moves with the parameters"),
                           T("plain attributes: {names}", names=", ".join(plain[:6])),
                           T("register them in __init__: self.register_buffer('cos', cos, persistent=False)"),
                           T("{name} is kept as a plain tensor attribute, not a buffer: model.to(dtype or device) "
                             "leaves it behind (still float32, still on the CPU), so the model breaks or mixes "
                             "precisions once it moves", name=plain[0].split(' ')[0]), Kind.WRONG_STRUCTURE)
    x = randn(g, 2, 8, 32, dtype=torch.bfloat16)
    attn(sub, ref, g, 32, 4, 2, [x], "CausalSelfAttention(32, 4, num_kv_heads=2).to(torch.bfloat16)",
         tol=BF16, dtype="bfloat16")


@check(0)
def check_input_not_modified(sub, g):
    """Attention leaves its input tensor unchanged"""
    x, init = randn(g, 2, 5, 32), ([32, 4], {"max_seq_len": 16})
    with explaining(nondeterministic(sub, "attention", "CausalSelfAttention", x, init=init)):  # not in place: random
        unchanged_input(sub, "attention", "CausalSelfAttention", "CausalSelfAttention(32, 4)(x)", x,
                        T("avoid in-place operations on the input"), init=init)
