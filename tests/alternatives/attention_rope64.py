"""Correct alternative (Hugging Face style): precompute_rope returns float64 tables (its docstring leaves the dtype
open), kept as float64 buffers; apply_rope casts its result back to x's dtype."""
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
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    positions = torch.arange(max_seq_len, dtype=torch.float64)  # (T,)
    angles = torch.outer(positions, inv_freq)  # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_dim)
    return angles.cos(), angles.sin()


def rotate_half(x):
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    """Rotate ``x`` of shape ``(..., T, head_dim)`` by the first T rows of the tables.

    ``cos`` and ``sin`` are ``(T_max, head_dim)`` with ``T_max >= T`` (the tables of
    ``precompute_rope``); row t rotates position t, so only rows ``0 .. T-1`` are used,
    never the last T. The result is ``x * cos + rotate_half(x) * sin`` on those rows,
    with x's shape.
    """
    T = x.shape[-2]
    return (x * cos[:T] + rotate_half(x) * sin[:T]).to(x.dtype)


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
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        if num_heads % num_kv_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)
        # Not persistent: derived from the config, so they stay out of state_dict.
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        if T > self.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len {self.max_seq_len}")
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q = apply_rope(q, self.cos[:T], self.sin[:T])
        k = apply_rope(k, self.cos[:T], self.sin[:T])
        n_rep = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(n_rep, dim=1)  # (B, H, T, D): query head i reads kv head i // n_rep
        v = v.repeat_interleave(n_rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # True above the diagonal
        scores = scores.masked_fill(mask, float("-inf"))
        att = F.softmax(scores.float(), dim=-1).type_as(q)
        y = att @ v  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)
        return self.o_proj(y)
