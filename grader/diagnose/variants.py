"""What each known mistake would output: the wrong variants the diagnosis compares against.

Each family takes the inputs and weights of one check and returns ``{mistake: (make, hint)}``:
``make()`` computes what that mistake outputs on them. When a submission's output is wrong,
``compare.assert_close`` tries them and names the one it matches (a ``likely:`` line).

These formulas include the correct ones (each variant is the right computation with one
switch flipped), so this file never ships to students: the release carries the variants'
outputs on the published inputs instead (grader/snapshot.py). Checks reach the families only
through ``ref.variants(family, **inputs)`` (grader/reference.py).
"""
import math

import torch
import torch.nn.functional as F

from kit.outcome import T

from ..harness import standin_block_parts, standin_module, standin_stack


def residual(x, weight):
    """Residual(Shift) on x, where the sublayer is tanh(x @ weight^T)."""
    def f(x):
        return torch.tanh(x @ weight.T)
    return {
        T("Residual returns sublayer(x) alone (the skip path is missing)"):
            (lambda: f(x), T("add the input back: return x + self.sublayer(x)")),
        T("Residual returns x alone (the sublayer is skipped)"):
            (lambda: x.clone(), T("add the sublayer's output: return x + self.sublayer(x)")),
        T("Residual returns x + x (the sublayer's output is not used)"):
            (lambda: 2 * x, T("call the sublayer: return x + self.sublayer(x)")),
    }


def residual_arguments(x, weight):
    """Residual(Shift)(x, 0.5, scale=2.0) with the extra arguments dropped."""
    return {T("the extra arguments were dropped"): (lambda: x + torch.tanh(x @ weight.T),
                                                 T("pass *args and **kwargs on to the sublayer"))}


def rmsnorm(x, weight, eps):
    w = weight
    xf = x.float()
    ms = xf.pow(2).mean(-1, keepdim=True)

    def out(t):
        return t.type_as(x) * w
    return {
        T("RMSNorm subtracts the mean (that is LayerNorm)"):
            (lambda: out((xf - xf.mean(-1, keepdim=True))
                         * torch.rsqrt(xf.var(-1, keepdim=True, unbiased=False) + eps)),
             T("RMSNorm only rescales: divide x itself by its root mean square, do not centre it")),
        T("eps is added outside the square root: x / (sqrt(mean(x**2)) + eps)"):
            (lambda: out(xf / (ms.sqrt() + eps)), T("put eps inside: torch.rsqrt(mean + eps)")),
        T("eps is added after the reciprocal square root: x * (rsqrt(mean(x**2)) + eps)"):
            (lambda: out(xf * (torch.rsqrt(ms) + eps)), T("put eps inside: torch.rsqrt(mean + eps)")),
        T("eps is left out"):
            (lambda: out(xf * torch.rsqrt(ms)), T("add eps inside the square root: torch.rsqrt(mean + eps)")),
        T("the statistic is taken over dimension 0 instead of the last one"):
            (lambda: out(xf * torch.rsqrt(xf.pow(2).mean(0, keepdim=True) + eps)),
             T("normalise each vector over its features: mean(dim=-1, keepdim=True)")),
        T("the statistic is taken over dimension 1 (the sequence) instead of the last one"):
            (lambda: out(xf * torch.rsqrt(xf.pow(2).mean(1, keepdim=True) + eps)),
             T("normalise each vector over its features: mean(dim=-1, keepdim=True)")),
        T("the weight is not applied"):
            (lambda: (xf * torch.rsqrt(ms + eps)).type_as(x) * torch.ones_like(w),
             T("multiply by self.weight at the end")),
        T("the mean is squared instead of the squares averaged: mean(x)**2, not mean(x**2)"):
            (lambda: out(xf * torch.rsqrt(xf.mean(-1, keepdim=True).pow(2) + eps)),
             T("square first, then average: x.pow(2).mean(-1, keepdim=True)")),
        T("the statistic is taken over all dimensions (one mean for the whole tensor) instead of the last one"):
            (lambda: out(xf * torch.rsqrt(xf.pow(2).mean() + eps)),
             T("normalise each vector over its features: mean(dim=-1, keepdim=True)")),
        T("the sum of squares is used instead of the mean"):
            (lambda: out(xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)),
             T("use mean(x**2, dim=-1), not sum: RMS is a root *mean* square")),
        T("x is multiplied by the root mean square instead of divided by it (sqrt instead of rsqrt)"):
            (lambda: out(xf * torch.sqrt(ms + eps)),
             T("divide by the RMS: x * torch.rsqrt(mean + eps), r for reciprocal")),
        T("x is divided by the mean square, not by its square root"):
            (lambda: out(xf / (ms + eps)), T("take the square root: torch.rsqrt(mean + eps)")),
        T("x is divided by its standard deviation (torch.std)"):
            (lambda: out(xf / (xf.std(-1, keepdim=True) + eps)),
             T("the root mean square is sqrt(mean(x**2)), not the standard deviation")),
        T("the statistics are computed in bfloat16 (no float32 upcast)"):
            (lambda: (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * w,
             T("compute on x.float() and cast back with .type_as(x): squares in bfloat16 lose precision")),
    }


