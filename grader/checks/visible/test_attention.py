"""RoPE and causal self-attention: shapes, configuration and properties (visible)."""
import math

import torch

from grader.compare import CheckFailure, assert_equal, fmt_shape
from grader.diagnose import attention_crash, explaining
from grader.harness import call, check, only, randn


def angle_tables(g, T, D):
    """Any valid rotate-half tables: random angles, the same in both halves, zero at position 0."""
    ang = torch.rand(T, D // 2, generator=g) * 2 * math.pi
    ang[0] = 0
    ang = torch.cat([ang, ang], -1)
    return ang.cos(), ang.sin()


@check(1, visible=True)
def test_rope_tables(sub):
    """precompute_rope(16, 10) gives cos, sin of shape (10, 16); position 0 has cos 1, sin 0"""
    got = only(sub, "attention", "precompute_rope", "precompute_rope(16, 10)", calls=[call(16, 10)])
    out = got["results"][0]["output"]
    if not (isinstance(out, list) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise CheckFailure("precompute_rope(16, 10)", "a tuple (cos, sin) of two tensors", repr(type(out)),
                           "return cos, sin")
    cos, sin = out
    assert_equal((fmt_shape(cos), fmt_shape(sin)), ("(10, 16)", "(10, 16)"), "shapes of (cos, sin)",
                 "angles = outer(positions, inv_freq) is (T, head_dim/2); concatenate it with itself")
    if not (torch.allclose(cos[0], torch.ones(16)) and torch.allclose(sin[0], torch.zeros(16))):
        raise CheckFailure("cos[0] and sin[0] (position 0)", "all ones and all zeros",
                           f"cos[0] = {cos[0][:4].tolist()}..., sin[0] = {sin[0][:4].tolist()}...",
                           "positions start at 0: torch.arange(max_seq_len)")
    if not (torch.equal(cos[:, :8], cos[:, 8:]) and torch.equal(sin[:, :8], sin[:, 8:])):
        raise CheckFailure("the two halves of the last dimension of cos", "equal (the rotate-half layout)",
                           "different halves", "cos = torch.cat([angles.cos(), angles.cos()], dim=-1)")


@check(1, visible=True)
def test_rope_rotates(sub, g):
    """apply_rope leaves position 0 unchanged and keeps every vector's length (a rotation)"""
    cos, sin = angle_tables(g, 6, 16)
    x = randn(g, 2, 3, 6, 16)
    got = only(sub, "attention", "apply_rope", "apply_rope(x, cos, sin)", calls=[call(x, cos, sin)])
    y = got["results"][0]["output"]
    assert_equal(fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__, fmt_shape(x),
                 "apply_rope(x, cos, sin) output shape for x of shape (2, 3, 6, 16)")
    if not torch.allclose(y[..., 0, :], x[..., 0, :], atol=1e-6):
        raise CheckFailure("apply_rope at position 0 (cos = 1, sin = 0)", "x unchanged",
                           f"max change {(y[..., 0, :] - x[..., 0, :]).abs().max().item():.3g}",
                           "x * cos + rotate_half(x) * sin, with rotate_half(x) = cat([-x2, x1], dim=-1)")
    if not torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5):
        raise CheckFailure("the length of each vector after apply_rope", "unchanged (a rotation keeps lengths)",
                           "changed lengths", "rotate_half must pair channel i with i + d/2: cat([-x2, x1])")


@check(2, visible=True)
def test_rope_relative(sub, g):
    """With RoPE, the score between q at position m and k at position n depends only on m - n"""
    T, D = 12, 16
    q, k = randn(g, D), randn(g, D)
    tables = only(sub, "attention", "precompute_rope", "precompute_rope(16, 12)", calls=[call(D, T)])
    cos, sin = tables["results"][0]["output"]
    got = only(sub, "attention", "apply_rope", "apply_rope on q and k repeated at every position",
               calls=[call(q.expand(T, D).clone(), cos, sin), call(k.expand(T, D).clone(), cos, sin)])
    rq, rk = got["results"][0]["output"], got["results"][1]["output"]
    scores = rq @ rk.T  # (T, T): scores[m, n] = <rope(q, m), rope(k, n)>
    for off in range(-3, 4):
        d = torch.diagonal(scores, off)
        if (d - d[0]).abs().max() > 1e-4 * (1 + d.abs().max()):
            raise CheckFailure("<rope(q, m), rope(k, n)> along the diagonal m - n = " + str(-off),
                               "the same value for every m (relative positions)",
                               f"values from {d.min().item():.4g} to {d.max().item():.4g}",
                               "rotate q and k by the same angle per position and pair; "
                               "angles = positions * inv_freq, the same in both halves")
    if torch.allclose(scores, scores[0, 0].expand_as(scores), atol=1e-4):
        raise CheckFailure("the RoPE scores for different offsets", "different values (position matters)",
                           "all the same", "the rotation angle must grow with the position")


def cfg_init(C=32, H=4, Hkv=None, T=16):
    return ([C, H], {"num_kv_heads": Hkv, "max_seq_len": T})


@check(1, visible=True)
def test_parameters(sub):
    """q_proj, k_proj, v_proj, o_proj without bias; GQA shrinks k_proj and v_proj; no RoPE in state_dict"""
    for Hkv, kv_rows in ((None, 32), (2, 16), (1, 8)):
        got = only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})",
                   init=cfg_init(Hkv=Hkv), attrs=["head_dim", "num_heads", "num_kv_heads"])
        keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
        want = {"q_proj.weight": (32, 32), "k_proj.weight": (kv_rows, 32), "v_proj.weight": (kv_rows, 32),
                "o_proj.weight": (32, 32)}
        assert_equal(keys, want, f"CausalSelfAttention(32, 4, num_kv_heads={Hkv}).state_dict() names and shapes",
                     "nn.Linear(..., bias=False); k/v have num_kv_heads * head_dim outputs; "
                     "RoPE tables are buffers with persistent=False")
        assert_equal(got["attrs"]["head_dim"], 8, "CausalSelfAttention(32, 4).head_dim", "hidden_size // num_heads")


