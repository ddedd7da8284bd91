"""Correct alternative: the whole attention computed in float64, cast back to the input's dtype at the end."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    T = x.size(-2)
    return x * cos.narrow(0, 0, T) + rotate_half(x) * sin.narrow(0, 0, T)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if hidden_size % num_heads or num_heads % num_kv_heads:
            raise ValueError("num_heads must divide hidden_size and num_kv_heads must divide num_heads")
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
        xd = x.double()
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = F.linear(xd, self.q_proj.weight.double()).view(B, T, H, D).transpose(1, 2)
        k = F.linear(xd, self.k_proj.weight.double()).view(B, T, Hkv, D).transpose(1, 2)
        v = F.linear(xd, self.v_proj.weight.double()).view(B, T, Hkv, D).transpose(1, 2)
        cos, sin = self.cos[:T].double(), self.sin[:T].double()
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.linear(y, self.o_proj.weight.double()).to(x.dtype)
