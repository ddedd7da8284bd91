"""Correct alternative: SiLU written out, the stream rebound as x, components built with keywords."""

import torch
import torch.nn as nn

from .attention import CausalSelfAttention
from .rmsnorm import RMSNorm


class FeedForward(nn.Module):
    def __init__(self, hidden_size, intermediate_size=None):
        super().__init__()
        inter = intermediate_size or 64 * ((8 * hidden_size // 3 + 63) // 64)
        self.gate_proj = nn.Linear(hidden_size, inter, bias=False)
        self.up_proj = nn.Linear(hidden_size, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden_size, bias=False)

    def forward(self, x):
        gate = self.gate_proj(x)
        return self.down_proj(gate * torch.sigmoid(gate) * self.up_proj(x))


class TransformerBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        self.input_layernorm = RMSNorm(dim=hidden_size, eps=rms_norm_eps)
        self.self_attn = CausalSelfAttention(hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                             max_seq_len=max_seq_len, rope_theta=rope_theta)
        self.post_attention_layernorm = RMSNorm(dim=hidden_size, eps=rms_norm_eps)
        self.mlp = FeedForward(hidden_size=hidden_size, intermediate_size=intermediate_size)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x