@check(1, visible=True)
def test_output_shape(sub, g):
    """Output keeps (B, T, C) for multi-head, grouped-query and T = 1"""
    for Hkv, shape in ((None, (2, 7, 32)), (2, (3, 5, 32)), (1, (1, 1, 32))):
        x = randn(g, *shape)
        with explaining(attention_crash(4, Hkv)):
            got = only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x)",
                       init=cfg_init(Hkv=Hkv), calls=[call(x)])
        y = got["results"][0]["output"]
        assert_equal(fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__, fmt_shape(x),
                     f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})(x) shape for x of shape {fmt_shape(x)}",
                     "merge the heads back: y.transpose(1, 2).reshape(B, T, C), then o_proj")


@check(1, visible=True)
def test_validation(sub, g):
    """Bad configurations and T > max_seq_len raise ValueError; a good one runs"""
    bad = [(([30, 4], {}), "hidden_size 30 with 4 heads", "check hidden_size % num_heads in __init__"),
           (([32, 4], {"num_kv_heads": 3}), "4 heads, 3 kv heads", "check num_heads % num_kv_heads in __init__")]
    for init, label, hint in bad:
        try:
            only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention with {label}", init=init)
        except CheckFailure as e:
            if "raised ValueError" in str(e.got):
                continue
            if str(e.got).startswith("your code raised"):  # another error: say which one was wanted
                raise CheckFailure(f"CausalSelfAttention with {label}", "ValueError", e.got,
                                   hint + " and raise ValueError with a clear message") from None
            raise
        raise CheckFailure(f"CausalSelfAttention with {label}", "ValueError", "no error",
                           hint + " and raise ValueError with a clear message")
    long_hint = "forward must refuse T > max_seq_len with ValueError: the RoPE tables stop there"
    try:
        only(sub, "attention", "CausalSelfAttention", "CausalSelfAttention(32, 4, max_seq_len=8)(x), T = 9",
             init=cfg_init(T=8), calls=[call(randn(g, 1, 9, 32))])
    except CheckFailure as e:
        if "raised ValueError" not in str(e.got):
            if str(e.got).startswith("your code raised"):
                raise CheckFailure("CausalSelfAttention(32, 4, max_seq_len=8) on T = 9", "ValueError", e.got,
                                   "check T against self.max_seq_len at the start of forward; " + long_hint) from None
            raise
    else:
        raise CheckFailure("CausalSelfAttention(32, 4, max_seq_len=8) on T = 9", "ValueError", "no error", long_hint)
    only(sub, "attention", "CausalSelfAttention", "CausalSelfAttention(32, 4, max_seq_len=8)(x), T = 8",
         init=cfg_init(T=8), calls=[call(randn(g, 1, 8, 32))])


@check(2, visible=True)
def test_causal(sub, g):
    """Changing token t never changes the outputs before t (and does change output t)"""
    T = 10
    for Hkv in (None, 2):
        x = randn(g, 2, T, 32)
        calls = [call(x)]
        for t in (0, 4, T - 1):
            x2 = x.clone()
            x2[:, t] += randn(g, 2, 32) * 3
            calls.append(call(x2))
        with explaining(attention_crash(4, Hkv)):
            got = only(sub, "attention", "CausalSelfAttention", f"CausalSelfAttention(32, 4, num_kv_heads={Hkv})",
                       init=cfg_init(Hkv=Hkv), calls=calls)
        y = got["results"][0]["output"]
        for t, r in zip((0, 4, T - 1), got["results"][1:]):
            y2 = r["output"]
            if t > 0 and not torch.allclose(y2[:, :t], y[:, :t], atol=1e-5):
                first = int(((y2[:, :t] - y[:, :t]).abs().amax(dim=(0, 2)) > 1e-5).nonzero()[0])
                raise CheckFailure(f"outputs before position {t} after changing the input at position {t}",
                                   "unchanged (no position may see the future)",
                                   f"output at position {first} changed",
                                   "mask the scores above the diagonal with -inf before the softmax: "
                                   "torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)")
            if torch.allclose(y2[:, t], y[:, t], atol=1e-6):
                raise CheckFailure(f"the output at position {t} after changing the input there",
                                   "a different output (a token attends to itself)", "unchanged",
                                   "the diagonal must stay unmasked: triu(..., diagonal=1)")