def rmsnorm_default_eps(x, weight, eps=1e-6):
    """RMSNorm(dim) with no eps given: the eps mistakes, and another default than the API's 1e-6."""
    others = {T("the default eps is {d}, not the API's {eps}", d=f"{d:g}", eps=f"{eps:g}"):
              (lambda d=d: rmsnorm_value(x, weight, d),
               T("def __init__(self, dim, eps={eps}): the API's default", eps=f"{eps:g}"))
              for d in (1e-5, 1e-8) if d != eps}
    return {**rmsnorm(x, weight, eps), **others}


def rmsnorm_value(x, weight, eps):
    """The right RMSNorm of x with this eps."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def rmsnorm_eps_argument(x, weight, eps):
    """RMSNorm(dim, eps=eps): the eps mistakes with ``eps``, and the argument ignored (the default 1e-6 used)."""
    ignored = {T("the eps argument is ignored (the default 1e-6 is used)"):
               (rmsnorm(x, weight, 1e-6)["eps is left out"][0],
                T("store the argument in __init__ (self.eps = eps) and use self.eps in forward"))}
    return {**ignored, **rmsnorm(x, weight, eps)}


# --- RoPE and attention ----------------------------------------------------------

def rope_tables(head_dim, T, theta=10000.0, exponent="2i/d", start=0, layout="half"):
    """RoPE tables with the knobs students get wrong: the exponent, the first position, the layout."""
    i = torch.arange(0, head_dim, 2, dtype=torch.float32)
    if exponent == "2i/d":
        inv = theta ** (-i / head_dim)
    elif exponent == "i/d":  # i counts 0..d/2-1 but the 2 is dropped
        inv = theta ** (-(i / 2) / head_dim)
    elif exponent == "+2i/d":  # the minus sign is dropped
        inv = theta ** (i / head_dim)
    elif exponent == "4i/d":  # the step of 2 is applied twice
        inv = theta ** (-2 * i / head_dim)
    pos = torch.arange(start, start + T, dtype=torch.float32)
    ang = torch.outer(pos, inv)
    ang = torch.cat([ang, ang], -1) if layout == "half" else ang.repeat_interleave(2, -1)
    return ang.cos(), ang.sin()


def half_turn(x):
    """The given rotate_half: (x1, x2) -> (-x2, x1)."""
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


def rotate(x, cos, sin, layout="half"):
    if layout == "half":
        rot = half_turn(x)
    elif layout == "half_flipped":  # (x2, -x1): rotates the other way
        x1, x2 = x.chunk(2, -1)
        rot = torch.cat([x2, -x1], -1)
    else:  # interleaved pairs (2i, 2i+1), as in the RoFormer paper
        x1, x2 = x[..., 0::2], x[..., 1::2]
        rot = torch.stack([-x2, x1], -1).flatten(-2)
    return x * cos + rot * sin


def attention(x, sd, num_heads, num_kv_heads=None, theta=10000.0, rope="half", rope_on=("q", "k"),
              exponent="2i/d", start=0, scale="head_dim", mask="causal", softmax_dim=-1, kv_repeat="interleave",
              merge="transpose", o_proj=True, softmax_dtype="float32"):
    """The attention forward pass with one switch per classic mistake; the defaults are correct."""
    B, T, C = x.shape
    H, Hkv = num_heads, num_kv_heads or num_heads
    D = C // H
    x = x.float()
    q = (x @ sd["q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
    k = (x @ sd["k_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
    v = (x @ sd["v_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
    if rope == "bthd":  # rotated before the transpose: rows of the tables along the heads, not the positions
        cos, sin = rope_tables(D, T, theta)
        if H > T:
            raise ValueError("this mistake crashes when there are more heads than positions")
        q = rotate(q.transpose(1, 2), cos[:H], sin[:H]).transpose(1, 2)
        k = rotate(k.transpose(1, 2), cos[:Hkv], sin[:Hkv]).transpose(1, 2)
    elif rope != "none":
        layout = "interleaved" if rope == "interleaved" else "half"
        cos, sin = rope_tables(D, T, theta, exponent, start, layout)
        how = {"half": "half", "interleaved": "interleaved", "flipped": "half_flipped"}[rope]
        q = rotate(q, cos, sin, how) if "q" in rope_on else q
        k = rotate(k, cos, sin, how) if "k" in rope_on else k
        v = rotate(v, cos, sin, how) if "v" in rope_on else v
    n = H // Hkv
    if kv_repeat == "interleave":
        k, v = k.repeat_interleave(n, 1), v.repeat_interleave(n, 1)
    elif kv_repeat == "tile":
        k, v = k.repeat(1, n, 1, 1), v.repeat(1, n, 1, 1)
    div = {"head_dim": math.sqrt(D), "hidden": math.sqrt(C), "none": 1.0, "head_dim_nosqrt": D,
           "after_softmax": 1.0}[scale]
    s = q @ k.transpose(-2, -1) / div
    if mask in ("causal", "diagonal", "shifted"):
        offset = {"causal": 1, "diagonal": 0, "shifted": 2}[mask]
        m = torch.ones(T, T, dtype=torch.bool).triu(offset)
        s = s.masked_fill(m, float("-inf"))  # with the diagonal masked, row 0 is all -inf: NaN, as the bug gives
    if mask in ("inverted", "inverted_sdpa"):  # True read as "attend": each query sees only later keys
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    if mask == "lower":
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
    a = torch.softmax(s, dim=softmax_dim)
    if mask == "inverted_sdpa":  # scaled_dot_product_attention gives a query with no visible key zero weights
        a = a.nan_to_num(0.0)
    if scale == "after_softmax":  # the weights divided instead of the scores: they no longer sum to one
        a = a / math.sqrt(D)
    if mask == "after_softmax":  # future weights zeroed after the softmax: rows no longer sum to one
        a = a.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), 0.0)
    y = a @ v  # (B, H, T, D)
    if merge == "transpose":
        y = y.transpose(1, 2).reshape(B, T, H * D)
    elif merge == "reshape":  # heads and time mixed up: reshape without transpose
        y = y.reshape(B, T, H * D)
    return y @ sd["o_proj.weight"].T if o_proj else y


def rope_table_variants(head_dim, max_seq_len, theta=10000.0):
    """torch.stack(precompute_rope(...)) with the exponent, the first position or the layout wrong."""
    args = (head_dim, max_seq_len, theta)
    out = {T("the exponent is {exponent}", exponent=e): (lambda e=e: torch.stack(rope_tables(*args, exponent=e)),
                                                        T("inv_freq[i] = theta ** (-2i / head_dim), i.e. "
                                                          "theta ** (-torch.arange(0, head_dim, 2) / head_dim)"))
           for e in ("i/d", "+2i/d", "4i/d")}
    if theta != 10000.0:
        out[T("the theta argument is ignored (10000 is used)")] = (
            lambda: torch.stack(rope_tables(head_dim, max_seq_len)),
            T("use the argument: inv_freq = theta ** (-torch.arange(0, head_dim, 2) / head_dim)"))
    out[T("positions start at 1")] = (lambda: torch.stack(rope_tables(*args, start=1)),
                                   T("positions = torch.arange(max_seq_len), starting at 0"))
    out[T("the interleaved layout (each angle repeated twice in a row)")] = (
        lambda: torch.stack(rope_tables(*args, layout="interleaved")),
        T("rotate-half layout: cat([angles, angles], dim=-1)"))
    out[T("cos and sin are swapped (precompute_rope returns sin, cos)")] = (
        lambda: torch.stack(rope_tables(*args)[::-1]), T("return angles.cos(), angles.sin(): cos first"))
    return out


def apply_rope_variants(x, cos, sin):
    """apply_rope's mistakes; ``cos`` and ``sin`` may hold more rows than x has positions (the first T are used)."""
    n = x.shape[-2]
    c, s = cos[:n], sin[:n]
    out = {T("RoPE rotates the wrong way: x * cos - rotate_half(x) * sin (or a rotate_half edited to give "
           "cat([x2, -x1]))"):
           (lambda: rotate(x, c, s, "half_flipped"),
            T("add the rotated half: x * cos + rotate_half(x) * sin, with the "
              "rotate_half given in the file (it returns cat([-x2, x1]))")),
           T("cos and sin are swapped: x * sin + rotate_half(x) * cos"):
           (lambda: x * s + half_turn(x) * c,
            T("cos multiplies x itself and sin its rotated half: x * cos + rotate_half(x) * sin")),
           T("pairs are interleaved (2i, 2i+1) instead of (i, i + d/2)"):
           (lambda: rotate(x, c, s, "interleaved"), T("split x into halves: x1, x2 = x.chunk(2, -1)"))}
    if cos.shape[0] > n:
        out[T("the last T rows of the tables are used instead of the first T")] = (
            lambda: rotate(x, cos[-n:], sin[-n:], "half"),
            T("row t of the tables rotates position t: cos[:T], sin[:T]"))
    return out


