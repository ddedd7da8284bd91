"""RoPE and causal self-attention: shapes, configuration and properties.

The scored checks also compare outputs with the reference's where the checked aspect alone shows:
for the structure and configuration checks, the output at T = 1 (one position: no mask, no scale,
no RoPE at play, only the projections and the heads); for causality, the output at the first
position, which may see only itself. The RoPE property checks and the shape check are INFO (0
points): the RoPE checks that compare values score, these say which property broke.
"""
import math

import torch

from grader.compare import (
    FP32,
    FP32_DEEP,
    assert_close,
    assert_equal,
    compared,
    describe_value,
    fmt_shape,
    match_variant,
    require,
    require_tensor,
)
from grader.diagnose.crashes import attention_crash, explaining, no_attribute, nondeterministic, projection_mistake
from grader.harness import StudentError, both, call, check, only, randn, reference_state
from kit.outcome import CheckFailure, Kind, T

KEEPS_SHAPE = T("apply_rope keeps x's shape")
ROPE_HINT = T("angles = outer(positions, inv_freq) is (T, head_dim/2); concatenate it with itself")


def angle_tables(g, T, D):
    """Any valid rotate-half tables: random angles, the same in both halves, zero at position 0."""
    ang = torch.rand(T, D // 2, generator=g) * 2 * math.pi
    ang[0] = 0
    ang = torch.cat([ang, ang], -1)
    return ang.cos(), ang.sin()


def rope_size(g):
    """A head_dim and a table length drawn from the grading seed."""
    return 8 * 2 ** int(torch.randint(0, 3, (1,), generator=g)), int(torch.randint(6, 17, (1,), generator=g))


@check(0)
def check_rope_tables(sub, ref, g):
    """precompute_rope(head_dim, T) gives cos, sin of shape (T, head_dim); position 0 has cos 1, sin 0"""
    D, n = rope_size(g)
    what = f"precompute_rope({D}, {n})"
    got, exp = both(sub, ref, "attention", "precompute_rope", what, calls=[call(D, n)])
    out = got["results"][0]["output"]
    require(isinstance(out, list) and len(out) == 2, what, T("a tuple (cos, sin) of two tensors"), describe_value(out),
            "`return cos, sin`", Kind.WRONG_STRUCTURE)
    # float32 or float64 tables (the docstring leaves the dtype open): compared in float64
    cos, sin = (require_tensor(t, (n, D), T("{name} of {call}", name=name, call=what), ROPE_HINT).double()
                for name, t in zip(("cos", "sin"), out))
    zeros, ones = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    swapped = torch.allclose(cos[0], zeros) and torch.allclose(sin[0], ones)
    require(torch.allclose(cos[0], ones) and torch.allclose(sin[0], zeros),
            T("cos[0] and sin[0] (position 0)"), T("all ones and all zeros"),
            f"cos[0] = {cos[0][:4].tolist()}..., sin[0] = {sin[0][:4].tolist()}...",
            T("cos and sin come out swapped: return angles.cos(), angles.sin(), cos first") if swapped else
            T("positions start at 0: torch.arange(max_seq_len)"))
    h = D // 2
    require(torch.equal(cos[:, :h], cos[:, h:]) and torch.equal(sin[:, :h], sin[:, h:]),
            T("the two halves of the last dimension of cos"), T("equal (the rotate-half layout)"),
            T("different halves"), "cos = torch.cat([angles.cos(), angles.cos()], dim=-1)")
    for name, t, e in zip(("cos", "sin"), out, exp["results"][0]["output"]):
        assert_close(t, e, T("{name} of {call}", name=name, call=what), FP32,
                     "inv_freq = theta ** (-arange(0, head_dim, 2) / head_dim)", dtype=False)


@check(0)
def check_rope_rotates(sub, ref, g):
    """apply_rope leaves position 0 unchanged and keeps every vector's length (a rotation)"""
    cos, sin = angle_tables(g, 6, 16)
    x = randn(g, 2, 3, 6, 16)
    got, exp = both(sub, ref, "attention", "apply_rope", "apply_rope(x, cos, sin)", calls=[call(x, cos, sin)])
    y = require_tensor(got["results"][0]["output"], x.shape,
                       T("{call} for x of shape {shape}", call="apply_rope(x, cos, sin)", shape="(2, 3, 6, 16)"),
                       KEEPS_SHAPE)
    require(torch.allclose(y[..., 0, :], x[..., 0, :], atol=1e-6), T("apply_rope at position 0 (cos = 1, sin = 0)"),
            T("x unchanged"), T("max change {change:.3g}", change=(y[..., 0, :] - x[..., 0, :]).abs().max().item()),
            T("x * cos + rotate_half(x) * sin, with rotate_half(x) = cat([-x2, x1], dim=-1)"))
    require(torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5), T("the length of each vector after apply_rope"),
            T("unchanged (a rotation keeps lengths)"), T("changed lengths"),
            T("rotate_half must pair channel i with i + d/2: cat([-x2, x1])"))
    assert_close(y, exp["results"][0]["output"], "apply_rope(x, cos, sin)", FP32,
                 T("x * cos + rotate_half(x) * sin: the rotated half is added"))


