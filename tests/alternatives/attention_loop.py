"""Correct alternative: one head at a time, RoPE with complex numbers, the mask built on the fly with tril and
filled with the most negative finite float instead of -inf, each query head indexing its kv head (no repeat)."""
import math

import torch
import torch.nn as nn


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    cos, sin = [], []
    for pos in range(max_seq_len):
        angle = [pos / theta ** (2 * i / head_dim) for i in range(head_dim // 2)]
        cos.append([math.cos(a) for a in angle] * 2)
        sin.append([math.sin(a) for a in angle] * 2)
    return torch.tensor(cos), torch.tensor(sin)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    # (x1 + i x2) * (cos + i sin): the rotate-half pairs (i, i + D/2) as complex numbers
    half = x.shape[-1] // 2
    cos, sin = cos[: x.shape[-2]], sin[: x.shape[-2]]
    z = torch.complex(x[..., :half].float(), x[..., half:].float())
    z = z * torch.complex(cos[..., :half].float(), sin[..., :half].float())
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if hidden_size % num_heads != 0 or num_heads % self.num_kv_heads != 0:
            raise ValueError(f"bad head configuration: {hidden_size}, {num_heads}, {self.num_kv_heads}")
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        D = self.head_dim
        self.q_proj = nn.Linear(hidden_size, num_heads * D, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.num_kv_heads * D, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.num_kv_heads * D, bias=False)
        self.o_proj = nn.Linear(num_heads * D, hidden_size, bias=False)
        cos, sin = precompute_rope(D, max_seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        if T > self.max_seq_len:
            raise ValueError("input longer than max_seq_len")
        D, group = self.head_dim, self.num_heads // self.num_kv_heads
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        cos, sin = self.cos[:T], self.sin[:T]
        visible = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        heads = []
        for h in range(self.num_heads):
            j = h // group  # the kv head this query head reads
            qh = apply_rope(q[..., h * D:(h + 1) * D], cos, sin)  # (B, T, D)
            kh = apply_rope(k[..., j * D:(j + 1) * D], cos, sin)
            vh = v[..., j * D:(j + 1) * D]
            scores = torch.matmul(qh, kh.transpose(1, 2)) * D ** -0.5  # (B, T, T)
            scores = scores.float().masked_fill(~visible, torch.finfo(torch.float32).min)
            heads.append(torch.softmax(scores, dim=-1).to(vh.dtype) @ vh)
        return self.o_proj(torch.cat(heads, dim=-1))
