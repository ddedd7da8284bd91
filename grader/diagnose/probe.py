"""The staged diagnosis of attention: when an output is wrong and no known variant matches.

The grader probes the submission with weights chosen so that only a few steps of attention
matter, and reports the first step whose probe disagrees with the reference, as a best guess.
The worker only returns outputs, so the probes make the output *show* the internals: with
v_proj reading out a one-hot code of the position and o_proj = identity, each head's output row
t is row t of its attention matrix. The probes' reference answers come through ``ref.run`` like
every other, so this file holds no formula of attention and ships with the release.
"""
import math

import torch

from kit.outcome import Kind, T

from ..compare import FP32_DEEP, is_close
from ..harness import both, call

# the steps of attention a guess names
MASK, SOFTMAX, SCORES = T("the mask"), T("the softmax"), T("the scores")


def _probe_weights(C, H, Hkv, D, q=None, k=None, v=None, o=None):
    z = torch.zeros
    return {"q_proj.weight": z(H * D, C) if q is None else q, "k_proj.weight": z(Hkv * D, C) if k is None else k,
            "v_proj.weight": z(Hkv * D, C) if v is None else v, "o_proj.weight": torch.eye(C) if o is None else o}


def _readout(C, H, Hkv, D, T):
    """x[s] holds e_s in each head's slot; v_proj copies the first slot to every kv head, so v at position s is e_s."""
    x = torch.zeros(1, T, C)
    for s in range(T):
        x[0, s, s::D][:H] = 1.0
    wv = torch.zeros(Hkv * D, C)
    for j in range(Hkv):
        wv[j * D:(j + 1) * D, :D] = torch.eye(D)
    return x, wv


def _slot(M, H, D):
    """A (H*D, C) projection that reads only the first head slot of the readout x: column s acts on e_s."""
    w = torch.zeros(M.shape[0], H * D)
    w[:, :D] = M
    return w


def _decode(y, H, D, T):
    """Output (1, T, C) of a readout probe -> (weights (H, T, T), leftover channels (H, T, D - T))."""
    y = y[0].reshape(T, H, D).transpose(0, 1).double()
    return y[..., :T], y[..., T:]


def _factor(y, e):
    """The constant c with y = c * e (c away from 1), or None."""
    if not (isinstance(y, torch.Tensor) and y.shape == e.shape and bool(torch.isfinite(y).all())):
        return None
    y, e = y.double(), e.double()
    norm = float((e * e).sum())
    if norm == 0.0:
        return None
    c = float((y * e).sum()) / norm
    if abs(c - 1) < 1e-3 or float((y - c * e).abs().max()) > 1e-4 * (1 + float(e.abs().max())):
        return None
    return c


def staged_attention(sub, ref, C, H, Hkv=None, theta=10000.0, max_seq_len=16):
    """``(diagnosis, hint)``: a best guess at the first step of attention that differs, or None."""
    try:
        return _staged(sub, ref, C, H, Hkv or H, theta, max_seq_len)
    except Exception:  # noqa: BLE001 - the submission failed on a probe, or shapes that cannot be probed: no guess
        return None