def attention_variants(x, sd, H, Hkv=None, theta=10000.0):
    """Each entry: what the mistake would output on x with weights sd.

    A check's ``theta`` other than 10000 must be no power of it that another mistake's exponent gives
    (100 = 10000 ** (1/2) makes theta ** (-4i/d) equal 10000 ** (-2i/d), the argument ignored): 500 is safe.
    """
    def v(hint, theta=theta, **knobs):
        return (lambda: attention(x, sd, H, Hkv, theta, **knobs), hint)
    ignored = {} if theta == 10000.0 else {
        T("rope_theta is ignored (the RoPE tables are built with the default theta 10000)"):
            v(T("pass the argument on: precompute_rope(self.head_dim, max_seq_len, rope_theta)"), theta=10000.0)}
    return {**ignored,
        T("no causal mask (every position sees the future)"):
            v(T("mask the scores above the diagonal with -inf before the softmax: triu(ones(T, T), diagonal=1)"),
              mask="none"),
        T("the mask also hides the diagonal (a token cannot attend to itself)"):
            v(T("mask strictly above the diagonal: torch.triu(..., diagonal=1), not diagonal=0"), mask="diagonal"),
        T("the mask is shifted: position t also sees t + 1"):
            v(T("mask strictly above the diagonal: torch.triu(..., diagonal=1)"), mask="shifted"),
        T("the boolean mask is inverted: it is True above the diagonal (the keys to hide), but "
        "scaled_dot_product_attention reads True as a key to attend, so each query sees only later positions"):
            v(T("for scaled_dot_product_attention, pass is_causal=True, or a mask that is True where attending is "
              "allowed: torch.ones(T, T, dtype=torch.bool).tril()"), mask="inverted_sdpa"),
        # tril() masked and triu(1) inverted hide the same keys: the numbers cannot tell the two apart
        T("the mask hides the past and the diagonal instead of the future, so each query sees only later positions "
        "(a tril() mask, or the triu(1) mask inverted)"):
            v(T("fill the scores where the key is in the future: scores.masked_fill(torch.ones(T, T, "
              "dtype=torch.bool).triu(1), float('-inf'))"), mask="inverted"),
        T("the mask hides the past instead of the future (tril instead of triu)"):
            v(T("keys after the query (s > t) are masked: triu, not tril"), mask="lower"),
        T("the mask is applied after the softmax (the weights of each query no longer sum to one)"):
            v(T("mask the scores with -inf *before* the softmax, so it renormalises over the visible keys"),
              mask="after_softmax"),
        T("scores are scaled by sqrt(hidden_size) instead of sqrt(head_dim)"):
            v(T("divide by math.sqrt(self.head_dim): each head's dot product has head_dim terms"), scale="hidden"),
        T("scores are not scaled"):
            v(T("divide the scores by math.sqrt(head_dim) before the softmax"), scale="none"),
        T("scores are divided by head_dim instead of sqrt(head_dim)"):
            v(T("divide by math.sqrt(head_dim), not head_dim"), scale="head_dim_nosqrt"),
        T("the scale is applied after the softmax (the weights are divided by sqrt(head_dim), so they no longer "
        "sum to one)"):
            v(T("scale the scores, not the weights: softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)"),
              scale="after_softmax"),
        T("softmax over the query axis (dim=-2) instead of the keys"):
            v(T("softmax(scores, dim=-1): each query's weights over the keys sum to one"), softmax_dim=-2),
        T("RoPE in the interleaved layout (pairs 2i, 2i+1) instead of rotate-half"):
            v(T("pair channel i with i + head_dim/2: rotate_half(x) = cat([-x2, x1]) on the two halves"),
              rope="interleaved"),
        # cos and sin swapped gives rotate_half of the backwards rotation, for q and k alike: the same scores
        T("RoPE rotates the wrong way: x * cos - rotate_half(x) * sin, or cos and sin swapped (x * sin + "
        "rotate_half(x) * cos), which gives the same attention"):
            v(T("apply_rope(x, cos, sin) = x * cos + rotate_half(x) * sin with (cos, sin) = precompute_rope(...) in "
                "that order; the checks of apply_rope and precompute_rope tell which of the two it is"),
              rope="flipped"),
        T("RoPE is applied to q and k in the (B, T, H, head_dim) layout, before the transpose"):
            v(T("split the heads and transpose first: q = q_proj(x).view(B, T, H, D).transpose(1, 2), then "
              "apply_rope(q, cos, sin): the tables' rows are positions"), rope="bthd"),
        T("RoPE is missing"):
            v(T("apply apply_rope to q and k after splitting the heads"), rope="none"),
        T("RoPE is applied to q only"):
            v(T("rotate both q and k: their dot product then depends on the offset only"), rope_on=("q",)),
        T("RoPE is also applied to v"):
            v(T("rotate q and k only; v carries content, not position"), rope_on=("q", "k", "v")),
        T("RoPE frequencies use theta ** (-i / head_dim) (the factor 2 is missing)"):
            v(T("inv_freq = theta ** (-torch.arange(0, head_dim, 2) / head_dim)"), exponent="i/d"),
        T("RoPE frequencies use theta ** (+2i / head_dim) (the minus sign is missing)"):
            v(T("inv_freq = theta ** (-2i / head_dim): frequencies fall from 1 towards 1/theta"), exponent="+2i/d"),
        T("RoPE frequencies use theta ** (-4i / head_dim) (arange(0, d, 2) doubled again)"):
            v(T("torch.arange(0, head_dim, 2) already holds 2i: divide by head_dim only"), exponent="4i/d"),
        T("RoPE positions start at 1 instead of 0"):
            v(T("positions are torch.arange(T): the first token is rotated by 0"), start=1),
        T("k/v heads repeated with .repeat (0, 1, 0, 1) instead of repeat_interleave (0, 0, 1, 1)"):
            v(T("query head i reads kv head i // (num_heads // num_kv_heads): use repeat_interleave(n, dim=1)"),
              kv_repeat="tile"),
        T("heads merged without transposing back (reshape of (B, H, T, D) to (B, T, C))"):
            v(T("y.transpose(1, 2).reshape(B, T, C): bring T next to B before merging the heads"), merge="reshape"),
        T("o_proj is not applied"):
            v(T("finish with self.o_proj(y)"), o_proj=False),
    }


