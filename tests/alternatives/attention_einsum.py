"""Correct alternative: einsum everywhere, a mask precomputed as a buffer, a hand-written softmax,
and MiniMind's repeat_kv (expand + reshape) for grouped-query heads."""
import math

import torch
import torch.nn as nn


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    inv_freq = torch.exp(-math.log(theta) * torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.einsum("t,f->tf", torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    cos, sin = cos[: x.shape[-2]], sin[: x.shape[-2]]  # the tables may be longer than x
    return torch.addcmul(x * cos, rotate_half(x), sin)


def repeat_kv(x, n_rep):
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D), each kv head n_rep times in a row."""
    B, Hkv, T, D = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, T, D).reshape(B, Hkv * n_rep, T, D)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        if hidden_size % num_heads:
            raise ValueError(f"{hidden_size} is not a multiple of {num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"{num_heads} is not a multiple of {num_kv_heads}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        future = torch.triu(torch.full((max_seq_len, max_seq_len), float("-inf")), diagonal=1)
        self.register_buffer("mask", future, persistent=False)  # 0 on and below the diagonal, -inf above

    def forward(self, x):
        B, T, C = x.shape
        if T > self.max_seq_len:
            raise ValueError(f"sequence of {T} tokens, max_seq_len is {self.max_seq_len}")
        q = torch.einsum("btc,oc->bto", x, self.q_proj.weight).reshape(B, T, self.num_heads, self.head_dim)
        k = torch.einsum("btc,oc->bto", x, self.k_proj.weight).reshape(B, T, self.num_kv_heads, self.head_dim)
        v = torch.einsum("btc,oc->bto", x, self.v_proj.weight).reshape(B, T, self.num_kv_heads, self.head_dim)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        q = apply_rope(q, self.cos[:T], self.sin[:T])
        k = apply_rope(k, self.cos[:T], self.sin[:T])
        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(self.head_dim) + self.mask[:T, :T]
        scores = scores.float()
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(q.dtype)
        y = torch.einsum("bhts,bhsd->bthd", weights, v).reshape(B, T, C)
        return self.o_proj(y)