def _staged(sub, ref, C, H, Hkv, theta, max_seq_len):
    D, n = C // H, H // Hkv
    if D * H != C or D < 4:
        return None
    g = torch.Generator().manual_seed(20240601)
    init = ([C, H], {"num_kv_heads": None if Hkv == H else Hkv, "max_seq_len": max_seq_len, "rope_theta": theta})

    def run(sd, x):
        got, exp = both(sub, ref, "attention", "CausalSelfAttention", T("a diagnostic probe"), init=init, load=sd,
                        calls=[call(x)])
        return got["results"][0]["output"], exp["results"][0]["output"]

    def same(y, e):
        return isinstance(y, torch.Tensor) and is_close(y, e, FP32_DEEP)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) / math.sqrt(shape[-1])

    def guess(stage, detail, hint):
        return (T("best guess from probes with special weights, not certain: the first step that differs looks like "
                  "{stage}: {detail}", stage=stage, detail=detail), hint)

    # 1. T = 1: the only key gets weight 1 whatever the scores, so only v_proj, the head bookkeeping and o_proj act.
    full = _probe_weights(C, H, Hkv, D, rnd(H * D, C), rnd(Hkv * D, C), rnd(Hkv * D, C), rnd(C, H * D))
    x1 = torch.randn(1, 1, C, generator=g)
    y, e = run(full, x1)
    if not same(y, e):
        if isinstance(y, torch.Tensor) and bool(torch.isnan(y).any()):
            return guess(MASK, T("at T = 1 the output is NaN, so the token's score with itself is masked"),
                         T("mask strictly above the diagonal: triu(ones(T, T), diagonal=1)"))
        y2, e2 = run({**full, "o_proj.weight": torch.eye(C)}, x1)
        if same(y2, e2):
            return guess("o_proj", T("with o_proj set to the identity the output is right"),
                         T("finish with self.o_proj(y) on the merged heads (B, T, num_heads * head_dim)"))
        factor = _factor(y, e)
        if factor is not None:
            return guess(SOFTMAX, T("at T = 1 the one attention weight must be exactly 1, but the output is the "
                                    "reference's times {factor:.3g}: something rescales the weights after the softmax",
                                    factor=factor),
                         T("scale the scores before the softmax (softmax(scores / sqrt(head_dim), dim=-1)) and leave "
                           "its weights as they are"))
        return guess(T("the value path (v_proj, the head split, the kv-head repeat)"),
                     T("even at T = 1, where attention only copies v, the output differs"),
                     T("check v_proj, the head split (B, T, C) -> (B, H, T, D), the kv-head repeat and the merge"))

    # 2. q = 0: every score is 0, so each query spreads its weight evenly over the keys it may see.
    length = max(2, min(6, D // 2, max_seq_len))
    x, wv = _readout(C, H, Hkv, D, length)
    y, e = run(_probe_weights(C, H, Hkv, D, k=rnd(Hkv * D, C), v=wv), x)
    if not same(y, e):
        if not (isinstance(y, torch.Tensor) and y.shape == e.shape):
            return None
        A, rest = _decode(y, H, D, length)
        if not bool(torch.isfinite(A).all()):
            return guess(MASK,
                         T("with all scores equal, some query gets NaN weights: every key it may see is masked"),
                         T("mask strictly above the diagonal: triu(ones(T, T), diagonal=1); the diagonal stays "
                           "visible"))
        if (A - A[:1]).abs().max() > 1e-4:
            return guess(T("the head split or merge"), T("with every head given the same input, the heads come out "
                         "different: positions and heads get mixed when the heads are split or merged"),
                         T("split with .view(B, T, H, D).transpose(1, 2); merge with .transpose(1, 2).reshape(B, T, "
                           "C)"))
        if rest.abs().max() > 1e-4:
            return guess("RoPE", T("the values come out rotated: RoPE seems to act on v"),
                         T("apply RoPE to q and k only; v carries content, not position"))
        W = A[0]
        if W.triu(1).abs().max() > 1e-4:
            return guess(MASK, T("queries give weight to later positions"), T("mask the scores above the diagonal "
                         "with -inf before the softmax: triu(ones(T, T), diagonal=1)"))
        if (W.sum(-1) - 1).abs().max() > 1e-4:
            if (W.sum(-2) - 1).abs().max() < 1e-4:
                return guess(SOFTMAX, T("the weights of each key sum to one, not those of each query"),
                             T("softmax(scores, dim=-1): over the keys"))
            return guess(SOFTMAX, T("the weights of a query do not sum to one"),
                         T("mask with -inf before a softmax over the last dimension, and do not rescale afterwards"))
        return guess(MASK, T("with all scores equal, a query does not weigh the keys it may see evenly"),
                     T("mask exactly the keys after the query: triu(ones(T, T), diagonal=1)"))

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
            what = next((T("{expression} (about {factor:.2f})", expression=k, factor=factor)
                         for k, f in named.items() if abs(factor / f - 1) < 0.02),
                        T("about {factor:.3g}", factor=factor))
            return guess(SCORES, T("every score is the reference's times {what}: the scaling differs", what=what),
                         T("scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)"))
        return guess(SCORES, T("query 1's weights over keys 0 and 1 differ on a probe that RoPE barely touches, "
                               "and not by a constant factor on the scores"),
                     T("scores[b, h, t, s] = q[b, h, t] . k[b, h, s] / sqrt(head_dim): q @ k.transpose(-2, -1), "
                       "per head"))

    # 4. random q and k at T positions: now only the positions (RoPE) can make a difference.
    x, wv = _readout(C, H, Hkv, D, length)
    y, e = run(_probe_weights(C, H, Hkv, D, _slot(rnd(H * D, D) * 2, H, D), _slot(rnd(Hkv * D, D) * 2, H, D), wv), x)
    if not same(y, e):
        return guess("RoPE", T("the weights differ only once q and k sit at different positions"),
                     T("RoPE tables: inv_freq = theta ** (-arange(0, D, 2) / D), positions from 0, the rotate-half "
                       "layout; apply the same rotation to q and k"))
    return None


def attention_staged(sub, ref, C, H, Hkv=None, theta=10000.0, max_seq_len=16):
    """An explainer (see ``crashes.explaining``) that runs the staged probes on a wrong attention output."""
    def explain(exc):
        if exc.failure.kind is not Kind.WRONG_VALUE:  # wrong values only: a wrong shape or a crash says more itself
            return None
        return staged_attention(sub, ref, C, H, Hkv, theta, max_seq_len)
    return explain
