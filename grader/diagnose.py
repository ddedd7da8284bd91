"""Naming the mistake behind a failed check.

Three ways, tried in this order:

- known wrong variants: what a typical mistake would output on the same input.
  When a submission's output is wrong, ``assert_close`` computes these from the
  check's own inputs and weights; a match is named (``likely:``) together with
  the hint for that mistake;
- known crashes (``attention_crash``, ``rmsnorm_crash``, ``lm_crash``): an
  exception whose message betrays a classic mistake (k/v heads not repeated,
  RoPE on the wrong layout, a transposed head, a lost keepdim);
- for attention, a staged diagnosis when nothing else matched
  (``staged_attention``): probes with special weights that make the output show
  the attention weights, reported as a best guess at the first step that differs.

``explaining(...)`` wraps a check's calls and adds the first explanation found.
The mutants in ``tests/mutants`` exercise these paths; docs/bug-zoo.md lists
which mistake each one names.
"""


def residual_variants(x, f):
    return {
        "Residual returns sublayer(x) alone (the skip path is missing)":
            (lambda: f(x), "add the input back: return x + self.sublayer(x)"),
        "Residual returns x alone (the sublayer is skipped)":
            (lambda: x.clone(), "add the sublayer's output: return x + self.sublayer(x)"),
        "Residual returns x + x (the sublayer's output is not used)":
            (lambda: 2 * x, "call the sublayer: return x + self.sublayer(x)"),
    }


def rmsnorm_variants(x, w, eps):
    import torch
    xf = x.float()
    ms = xf.pow(2).mean(-1, keepdim=True)

    def out(t):
        return t.type_as(x) * w
    return {
        "RMSNorm subtracts the mean (that is LayerNorm)":
            (lambda: out((xf - xf.mean(-1, keepdim=True)) * torch.rsqrt(xf.var(-1, keepdim=True, unbiased=False) + eps)),
             "RMSNorm only rescales: divide x itself by its root mean square, do not centre it"),
        "eps is added outside the square root: x / (sqrt(mean(x**2)) + eps)":
            (lambda: out(xf / (ms.sqrt() + eps)), "put eps inside: torch.rsqrt(mean + eps)"),
        "eps is added after the reciprocal square root: x * (rsqrt(mean(x**2)) + eps)":
            (lambda: out(xf * (torch.rsqrt(ms) + eps)), "put eps inside: torch.rsqrt(mean + eps)"),
        "eps is left out": (lambda: out(xf * torch.rsqrt(ms)), "add eps inside the square root: torch.rsqrt(mean + eps)"),
        "the statistic is taken over dimension 0 instead of the last one":
            (lambda: out(xf * torch.rsqrt(xf.pow(2).mean(0, keepdim=True) + eps)),
             "normalise each vector over its features: mean(dim=-1, keepdim=True)"),
        "the statistic is taken over dimension 1 (the sequence) instead of the last one":
            (lambda: out(xf * torch.rsqrt(xf.pow(2).mean(1, keepdim=True) + eps)),
             "normalise each vector over its features: mean(dim=-1, keepdim=True)"),
        "the weight is not applied":
            (lambda: (xf * torch.rsqrt(ms + eps)).type_as(x) * torch.ones_like(w),
             "multiply by self.weight at the end"),
        "the sum of squares is used instead of the mean":
            (lambda: out(xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)),
             "use mean(x**2, dim=-1), not sum: RMS is a root *mean* square"),
        "x is multiplied by the root mean square instead of divided by it (sqrt instead of rsqrt)":
            (lambda: out(xf * torch.sqrt(ms + eps)),
             "divide by the RMS: x * torch.rsqrt(mean + eps), r for reciprocal"),
        "x is divided by the mean square, not by its square root":
            (lambda: out(xf / (ms + eps)), "take the square root: torch.rsqrt(mean + eps)"),
        "x is divided by its standard deviation (torch.std)":
            (lambda: out(xf / (xf.std(-1, keepdim=True) + eps)),
             "the root mean square is sqrt(mean(x**2)), not the standard deviation"),
        "the statistics are computed in bfloat16 (no float32 upcast)":
            (lambda: (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * w,
             "compute on x.float() and cast back with .type_as(x): squares in bfloat16 lose precision"),
    }


