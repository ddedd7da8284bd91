# Generated from solutions/attention.py by `make stubs`: edit the solution, not this file's skeleton.
"""Causal self-attention with rotary position embeddings (RoPE).

Scaled dot-product attention (Vaswani et al., 2017) with a causal mask:

    scores = Q K^T / sqrt(head_dim)               (B, H, T, T)
    scores[t, s] = -inf  for s > t                 (no peeking at the future)
    out    = softmax(scores, dim=-1) V             (B, H, T, head_dim)

RoPE (Su et al., 2021) encodes position by *rotating* q and k: each pair of
channels (i, i + head_dim/2) is rotated by the angle ``pos * theta^(-2i/head_dim)``.
Since rotations compose, ``<rope(q, m), rope(k, n)>`` depends only on the
offset ``m - n``: attention sees relative positions. Position 0 is rotated by
0, so RoPE leaves it unchanged. This is the "rotate half" layout of LLaMA and
MiniMind (the first half of the channels pairs with the second half), not the
interleaved layout of the paper (channel 2i pairs with 2i+1).

Grouped-query attention (GQA): with ``num_kv_heads < num_heads`` several query
heads share one key/value head; query head i reads kv head
``i // (num_heads // num_kv_heads)``. ``num_kv_heads = num_heads`` is ordinary
multi-head attention.

Traps: mask *strictly* above the diagonal (a token may attend to itself);
scale the scores by sqrt(head_dim), not sqrt(hidden_size), and *before* the
softmax (its weights must sum to one); softmax over the last axis (the keys);
apply RoPE to q and k only, never to v, with ``cos`` on x and ``sin`` on its
rotated half; repeat kv heads with ``repeat_interleave`` (head 0, 0, 1, 1, ...),
not ``repeat`` (0, 1, 0, 1, ...); merge heads back with ``transpose(1, 2)``
*before* ``reshape``. No dropout: the same input must give the same output.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    """Return ``(cos, sin)``, each ``(max_seq_len, head_dim)``.

    ``inv_freq[i] = theta ** (-2i / head_dim)`` for ``i < head_dim / 2``;
    ``angles[pos, i] = pos * inv_freq[i]``; both halves of the last dimension
    hold the same angles: ``cos = cat([cos(angles), cos(angles)], -1)``.
    Positions start at 0.
    """
    raise NotImplementedError("precompute_rope")


def rotate_half(x):
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    """Rotate ``x`` of shape ``(..., T, head_dim)`` by the first T rows of the tables.

    ``cos`` and ``sin`` are ``(T_max, head_dim)`` with ``T_max >= T`` (the tables of
    ``precompute_rope``); row t rotates position t, so only rows ``0 .. T-1`` are used,
    never the last T. The result is ``x * cos + rotate_half(x) * sin`` on those rows,
    with x's shape, as a new tensor: ``x`` itself is left unchanged (the caller may
    still need it).
    """
    raise NotImplementedError("apply_rope")


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention with RoPE.

    ``__init__`` sets ``num_heads``, ``num_kv_heads`` (``num_heads`` when None),
    ``head_dim = hidden_size // num_heads`` and ``max_seq_len``; builds
    ``q_proj`` (hidden -> num_heads * head_dim), ``k_proj`` and ``v_proj``
    (hidden -> num_kv_heads * head_dim) and ``o_proj`` (num_heads * head_dim ->
    hidden), all ``nn.Linear(..., bias=False)``; and registers the RoPE tables
    from ``precompute_rope`` as buffers ``cos`` and ``sin`` with
    ``persistent=False`` (derived from the config, so not in the state_dict).
    It raises ``ValueError`` when ``hidden_size % num_heads != 0`` or
    ``num_heads % num_kv_heads != 0``, and ``forward`` raises ``ValueError``
    when ``T > max_seq_len``.
    """

    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        raise NotImplementedError("CausalSelfAttention.__init__")

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C)
        raise NotImplementedError("CausalSelfAttention.forward")