# --- block and decoder assembly ------------------------------------------------

TRAP = (T("the trap the docstring names: add each residual to the un-normalised stream (x, not input_layernorm(x)); "
        "normalise a copy for the sublayer and keep x itself for the skip path: h = x + self_attn(input_layernorm(x)), "
        "out = h + mlp(post_attention_layernorm(h))"))


def block_variants(x, sd, C, H, Hkv=None, seq_len=16, eps=1e-6, theta=10000.0):
    """Wrong assemblies of a block, over the stand-in components (what the hybrid check runs)."""
    p = standin_block_parts(sd, C, H, Hkv, seq_len, eps, theta)
    no_eps = standin_block_parts(sd, C, H, Hkv, seq_len, theta=theta)
    eps_first = {**no_eps, "n1": p["n1"]}  # only input_layernorm gets rms_norm_eps
    eps_second = {**no_eps, "n2": p["n2"]}  # only post_attention_layernorm gets it
    no_theta = standin_block_parts(sd, C, H, Hkv, seq_len, eps)
    default = standin_block_parts(sd, C, H, Hkv, seq_len)
    n1, attn, n2, mlp = p["n1"], p["attn"], p["n2"], p["mlp"]

    def v(fn, hint):
        def make():
            with torch.no_grad():
                return fn(x)
        return (make, hint)

    def post_norm(x):
        h = n1(x + attn(x))
        return n2(h + mlp(h))

    def no_res1(x):
        h = attn(n1(x))
        return h + mlp(n2(h))

    def no_res2(x):
        h = x + attn(n1(x))
        return mlp(n2(h))

    def shared_norm(x):
        h = x + attn(n1(x))
        return h + mlp(n1(h))

    def ffn_first(x):
        h = x + mlp(n2(x))
        return h + attn(n1(h))

    def ffn_first_norms_in_order(x):
        h = x + mlp(n1(x))
        return h + attn(n2(h))

    def res_from_normed(x):
        a = n1(x)
        h = a + attn(a)
        b = n2(h)
        return b + mlp(b)

    def res1_from_normed(x):  # x = input_layernorm(x) rebinds the stream before the first residual only
        a = n1(x)
        h = a + attn(a)
        return h + mlp(n2(h))

    def res2_from_normed(x):
        h = x + attn(n1(x))
        b = n2(h)
        return b + mlp(b)

    def parallel(x):
        return x + attn(n1(x)) + mlp(n2(x))

    def norm2_on_x(x):
        h = x + attn(n1(x))
        return h + mlp(n2(x))

    def no_norms(x):
        h = x + attn(x)
        return h + mlp(h)

    def wired(q):
        def fn(x):
            h = x + q["attn"](q["n1"](x))
            return h + q["mlp"](q["n2"](h))
        return fn

    def one_norm_object(x):  # post_attention_layernorm = input_layernorm: the weights loaded last win
        h = x + attn(n2(x))
        return h + mlp(n2(h))

    return {
        T("a post-norm block: norm(x + sublayer(x))"): v(post_norm,
            T("pre-norm: the norm goes *inside* the branch, h = x + self_attn(input_layernorm(x)); "
            "the residual stream itself is never normalised")),
        T("the first residual (around attention) is missing"):
            v(no_res1, T("h = x + self_attn(input_layernorm(x))")),
        T("the second residual (around the MLP) is missing"):
            v(no_res2, T("out = h + mlp(post_attention_layernorm(h))")),
        T("input_layernorm is used for both sublayers"): v(shared_norm,
            T("each sublayer has its own norm: the MLP reads post_attention_layernorm(h)")),
        T("the MLP runs before attention"): v(ffn_first,
            T("attention first (gather from other positions), then the MLP (process each position)")),
        T("the MLP runs before attention (norms in the order they were built)"): v(ffn_first_norms_in_order,
            T("attention first, then the MLP")),
        T("the residual is added to the normalised input, not to x"): v(res_from_normed, TRAP),
        T("the first residual is added to the normalised input (input_layernorm(x) + self_attn(...)), not to x"):
            v(res1_from_normed, TRAP),
        T("the second residual is added to the normalised h (post_attention_layernorm(h) + mlp(...)), not to h"):
            v(res2_from_normed, TRAP),
        T("a parallel block: both sublayers read x"): v(parallel,
            T("sequential: the MLP reads h = x + attention output, not x")),
        T("post_attention_layernorm is applied to x instead of h"): v(norm2_on_x,
            T("the MLP branch reads post_attention_layernorm(h), where h already includes attention")),
        T("the norms are not used"):
            v(no_norms, T("normalise the input of each sublayer: self_attn(input_layernorm(x))")),
        T("one RMSNorm object serves as both norms (post_attention_layernorm = input_layernorm)"): v(one_norm_object,
            T("build two RMSNorm objects: each sublayer's norm has its own weight")),
        T("rms_norm_eps and rope_theta are not passed on to the components"): v(wired(default),
            T("pass the block's arguments on: RMSNorm(hidden_size, eps=rms_norm_eps), "
            "CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)")),
        T("rms_norm_eps is not passed on to the norms (they use the default eps)"): v(wired(no_eps),
            T("RMSNorm(hidden_size, eps=rms_norm_eps) for both norms")),
        T("rms_norm_eps reaches post_attention_layernorm only (input_layernorm uses the default eps)"):
            v(wired(eps_second), T("RMSNorm(hidden_size, eps=rms_norm_eps) for input_layernorm too")),
        T("rms_norm_eps reaches input_layernorm only (post_attention_layernorm uses the default eps)"):
            v(wired(eps_first), T("RMSNorm(hidden_size, eps=rms_norm_eps) for post_attention_layernorm too")),
        T("rope_theta is not passed on to the attention"): v(wired(no_theta),
            T("CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)")),
    }