@check(0)
def check_rope_relative(sub, ref, g):
    """With RoPE, the score between q at position m and k at position n depends only on m - n"""
    n, D = 12, 16
    q, k = randn(g, D), randn(g, D)
    tables, tables_ref = both(sub, ref, "attention", "precompute_rope", f"precompute_rope({D}, {n})",
                              calls=[call(D, n)])
    out = tables["results"][0]["output"]
    require(isinstance(out, list) and len(out) == 2, f"precompute_rope({D}, {n})", T("a tuple (cos, sin)"),
            describe_value(out), "`return cos, sin`", Kind.WRONG_STRUCTURE)
    cos, sin = (require_tensor(t, (n, D), f"precompute_rope({D}, {n})", ROPE_HINT) for t in out)
    qs, ks = q.expand(n, D).clone(), k.expand(n, D).clone()
    got = only(sub, "attention", "apply_rope", T("apply_rope on q and k repeated at every position, with your tables"),
               calls=[call(qs, cos, sin), call(ks, cos, sin)])
    rq, rk = (require_tensor(r["output"], (n, D), T("apply_rope on a (T, head_dim) input"), KEEPS_SHAPE)
              for r in got["results"])
    scores = rq @ rk.T  # (T, T): scores[m, n] = <rope(q, m), rope(k, n)>
    for off in range(-3, 4):
        d = torch.diagonal(scores, off)
        require((d - d[0]).abs().max() <= 1e-4 * (1 + d.abs().max()),
                T("<rope(q, m), rope(k, n)> along the diagonal m - n = {offset}", offset=-off),
                T("the same value for every m (relative positions)"),
                T("values from {low:.4g} to {high:.4g}", low=d.min().item(), high=d.max().item()),
                T("rotate q and k by the same angle per position and pair; angles = positions * inv_freq, the same in "
                  "both halves"))
    require(not torch.allclose(scores, scores[0, 0].expand_as(scores), atol=1e-4),
            T("the RoPE scores for different offsets"), T("different values (position matters)"), T("all the same"),
            T("the rotation angle must grow with the position"))
    ref_cos, ref_sin = tables_ref["results"][0]["output"]
    for name, t, e in zip(("cos", "sin"), (cos, sin), (ref_cos, ref_sin)):
        assert_close(t, e, T("{name} of {call}", name=name, call=f"precompute_rope({D}, {n})"), FP32,
                     ROPE_HINT, dtype=False)
    got, exp = both(sub, ref, "attention", "apply_rope", T("apply_rope on q and k repeated at every position"),
                    calls=[call(qs, ref_cos, ref_sin), call(ks, ref_cos, ref_sin)])
    for r, e in zip(got["results"], exp["results"]):
        assert_close(r["output"], e["output"], T("apply_rope(x, cos, sin) on a (T, head_dim) input"), FP32,
                     "x * cos + rotate_half(x) * sin")


def cfg_init(C=32, H=4, Hkv=None, T=16):
    return ([C, H], {"num_kv_heads": Hkv, "max_seq_len": T})


def at_t1(sub, ref, g, Hkv, max_len=16, label=None):
    """The output for one position, with random weights: only the projections and the heads are at play.

    (And the softmax: its one weight must be exactly 1, which a scale or a mask applied after it breaks.)
    """
    sd = reference_state(ref, "attention", "CausalSelfAttention", 32, 4, Hkv, max_len, g=g)
    x = randn(g, 3, 1, 32)
    label = label or T("{call} at T = 1", call=f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x)")
    init = cfg_init(Hkv=Hkv, T=max_len)
    variants = ref.variants("attention_variants", x=x, sd=sd, H=4, Hkv=Hkv)
    with explaining(attention_crash(4, Hkv)):
        got, exp = both(sub, ref, "attention", "CausalSelfAttention", label, init=init, load=sd, calls=[call(x)])
    with explaining(nondeterministic(sub, "attention", "CausalSelfAttention", x, init=init, load=sd)):
        assert_close(got["results"][0]["output"], exp["results"][0]["output"], label, FP32_DEEP,
                     T("at one position attention only copies v, with a softmax weight of exactly 1: "
                       "o_proj(merge(repeat_kv(v_proj(x)))); check v_proj, the kv-head repeat, o_proj and that nothing "
                       "rescales the weights after the softmax"), variants)


