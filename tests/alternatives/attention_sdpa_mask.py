"""Correct alternative: F.scaled_dot_product_attention with grouped-query heads repeated by expand (no
enable_gqa), an explicit boolean mask and scale, and the (T, D) tables sliced with narrow."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    angles = torch.arange(max_seq_len, dtype=torch.float32).unsqueeze(1) * theta ** -exponent
    angles = torch.cat((angles, angles), dim=1)
    return torch.cos(angles), torch.sin(angles)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    T = x.shape[-2]
    return x * cos.narrow(0, 0, T) + rotate_half(x) * sin.narrow(0, 0, T)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        if num_kv_heads is None:
            num_kv_heads = num_heads
        if hidden_size % num_heads != 0 or num_heads % num_kv_heads != 0:
            raise ValueError(f"cannot split {hidden_size} features into {num_heads} heads and {num_kv_heads} kv heads")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        if T > self.max_seq_len:
            raise ValueError(f"T = {T} > max_seq_len = {self.max_seq_len}")
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.q_proj(x).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, Hkv, D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, Hkv, D).transpose(1, 2)
        q, k = apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin)
        n = H // Hkv
        k = k[:, :, None].expand(B, Hkv, n, T, D).reshape(B, H, T, D)
        v = v[:, :, None].expand(B, Hkv, n, T, D).reshape(B, H, T, D)
        visible = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=1 / math.sqrt(D))
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))