def ffn_variants(x, sd):
    gw, uw, dw = sd["gate_proj.weight"], sd["up_proj.weight"], sd["down_proj.weight"]
    g, u = x @ gw.T, x @ uw.T

    def v(fn, hint):
        return (lambda: fn() @ dw.T, hint)
    return {
        T("gate_proj and up_proj are swapped (silu applied to up_proj)"): v(lambda: F.silu(u) * g,
            T("silu goes on the gate: down_proj(silu(gate_proj(x)) * up_proj(x))")),
        T("ReLU instead of SiLU"): v(lambda: F.relu(g) * u, T("SwiGLU uses F.silu (x * sigmoid(x)), not relu")),
        T("GELU instead of SiLU"): v(lambda: F.gelu(g) * u, T("SwiGLU uses F.silu, not gelu")),
        T("sigmoid instead of SiLU"): v(lambda: g.sigmoid() * u, T("silu(x) = x * sigmoid(x), not sigmoid(x)")),
        T("up_proj is used as the gate too: silu(up_proj(x)) * up_proj(x)"): v(lambda: F.silu(u) * u,
            T("the gate is its own projection: down_proj(silu(gate_proj(x)) * up_proj(x))")),
        T("gate_proj is used for both factors: silu(gate_proj(x)) * gate_proj(x)"): v(lambda: F.silu(g) * g,
            T("the second factor is up_proj: down_proj(silu(gate_proj(x)) * up_proj(x))")),
        T("no gate: down_proj(silu(up_proj(x)))"): v(lambda: F.silu(u),
            T("multiply by the gate: down_proj(silu(gate_proj(x)) * up_proj(x))")),
        T("silu applied to the product: silu(gate * up)"): v(lambda: F.silu(g * u), T("silu on the gate only")),
        T("gate and up added instead of multiplied"): v(lambda: F.silu(g) + u, T("multiply: silu(gate) * up")),
    }