@check(1)
def check_parameters(sub, ref, g):
    """q_proj, k_proj, v_proj, o_proj without bias, GQA shrinks k_proj, v_proj, no RoPE in state_dict; output at T = 1"""
    for Hkv, kv_rows in ((None, 32), (2, 16), (1, 8)):
        got = only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})",
                   init=cfg_init(Hkv=Hkv), attrs=["head_dim", "num_heads", "num_kv_heads"])
        keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
        want = {"q_proj.weight": (32, 32), "k_proj.weight": (kv_rows, 32), "v_proj.weight": (kv_rows, 32),
                "o_proj.weight": (32, 32)}
        what = T("{call} names and shapes", call=f"CausalSelfAttention(32, 4, num_kv_heads={Hkv}).state_dict()")
        compared()
        if keys != want:  # the shapes say which size went wrong when they single one out
            found = projection_mistake(keys, 4, Hkv)
            raise CheckFailure(what, repr(want), repr(keys), found[1] if found else
                               T("nn.Linear(..., bias=False); q_proj and o_proj have num_heads * head_dim features, "
                                 "k_proj and v_proj num_kv_heads * head_dim, with head_dim = hidden_size // num_heads; "
                                 "RoPE tables are buffers with persistent=False"), found[0] if found else None,
                               Kind.WRONG_STRUCTURE)
        head_dim = got["attrs"]["head_dim"]
        if isinstance(head_dim, dict) and head_dim.get("__missing__"):  # the worker's mark for an absent attribute
            compared()
            likely = no_attribute("CausalSelfAttention", "head_dim")[0]  # its hint, with the line to write:
            raise CheckFailure("CausalSelfAttention(32, 4).head_dim", "8",
                               T("CausalSelfAttention has no attribute head_dim"),
                               T("assign self.head_dim in CausalSelfAttention.__init__, before anything reads it: "
                                 "self.head_dim = hidden_size // num_heads (the docstring lists the attributes the "
                                 "module keeps)"), likely, Kind.WRONG_STRUCTURE)
        assert_equal(head_dim, 8, "CausalSelfAttention(32, 4).head_dim",
                     T("set self.head_dim = hidden_size // num_heads in __init__ (forward and the checks read it)"))
        at_t1(sub, ref, g, Hkv)  # the weights are used as named


@check(0)
def check_output_shape(sub, g):
    """Output keeps (B, T, C) for multi-head, grouped-query and T = 1"""
    for Hkv, shape in ((None, (2, 7, 32)), (2, (3, 5, 32)), (1, (1, 1, 32))):
        x = randn(g, *shape)
        with explaining(attention_crash(4, Hkv)):
            got = only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x)",
                       init=cfg_init(Hkv=Hkv), calls=[call(x)])
        y = got["results"][0]["output"]
        require_tensor(y, x.shape, T("{call} for x of shape {shape}",
                                     call=f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x)", shape=fmt_shape(x)),
                       T("merge the heads back: y.transpose(1, 2).reshape(B, T, C), then o_proj"))


def _raises_value_error(sub, what, hint, **kwargs):
    """The request must fail with ValueError (another exception, or none, fails the check)."""
    try:
        only(sub, "attention", "CausalSelfAttention", what, **kwargs)
    except StudentError as e:
        if e.error["type"] == "ValueError":
            require(True, what)
            return
        if e.failure.kind is Kind.NOT_IMPLEMENTED:
            raise
        raise CheckFailure(what, "ValueError", e.failure.got,
                           T("{hint} and raise ValueError with a clear message", hint=hint),
                           kind=Kind.WRONG_VALUE) from None
    raise CheckFailure(what, "ValueError", T("no error"),
                       T("{hint} and raise ValueError with a clear message", hint=hint))


