"""Correct alternative: PyTorch's fused scaled_dot_product_attention (causal, grouped-query built in)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.arange(max_seq_len).float()[:, None] * inv_freq[None, :]  # (T, D/2)
    angles = angles.repeat(1, 2)  # (T, D): both halves
    return torch.cos(angles), torch.sin(angles)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    T = x.shape[-2]
    return x * cos[:T] + rotate_half(x) * sin[:T]


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        if hidden_size % num_heads or num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, _ = x.shape
        if T > self.max_seq_len:
            raise ValueError(f"T = {T} is longer than max_seq_len = {self.max_seq_len}")
        q = self.q_proj(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_proj(x).unflatten(-1, (self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).unflatten(-1, (self.num_kv_heads, self.head_dim)).transpose(1, 2)
        cos, sin = self.cos[:T], self.sin[:T]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).flatten(2))