def _stack(sd, prefix, num_layers, C, H, T, block_kw, norm_eps):
    """Stand-in blocks built with ``block_kw`` and a stand-in final norm with ``norm_eps``, loaded from ``sd``."""
    blk = standin_module("block")
    blocks = []
    for i in range(num_layers):
        b = blk.TransformerBlock(C, H, max_seq_len=T, **block_kw)
        b.load_state_dict({k[len(f"{prefix}blocks.{i}."):]: v for k, v in sd.items()
                           if k.startswith(f"{prefix}blocks.{i}.")})
        blocks.append(b)
    norm = blk.RMSNorm(C, norm_eps)
    norm.load_state_dict({k[len(f"{prefix}norm."):]: v for k, v in sd.items() if k.startswith(f"{prefix}norm.")})
    return blocks, norm


def _run_stack(blocks, norm, x):
    with torch.no_grad():
        for b in blocks:
            x = b(x)
        return norm(x)


def _argument_variants(sd, prefix, num_layers, C, H, seq_len, kwargs, run, owner):
    """What the stack computes when rms_norm_eps or rope_theta stops on the way: ``run(blocks, norm)`` of each
    wrong stack. ``owner`` is the class whose __init__ receives them (TransformerLM or TransformerDecoder)."""
    eps, theta = kwargs.get("rms_norm_eps"), kwargs.get("rope_theta")
    if eps is None and theta is None:
        return {}
    shape = {k: v for k, v in kwargs.items() if k in ("num_kv_heads", "intermediate_size")}
    full = {**shape, **({"rms_norm_eps": eps} if eps is not None else {}),
            **({"rope_theta": theta} if theta is not None else {})}

    def v(block_kw, norm_eps, hint):
        return (lambda: run(*_stack(sd, prefix, num_layers, C, H, seq_len, block_kw, norm_eps)), hint)
    norm_eps = 1e-6 if eps is None else eps
    out = {}
    if eps is not None:
        out[T("rms_norm_eps is not passed on to the final norm (the blocks get it)")] = v(
            full, 1e-6, T("self.norm = RMSNorm(hidden_size, eps=rms_norm_eps) in TransformerDecoder"))
        out[T("rms_norm_eps is not passed on to the blocks (the final norm gets it)")] = v(
            {k: w for k, w in full.items() if k != "rms_norm_eps"}, eps,
            T("TransformerBlock(..., rms_norm_eps=rms_norm_eps, ...) for every block"))
    if theta is not None:
        out[T("rope_theta is not passed on to the blocks")] = v(
            {k: w for k, w in full.items() if k != "rope_theta"}, norm_eps,
            T("TransformerBlock(..., rope_theta=rope_theta) for every block"))
    if eps is not None and theta is not None:
        out[T("rms_norm_eps and rope_theta are not passed on to the blocks (the final norm gets eps)")] = v(
            shape, eps, T("TransformerBlock(hidden_size, num_heads, num_kv_heads, intermediate_size, max_seq_len, "
            "rms_norm_eps, rope_theta)"))
    names = (T("rms_norm_eps and rope_theta") if eps is not None and theta is not None
             else "rms_norm_eps" if eps is not None else "rope_theta")
    if owner == "TransformerDecoder":
        lost = T("{names} do not get past TransformerDecoder: the blocks and the final norm use their defaults",
                 names=names)
    else:
        lost = T("{names} do not get from TransformerLM to the blocks and the final norm, which use their defaults "
                 "(TransformerLM does not pass them to the decoder, or the decoder does not pass them on: the "
                 "decoder's own checks tell which)", names=names)
    out[lost] = v(
        shape, 1e-6, T("pass every argument of {owner}.__init__ on: TransformerDecoder(num_layers, hidden_size, "
                       "num_heads, num_kv_heads, intermediate_size, max_seq_len, rms_norm_eps, rope_theta), and from "
                       "there to each TransformerBlock and RMSNorm(hidden_size, eps=rms_norm_eps)", owner=owner))
    return out


