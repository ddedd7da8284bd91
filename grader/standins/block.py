"""Stand-in feed-forward network and block (a *parallel* block, not the exercise's pre-norm one)."""
import math

import torch
import torch.nn as nn

from .attention import CausalSelfAttention
from .rmsnorm import RMSNorm


class FeedForward(nn.Module):
    """``down_proj(tanh(up_proj(x)) * sigmoid(gate_proj(x)))``: SwiGLU's parameters, another function."""

    def __init__(self, hidden_size, intermediate_size=None):
        super().__init__()
        if intermediate_size is None:  # the API's default, so parameter shapes match the real one
            intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(torch.tanh(self.up_proj(x)) * torch.sigmoid(self.gate_proj(x)))


class TransformerBlock(nn.Module):
    """``x + self_attn(input_layernorm(x)) + mlp(post_attention_layernorm(x))``."""

    def __init__(self, hidden_size, num_heads, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)
        self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)
        self.mlp = FeedForward(hidden_size, intermediate_size)

    def forward(self, x):
        return x + self.self_attn(self.input_layernorm(x)) + self.mlp(self.post_attention_layernorm(x))
