"""Correct alternative: RoPE with complex numbers in the rotate-half layout (torch.polar for the tables,
view_as_complex on the channel pairs (i, i + D/2)), kv heads shared by expand, an additive -inf mask buffer."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(max_seq_len, dtype=torch.float32)[:, None] * inv_freq  # (T, D/2)
    rot = torch.polar(torch.ones_like(angles), angles)  # e^{i angle}
    return torch.cat([rot.real, rot.real], dim=-1), torch.cat([rot.imag, rot.imag], dim=-1)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    # the pair (x[i], x[i + D/2]) is the complex number x[i] + i x[i + D/2]; rotating it multiplies by e^{i angle}
    T, half = x.shape[-2], x.shape[-1] // 2
    rot = torch.complex(cos[:T, :half].float(), sin[:T, :half].float())
    pairs = x.float().unflatten(-1, (2, half)).transpose(-1, -2).contiguous()  # (..., T, D/2, 2)
    z = torch.view_as_complex(pairs) * rot
    return torch.view_as_real(z).transpose(-1, -2).flatten(-2).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if hidden_size % num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        kv = self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, kv, bias=False)
        self.v_proj = nn.Linear(hidden_size, kv, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("bias", torch.full((max_seq_len, max_seq_len), float("-inf")).triu(1), persistent=False)

    def _heads(self, t, n):
        B, T, _ = t.shape
        return t.view(B, T, n, self.head_dim).permute(0, 2, 1, 3)  # (B, n, T, D)

    def forward(self, x):
        B, T, C = x.shape
        if T > self.max_seq_len:
            raise ValueError(f"{T} positions, but max_seq_len is {self.max_seq_len}")
        q = apply_rope(self._heads(self.q_proj(x), self.num_heads), self.cos, self.sin)
        k = apply_rope(self._heads(self.k_proj(x), self.num_kv_heads), self.cos, self.sin)
        v = self._heads(self.v_proj(x), self.num_kv_heads)
        group = self.num_heads // self.num_kv_heads
        # (B, Hkv, T, D) -> (B, Hkv, group, T, D) -> (B, H, T, D): query head h reads kv head h // group
        k = k.unsqueeze(2).expand(-1, -1, group, -1, -1).flatten(1, 2)
        v = v.unsqueeze(2).expand(-1, -1, group, -1, -1).flatten(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + self.bias[:T, :T]
        weights = F.softmax(scores.float(), dim=-1).to(v.dtype)
        y = torch.matmul(weights, v).permute(0, 2, 1, 3).reshape(B, T, C)
        return self.o_proj(y)