def decoder_arguments(x, sd, num_layers, C, H, T=16, **kwargs):
    """TransformerDecoder(..., **kwargs) over stand-ins with rms_norm_eps or rope_theta lost on the way."""
    return _argument_variants(sd, "", num_layers, C, H, T, kwargs, lambda b, n: _run_stack(b, n, x),
                              "TransformerDecoder")


def lm_arguments(idx, sd, num_layers, C, H, T=16, **kwargs):
    """TransformerLM(..., **kwargs) over stand-in blocks with rms_norm_eps or rope_theta lost on the way."""
    emb = sd["embed_tokens.weight"]
    return _argument_variants(sd, "decoder.", num_layers, C, H, T, kwargs,
                              lambda b, n: _run_stack(b, n, emb[idx]) @ emb.T, "TransformerLM")


def decoder_variants(x, sd, num_layers, C, H, seq_len=16):
    """Wrong stackings, over stand-in blocks and the stand-in final norm."""
    blocks, norm = standin_stack(sd, "", num_layers, C, H, seq_len)

    def v(fn, hint):
        def make():
            with torch.no_grad():
                return fn(x)
        return (make, hint)

    def stack(x, order, final=True, each=False):
        for i in order:
            x = blocks[i](x)
            if each:
                x = norm(x)
        return norm(x) if final and not each else x

    L = list(range(num_layers))
    return {
        T("the final norm is missing"): v(lambda x: stack(x, L, final=False), T("end with x = self.norm(x)")),
        T("the blocks run in reverse order"):
            v(lambda x: stack(x, L[::-1]), T("for block in self.blocks: x = block(x)")),
        T("one block (the last) is applied num_layers times"): v(lambda x: stack(x, [L[-1]] * num_layers),
            T("build num_layers separate blocks: nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)])")),
        T("one block (the first) is applied num_layers times"): v(lambda x: stack(x, [0] * num_layers),
            T("build num_layers separate blocks in a list comprehension, not [block] * num_layers")),
        T("only the last block's output is used (each block reads the input)"): v(lambda x: norm(blocks[-1](x)),
            T("feed each block the previous block's output: x = block(x)")),
        T("the final norm is applied before the blocks"): v(lambda x: stack(norm(x), L, final=False),
            T("apply self.norm once, after the last block")),
        T("the norm is applied after every block"): v(lambda x: stack(x, L, each=True),
            T("apply self.norm once, after the last block")),
        T("one block is missing"): v(lambda x: stack(x, L[:-1]), T("iterate over all of self.blocks")),
    }


def lm_variants(idx, sd, num_layers, C, H, seq_len=16):
    """Wrong language models around the stand-in decoder (what the scored LM checks run)."""
    blocks, norm = standin_stack(sd, "decoder.", num_layers, C, H, seq_len)
    emb = sd["embed_tokens.weight"]

    def decode(x):
        for b in blocks:
            x = b(x)
        return norm(x)

    def v(fn, hint):
        def make():
            with torch.no_grad():
                return fn()
        return (make, hint)
    return {
        T("the embeddings are multiplied by sqrt(hidden_size) (a habit from the original Transformer)"):
            v(lambda: decode(emb[idx] * math.sqrt(C)) @ emb.T,
              T("use the embeddings as they are: x = self.embed_tokens(idx); the tied head reads the same scale")),
        T("the decoder is skipped: lm_head reads the embeddings directly"):
            v(lambda: emb[idx] @ emb.T, T("logits = lm_head(decoder(embed_tokens(idx)))")),
    }