# --- RoPE and attention ----------------------------------------------------------

def rope_tables(head_dim, T, theta=10000.0, exponent="2i/d", start=0, layout="half"):
    """RoPE tables with the knobs students get wrong: the exponent, the first position, the layout."""
    import torch
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


def rotate(x, cos, sin, layout="half"):
    import torch
    if layout == "half":
        x1, x2 = x.chunk(2, -1)
        rot = torch.cat([-x2, x1], -1)
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
    import math
    import torch
    B, T, C = x.shape
    H, Hkv = num_heads, num_kv_heads or num_heads
    D = C // H
    x = x.float()
    q = (x @ sd["q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
    k = (x @ sd["k_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
    v = (x @ sd["v_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
    if rope != "none":
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
    div = {"head_dim": math.sqrt(D), "hidden": math.sqrt(C), "none": 1.0, "head_dim_nosqrt": D}[scale]
    s = q @ k.transpose(-2, -1) / div
    if mask in ("causal", "diagonal", "shifted"):
        offset = {"causal": 1, "diagonal": 0, "shifted": 2}[mask]
        m = torch.ones(T, T, dtype=torch.bool).triu(offset)
        s = s.masked_fill(m, float("-inf"))  # with the diagonal masked, row 0 is all -inf: NaN, as the bug gives
    if mask == "lower":
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
    a = torch.softmax(s, dim=softmax_dim)
    if mask == "after_softmax":  # future weights zeroed after the softmax: rows no longer sum to one
        a = a.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), 0.0)
    y = a @ v  # (B, H, T, D)
    if merge == "transpose":
        y = y.transpose(1, 2).reshape(B, T, H * D)
    elif merge == "reshape":  # heads and time mixed up: reshape without transpose
        y = y.reshape(B, T, H * D)
    return y @ sd["o_proj.weight"].T if o_proj else y


def attention_variants(x, sd, H, Hkv=None, theta=10000.0):
    """Each entry: what the mistake would output on x with weights sd."""
    def v(hint, **knobs):
        return (lambda: attention(x, sd, H, Hkv, theta, **knobs), hint)
    return {
        "no causal mask (every position sees the future)":
            v("mask the scores above the diagonal with -inf before the softmax: triu(ones(T, T), diagonal=1)",
              mask="none"),
        "the mask also hides the diagonal (a token cannot attend to itself)":
            v("mask strictly above the diagonal: torch.triu(..., diagonal=1), not diagonal=0", mask="diagonal"),
        "the mask is shifted: position t also sees t + 1":
            v("mask strictly above the diagonal: torch.triu(..., diagonal=1)", mask="shifted"),
        "the mask hides the past instead of the future (tril instead of triu)":
            v("keys after the query (s > t) are masked: triu, not tril", mask="lower"),
        "the mask is applied after the softmax (the weights of each query no longer sum to one)":
            v("mask the scores with -inf *before* the softmax, so it renormalises over the visible keys",
              mask="after_softmax"),
        "scores are scaled by sqrt(hidden_size) instead of sqrt(head_dim)":
            v("divide by math.sqrt(self.head_dim): each head's dot product has head_dim terms", scale="hidden"),
        "scores are not scaled":
            v("divide the scores by math.sqrt(head_dim) before the softmax", scale="none"),
        "scores are divided by head_dim instead of sqrt(head_dim)":
            v("divide by math.sqrt(head_dim), not head_dim", scale="head_dim_nosqrt"),
        "softmax over the query axis (dim=-2) instead of the keys":
            v("softmax(scores, dim=-1): each query's weights over the keys sum to one", softmax_dim=-2),
        "RoPE in the interleaved layout (pairs 2i, 2i+1) instead of rotate-half":
            v("pair channel i with i + head_dim/2: rotate_half(x) = cat([-x2, x1]) on the two halves",
              rope="interleaved"),
        "RoPE rotates the wrong way (rotate_half returns cat([x2, -x1]))":
            v("rotate_half(x) = cat([-x2, x1], dim=-1)", rope="flipped"),
        "RoPE is missing":
            v("apply apply_rope to q and k after splitting the heads", rope="none"),
        "RoPE is applied to q only":
            v("rotate both q and k: their dot product then depends on the offset only", rope_on=("q",)),
        "RoPE is also applied to v":
            v("rotate q and k only; v carries content, not position", rope_on=("q", "k", "v")),
        "RoPE frequencies use theta ** (-i / head_dim) (the factor 2 is missing)":
            v("inv_freq = theta ** (-torch.arange(0, head_dim, 2) / head_dim)", exponent="i/d"),
        "RoPE frequencies use theta ** (+2i / head_dim) (the minus sign is missing)":
            v("inv_freq = theta ** (-2i / head_dim): frequencies fall from 1 towards 1/theta", exponent="+2i/d"),
        "RoPE frequencies use theta ** (-4i / head_dim) (arange(0, d, 2) doubled again)":
            v("torch.arange(0, head_dim, 2) already holds 2i: divide by head_dim only", exponent="4i/d"),
        "RoPE positions start at 1 instead of 0":
            v("positions are torch.arange(T): the first token is rotated by 0", start=1),
        "k/v heads repeated with .repeat (0, 1, 0, 1) instead of repeat_interleave (0, 0, 1, 1)":
            v("query head i reads kv head i // (num_heads // num_kv_heads): use repeat_interleave(n, dim=1)",
              kv_repeat="tile"),
        "heads merged without transposing back (reshape of (B, H, T, D) to (B, T, C))":
            v("y.transpose(1, 2).reshape(B, T, C): bring T next to B before merging the heads", merge="reshape"),
        "o_proj is not applied":
            v("finish with self.o_proj(y)", o_proj=False),
    }


# --- block and decoder assembly ------------------------------------------------

def _standin_module(name):
    from lab import loader
    from .submission import STANDINS
    return loader.import_module(STANDINS, name)


def _sub_state(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def standin_block_parts(sd, C, H, Hkv=None, T=16, eps=1e-6, theta=10000.0):
    """The stand-in components of a block, loaded with the block's weights."""
    blk = _standin_module("block")
    parts = {
        "n1": blk.RMSNorm(C, eps), "attn": blk.CausalSelfAttention(C, H, Hkv, T, theta),
        "n2": blk.RMSNorm(C, eps), "mlp": blk.FeedForward(C),
    }
    prefixes = {"n1": "input_layernorm.", "attn": "self_attn.", "n2": "post_attention_layernorm.", "mlp": "mlp."}
    for k, m in parts.items():
        m.load_state_dict(_sub_state(sd, prefixes[k]))
    return parts


def block_variants(x, sd, C, H, Hkv=None, T=16, eps=1e-6, theta=10000.0):
    """Wrong assemblies of a block, over the stand-in components (what the hybrid check runs)."""
    import torch
    p = standin_block_parts(sd, C, H, Hkv, T, eps, theta)
    no_eps = standin_block_parts(sd, C, H, Hkv, T, theta=theta)
    no_theta = standin_block_parts(sd, C, H, Hkv, T, eps)
    default = standin_block_parts(sd, C, H, Hkv, T)
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
        "a post-norm block: norm(x + sublayer(x))": v(post_norm,
            "pre-norm: the norm goes *inside* the branch, h = x + self_attn(input_layernorm(x)); "
            "the residual stream itself is never normalised"),
        "the first residual (around attention) is missing": v(no_res1, "h = x + self_attn(input_layernorm(x))"),
        "the second residual (around the MLP) is missing": v(no_res2, "out = h + mlp(post_attention_layernorm(h))"),
        "input_layernorm is used for both sublayers": v(shared_norm,
            "each sublayer has its own norm: the MLP reads post_attention_layernorm(h)"),
        "the MLP runs before attention": v(ffn_first,
            "attention first (gather from other positions), then the MLP (process each position)"),
        "the MLP runs before attention (norms in the order they were built)": v(ffn_first_norms_in_order,
            "attention first, then the MLP"),
        "the residual is added to the normalised input, not to x": v(res_from_normed,
            "add the sublayer's output to the un-normalised stream: x + self_attn(input_layernorm(x))"),
        "a parallel block: both sublayers read x": v(parallel,
            "sequential: the MLP reads h = x + attention output, not x"),
        "post_attention_layernorm is applied to x instead of h": v(norm2_on_x,
            "the MLP branch reads post_attention_layernorm(h), where h already includes attention"),
        "the norms are not used": v(no_norms, "normalise the input of each sublayer: self_attn(input_layernorm(x))"),
        "one RMSNorm object serves as both norms (post_attention_layernorm = input_layernorm)": v(one_norm_object,
            "build two RMSNorm objects: each sublayer's norm has its own weight"),
        "rms_norm_eps and rope_theta are not passed on to the components": v(wired(default),
            "pass the block's arguments on: RMSNorm(hidden_size, eps=rms_norm_eps), "
            "CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)"),
        "rms_norm_eps is not passed on to the norms (they use the default eps)": v(wired(no_eps),
            "RMSNorm(hidden_size, eps=rms_norm_eps) for both norms"),
        "rope_theta is not passed on to the attention": v(wired(no_theta),
            "CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)"),
    }


def ffn_variants(x, sd):
    import torch.nn.functional as F
    gw, uw, dw = sd["gate_proj.weight"], sd["up_proj.weight"], sd["down_proj.weight"]
    g, u = x @ gw.T, x @ uw.T

    def v(fn, hint):
        return (lambda: fn() @ dw.T, hint)
    return {
        "gate_proj and up_proj are swapped (silu applied to up_proj)": v(lambda: F.silu(u) * g,
            "silu goes on the gate: down_proj(silu(gate_proj(x)) * up_proj(x))"),
        "ReLU instead of SiLU": v(lambda: F.relu(g) * u, "SwiGLU uses F.silu (x * sigmoid(x)), not relu"),
        "GELU instead of SiLU": v(lambda: F.gelu(g) * u, "SwiGLU uses F.silu, not gelu"),
        "sigmoid instead of SiLU": v(lambda: g.sigmoid() * u, "silu(x) = x * sigmoid(x), not sigmoid(x)"),
        "no gate: down_proj(silu(up_proj(x)))": v(lambda: F.silu(u),
            "multiply by the gate: down_proj(silu(gate_proj(x)) * up_proj(x))"),
        "silu applied to the product: silu(gate * up)": v(lambda: F.silu(g * u), "silu on the gate only"),
        "gate and up added instead of multiplied": v(lambda: F.silu(g) + u, "multiply: silu(gate) * up"),
    }


def _standin_stack(sd, prefix, num_layers, C, H, T):
    """The stand-in blocks and final norm of a decoder, loaded from ``sd`` under ``prefix``."""
    blk = _standin_module("block")
    blocks = []
    for i in range(num_layers):
        b = blk.TransformerBlock(C, H, max_seq_len=T)
        b.load_state_dict(_sub_state(sd, f"{prefix}blocks.{i}."))
        blocks.append(b)
    norm = blk.RMSNorm(C)
    norm.load_state_dict(_sub_state(sd, f"{prefix}norm."))
    return blocks, norm


def decoder_variants(x, sd, num_layers, C, H, T=16):
    """Wrong stackings, over stand-in blocks and the stand-in final norm."""
    import torch
    blocks, norm = _standin_stack(sd, "", num_layers, C, H, T)

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
        "the final norm is missing": v(lambda x: stack(x, L, final=False), "end with x = self.norm(x)"),
        "the blocks run in reverse order": v(lambda x: stack(x, L[::-1]), "for block in self.blocks: x = block(x)"),
        "one block (the last) is applied num_layers times": v(lambda x: stack(x, [L[-1]] * num_layers),
            "build num_layers separate blocks: nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)])"),
        "one block (the first) is applied num_layers times": v(lambda x: stack(x, [0] * num_layers),
            "build num_layers separate blocks in a list comprehension, not [block] * num_layers"),
        "only the last block's output is used (each block reads the input)": v(lambda x: norm(blocks[-1](x)),
            "feed each block the previous block's output: x = block(x)"),
        "the final norm is applied before the blocks": v(lambda x: stack(norm(x), L, final=False),
            "apply self.norm once, after the last block"),
        "the norm is applied after every block": v(lambda x: stack(x, L, each=True),
            "apply self.norm once, after the last block"),
        "one block is missing": v(lambda x: stack(x, L[:-1]), "iterate over all of self.blocks"),
    }


def lm_variants(idx, sd, num_layers, C, H, T=16):
    """Wrong language models around the stand-in decoder (what the scored LM checks run)."""
    import math
    import torch
    blocks, norm = _standin_stack(sd, "decoder.", num_layers, C, H, T)
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
        "the embeddings are multiplied by sqrt(hidden_size) (a habit from the original Transformer)":
            v(lambda: decode(emb[idx] * math.sqrt(C)) @ emb.T,
              "use the embeddings as they are: x = self.embed_tokens(idx); the tied head reads the same scale"),
        "the decoder is skipped: lm_head reads the embeddings directly":
            v(lambda: emb[idx] @ emb.T, "logits = lm_head(decoder(embed_tokens(idx)))"),
    }


# --- crashes with a known cause --------------------------------------------------

def with_diagnosis(failure, diagnosis, hint=None):
    """The same failure, with a ``likely:`` line (and a sharper hint)."""
    from .compare import CheckFailure
    return CheckFailure(failure.checked, failure.expected, failure.got, hint or failure.hint, diagnosis)


class explaining:
    """``with explaining(fn, ...):`` re-raises an unexplained CheckFailure with the first ``fn(failure)`` that
    returns ``(diagnosis, hint)``. An explainer that fails itself is skipped: a diagnosis never breaks a check."""

    def __init__(self, *explainers):
        self.explainers = explainers

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from .compare import CheckFailure
        if not isinstance(exc, CheckFailure) or exc.diagnosis is not None:
            return False
        for fn in self.explainers:
            try:
                found = fn(exc)
            except Exception:
                found = None
            if found:
                raise with_diagnosis(exc, *found) from None
        return False


def _raised(failure):
    """The student's exception text when the failure is a crash in their code, else ''."""
    got = str(failure.got or "")
    return got if got.startswith("your code raised") else ""


def _broadcast_sizes(text):
    import re
    m = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)", text)
    return {int(m.group(1)), int(m.group(2))} if m else None


def attention_crash(H, Hkv=None):
    """Explain the crashes that betray a classic attention mistake, for a module with H heads and Hkv kv heads."""
    Hkv = Hkv or H

    def explain(failure):
        text = _raised(failure)
        if not text:
            return None
        sizes = _broadcast_sizes(text)
        if "in apply_rope" in text and sizes:
            return ("RoPE is applied to q or k in another layout than (B, H, T, head_dim): the (T, head_dim) "
                    "tables broadcast against the wrong dimensions",
                    "split the heads and transpose first: q = q_proj(x).view(B, T, H, D).transpose(1, 2), "
                    "then apply_rope(q, cos[:T], sin[:T])")
        if Hkv < H and sizes == {H, Hkv}:
            return (f"k/v heads are not repeated for grouped-query attention: q has {H} heads, k and v have {Hkv}",
                    "repeat k and v along the head dimension: k.repeat_interleave(num_heads // num_kv_heads, dim=1) "
                    "(query head i reads kv head i // n_rep)")
        if Hkv < H and "is invalid for input of size" in text:
            return ("k_proj or v_proj has the wrong number of outputs for grouped-query attention",
                    "k_proj and v_proj map hidden_size to num_kv_heads * head_dim features, not hidden_size")
        return None
    return explain


def rmsnorm_crash(failure):
    text = _raised(failure)
    if text and _broadcast_sizes(text) and "in forward" in text:
        return ("the statistic lost its last dimension (keepdim=True is missing), so it cannot broadcast "
                "against x", "mean(-1, keepdim=True) gives shape (..., 1), which divides every feature of a vector")
    return None


def lm_crash(V, C):
    """A head that multiplies by the (V, C) embedding matrix without transposing it."""
    def explain(failure):
        import re
        m = re.search(r"cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)", _raised(failure))
        if m and (int(m.group(2)), int(m.group(3)), int(m.group(4))) == (C, V, C):
            return ("the output head multiplies by embed_tokens.weight (vocab_size, hidden_size) without "
                    "transposing it", "use self.lm_head(x): nn.Linear computes x @ weight.T, and lm_head.weight "
                    "is the tied (V, C) embedding matrix")
        return None
    return explain


# --- staged diagnosis of attention ---------------------------------------------
#
# When an attention output is wrong and no known variant matches, the grader
# probes the submission with weights chosen so that only a few steps matter,
# and reports the first step whose probe disagrees with the reference. The
# worker only returns outputs, so the probes make the output *show* the
# internals: with v_proj reading out a one-hot code of the position and
# o_proj = identity, each head's output row t is row t of its attention
# matrix.

def _probe_weights(C, H, Hkv, D, q=None, k=None, v=None, o=None):
    import torch
    z = torch.zeros
    return {"q_proj.weight": z(H * D, C) if q is None else q, "k_proj.weight": z(Hkv * D, C) if k is None else k,
            "v_proj.weight": z(Hkv * D, C) if v is None else v, "o_proj.weight": torch.eye(C) if o is None else o}


def _readout(C, H, Hkv, D, T):
    """x[s] holds e_s in each head's slot; v_proj copies the first slot to every kv head, so v at position s is e_s."""
    import torch
    x = torch.zeros(1, T, C)
    for s in range(T):
        x[0, s, s::D][:H] = 1.0
    wv = torch.zeros(Hkv * D, C)
    for j in range(Hkv):
        wv[j * D:(j + 1) * D, :D] = torch.eye(D)
    return x, wv


def _slot(M, H, D):
    """A (H*D, C) projection that reads only the first head slot of the readout x: column s acts on e_s."""
    import torch
    w = torch.zeros(M.shape[0], H * D)
    w[:, :D] = M
    return w


def _decode(y, H, D, T):
    """Output (1, T, C) of a readout probe -> (weights (H, T, T), leftover channels (H, T, D - T))."""
    y = y[0].reshape(T, H, D).transpose(0, 1).double()
    return y[..., :T], y[..., T:]


def staged_attention(sub, ref, C, H, Hkv=None, theta=10000.0, max_seq_len=16):
    """``(diagnosis, hint)``: a best guess at the first step of attention that differs, or None."""
    try:
        return _staged(sub, ref, C, H, Hkv or H, theta, max_seq_len)
    except Exception:  # the submission failed on a probe, or shapes that cannot be probed: no guess
        return None


def _staged(sub, ref, C, H, Hkv, theta, max_seq_len):
    import math
    import torch
    from .compare import FP32_DEEP, is_close
    from .harness import both, call
    D, n = C // H, H // Hkv
    if D * H != C or D < 4:
        return None
    g = torch.Generator().manual_seed(20240601)
    init = ([C, H], {"num_kv_heads": None if Hkv == H else Hkv, "max_seq_len": max_seq_len, "rope_theta": theta})

    def run(sd, x):
        got, exp = both(sub, ref, "attention", "CausalSelfAttention", "a diagnostic probe", init=init, load=sd,
                        calls=[call(x)])
        return got["results"][0]["output"], exp["results"][0]["output"]

    def same(y, e):
        return isinstance(y, torch.Tensor) and is_close(y, e, FP32_DEEP)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) / math.sqrt(shape[-1])

    def guess(stage, detail, hint):
        return (f"best guess from probes with special weights, not certain: the first step that differs looks like "
                f"{stage}: {detail}", hint)

    # 1. T = 1: the only key gets weight 1 whatever the scores, so only v_proj, the head bookkeeping and o_proj act.
    full = _probe_weights(C, H, Hkv, D, rnd(H * D, C), rnd(Hkv * D, C), rnd(Hkv * D, C), rnd(C, H * D))
    x1 = torch.randn(1, 1, C, generator=g)
    y, e = run(full, x1)
    if not same(y, e):
        if isinstance(y, torch.Tensor) and bool(torch.isnan(y).any()):
            return guess("the mask", "at T = 1 the output is NaN, so the token's score with itself is masked",
                         "mask strictly above the diagonal: triu(ones(T, T), diagonal=1)")
        y2, e2 = run({**full, "o_proj.weight": torch.eye(C)}, x1)
        if same(y2, e2):
            return guess("o_proj", "with o_proj set to the identity the output is right",
                         "finish with self.o_proj(y) on the merged heads (B, T, num_heads * head_dim)")
        return guess("the value path (v_proj, the head split, the kv-head repeat)",
                     "even at T = 1, where attention only copies v, the output differs",
                     "check v_proj, the head split (B, T, C) -> (B, H, T, D), the kv-head repeat and the merge")

    # 2. q = 0: every score is 0, so each query spreads its weight evenly over the keys it may see.
    T = max(2, min(6, D // 2, max_seq_len))
    x, wv = _readout(C, H, Hkv, D, T)
    y, e = run(_probe_weights(C, H, Hkv, D, k=rnd(Hkv * D, C), v=wv), x)
    if not same(y, e):
        if not (isinstance(y, torch.Tensor) and y.shape == e.shape):
            return None
        A, rest = _decode(y, H, D, T)
        if not bool(torch.isfinite(A).all()):
            return guess("the mask",
                         "with all scores equal, some query gets NaN weights: every key it may see is masked",
                         "mask strictly above the diagonal: triu(ones(T, T), diagonal=1); the diagonal stays visible")
        if (A - A[:1]).abs().max() > 1e-4:
            return guess("the head split or merge", "with every head given the same input, the heads come out "
                         "different: positions and heads get mixed when the heads are split or merged",
                         "split with .view(B, T, H, D).transpose(1, 2); merge with .transpose(1, 2).reshape(B, T, C)")
        if rest.abs().max() > 1e-4:
            return guess("RoPE", "the values come out rotated: RoPE seems to act on v",
                         "apply RoPE to q and k only; v carries content, not position")
        W = A[0]
        if W.triu(1).abs().max() > 1e-4:
            return guess("the mask", "queries give weight to later positions", "mask the scores above the diagonal "
                         "with -inf before the softmax: triu(ones(T, T), diagonal=1)")
        if (W.sum(-1) - 1).abs().max() > 1e-4:
            if (W.sum(-2) - 1).abs().max() < 1e-4:
                return guess("the softmax", "the weights of each key sum to one, not those of each query",
                             "softmax(scores, dim=-1): over the keys")
            return guess("the softmax", "the weights of a query do not sum to one",
                         "mask with -inf before a softmax over the last dimension, and do not rescale afterwards")
        return guess("the mask", "with all scores equal, a query does not weigh the keys it may see evenly",
                     "mask exactly the keys after the query: triu(ones(T, T), diagonal=1)")

    # 3. T = 2 with k_0 = 0: query 1 weighs key 1 by sigmoid(score(1, 1)). q_1 and k_1 live on the channel pair
    #    RoPE turns slowest, so even a RoPE applied unevenly barely moves score(1, 1) = q_1 . k_1 / sqrt(head_dim).
    x, wv = _readout(C, H, Hkv, D, 2)
    slow = [D // 2 - 1, D - 1]
    kv = torch.randn(Hkv, 2, generator=g)
    target = torch.tensor([0.8 + 1.2 * h / max(H - 1, 1) for h in range(H)])  # reference scores, 0.8 to 2.0
    Q, K = torch.zeros(H * D, D), torch.zeros(Hkv * D, D)
    for j in range(Hkv):
        K[[j * D + c for c in slow], 1] = kv[j]
    for h in range(H):
        kj = kv[h // n]
        Q[[h * D + c for c in slow], 1] = kj * (target[h] * math.sqrt(D) / kj.dot(kj))
        Q[h * D:(h + 1) * D, 0] = torch.randn(D, generator=g)
    y, e = run(_probe_weights(C, H, Hkv, D, _slot(Q, H, D), _slot(K, H, D), wv), x)
    if not (isinstance(y, torch.Tensor) and y.shape == e.shape):
        return None
    a, a_ref = _decode(y, H, D, 2)[0][:, 1, 1], _decode(e, H, D, 2)[0][:, 1, 1]
    s, s_ref = torch.logit(a.clamp(1e-12, 1 - 1e-12)), torch.logit(a_ref)
    if not bool(((s - s_ref).abs() <= 0.05 * s_ref.abs() + 1e-3).all()):
        r = s / s_ref
        factor = r.mean().item()
        if (r - factor).abs().max() < 0.02 * abs(factor) and abs(factor - 1) > 0.15:
            named = {"sqrt(head_dim / hidden_size)": math.sqrt(D / C), "sqrt(head_dim)": math.sqrt(D),
                     "1 / sqrt(head_dim)": 1 / math.sqrt(D)}
            what = next((f"{k} (about {factor:.2f})" for k, f in named.items() if abs(factor / f - 1) < 0.02),
                        f"about {factor:.3g}")
            return guess("the scores", f"every score is the reference's times {what}: the scaling differs",
                         "scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)")
        return guess("the scores", "query 1's weights over keys 0 and 1 differ on a probe that RoPE barely touches, "
                     "and not by a constant factor on the scores",
                     "scores[b, h, t, s] = q[b, h, t] . k[b, h, s] / sqrt(head_dim): q @ k.transpose(-2, -1), "
                     "per head")

    # 4. random q and k at T positions: now only the positions (RoPE) can make a difference.
    x, wv = _readout(C, H, Hkv, D, T)
    y, e = run(_probe_weights(C, H, Hkv, D, _slot(rnd(H * D, D) * 2, H, D), _slot(rnd(Hkv * D, D) * 2, H, D), wv), x)
    if not same(y, e):
        return guess("RoPE", "the weights differ only once q and k sit at different positions",
                     "RoPE tables: inv_freq = theta ** (-arange(0, D, 2) / D), positions from 0, the rotate-half "
                     "layout; apply the same rotation to q and k")
    return None


def attention_staged(sub, ref, C, H, Hkv=None, theta=10000.0, max_seq_len=16):
    """An explainer (see ``explaining``) that runs the staged probes on a wrong attention output."""
    def explain(failure):
        if not str(failure.expected or "").startswith(("the reference's values", "finite values")):
            return None
        return staged_attention(sub, ref, C, H, Hkv, theta, max_seq_len)
    return explain