@check(1)
def check_validation(sub, ref, g):
    """Bad configurations and T > max_seq_len raise ValueError; a good one runs (T = max_seq_len) and matches at T = 1"""
    _raises_value_error(sub, T("CausalSelfAttention with hidden_size {hidden} and {heads} heads", hidden=30, heads=4),
                        T("check hidden_size % num_heads in __init__"), init=([30, 4], {}))
    _raises_value_error(sub, T("CausalSelfAttention with {heads} heads and {kv_heads} kv heads", heads=4, kv_heads=3),
                        T("check num_heads % num_kv_heads in __init__"), init=([32, 4], {"num_kv_heads": 3}))
    _raises_value_error(sub, T("{call} on T = {length}", call="CausalSelfAttention(32, 4, max_seq_len=8)", length=9),
                        T("check T against self.max_seq_len at the start of forward: the RoPE tables stop there"),
                        init=cfg_init(T=8), calls=[call(randn(g, 1, 9, 32))])
    with explaining(attention_crash(4)):
        only(sub, "attention", "CausalSelfAttention",
             T("{call} on T = {length}", call="CausalSelfAttention(32, 4, max_seq_len=8)(x)", length=8),
             init=cfg_init(T=8), calls=[call(randn(g, 1, 8, 32))])
    at_t1(sub, ref, g, None, max_len=8,
          label=T("{call} at T = 1", call="CausalSelfAttention(32, 4, max_seq_len=8)(x)"))


@check(2)
def check_causal(sub, ref, g):
    """Changing token t never changes the outputs before t (and does change output t)"""
    n = 10  # positions
    for Hkv in (None, 2):
        sd = reference_state(ref, "attention", "CausalSelfAttention", 32, 4, Hkv, 16, g=g)
        x = randn(g, 2, n, 32)
        calls = [call(x)]
        for t in (0, 4, n - 1):
            x2 = x.clone()
            x2[:, t] += randn(g, 2, 32) * 3
            calls.append(call(x2))
        label = f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})"
        init = cfg_init(Hkv=Hkv)
        # the known mistakes on the unchanged x: a leak of the future is then named (a softmax over the queries
        # leaks too, and so does dropout: neither is the mask)
        variants = ref.variants("attention_variants", x=x, sd=sd, H=4, Hkv=Hkv)
        with explaining(attention_crash(4, Hkv)):
            got, exp = both(sub, ref, "attention", "CausalSelfAttention", label, init=init, load=sd, calls=calls)
        ys = [require_tensor(r["output"], x.shape, f"{label}(x)", T("merge the heads back to (B, T, C)"))
              for r in got["results"]]
        y = ys[0]
        with explaining(nondeterministic(sub, "attention", "CausalSelfAttention", x, init=init, load=sd)):
            for t, y2 in zip((0, 4, n - 1), ys[1:]):
                if t > 0:
                    moved = (y2[:, :t] - y[:, :t]).abs().amax(dim=(0, 2)) > 1e-5
                    compared()
                    if bool(moved.any()):
                        found = match_variant(y, variants, FP32_DEEP)
                        raise CheckFailure(T("outputs before position {t} after changing the input at position {t}",
                                             t=t),
                                           T("unchanged (no position may see the future)"),
                                           T("output at position {position} changed",
                                             position=int(moved.nonzero()[0])),
                                           found[1] if found else
                                           T("mask the scores above the diagonal with -inf before the softmax: "
                                             "torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1); then "
                                             "softmax over the keys (dim=-1)"),
                                           found[0] if found else None)
                require(not torch.allclose(y2[:, t], y[:, t], atol=1e-6),
                        T("the output at position {t} after changing the input there", t=t),
                        T("a different output (a token attends to itself)"), T("unchanged"),
                        T("the diagonal must stay unmasked: triu(..., diagonal=1)"))
            # the first position may see only itself: its output is the reference's whatever the mask, scale or RoPE
            for i, (y, e) in enumerate(zip(ys, (r["output"] for r in exp["results"]))):
                assert_close(y[:, :1], e[:, :1],
                             T("{call} at position 0, which attends only to itself", call=f"{label}(x)"), FP32_DEEP,
                             T("position 0 sees only key 0: its softmax weight is exactly 1 (softmax over the keys, "
                               "dim=-1, and nothing rescaling the weights after it), so its output is "
                               "o_proj(v_proj(x_0))"),
                             first_position(variants) if i == 0 else None)


def first_position(variants):
    """The known mistakes' outputs at position 0 only (a variant is a ``make()`` live, a value from a snapshot)."""
    def at_0(make):
        out = make() if callable(make) else make
        return out[:, :1]
    return {name: (lambda make=make: at_0(make), hint) for name, (make, hint) in variants.items()}
