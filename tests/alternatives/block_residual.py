"""Correct alternative: the block built on the student's own Residual (residual.py), one around each
pre-norm branch; the branches reuse the block's registered components, so the parameter names stay the API's."""
import math

import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .residual import Residual
from .rmsnorm import RMSNorm


class FeedForward(nn.Module):
    def __init__(self, hidden_size, intermediate_size=None):
        super().__init__()
        if intermediate_size is None:
            intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)
        self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)
        self.mlp = FeedForward(hidden_size, intermediate_size)
        # a plain tuple, so not registered again: state_dict keeps input_layernorm.weight, self_attn.q_proj.weight, ...
        self.paths = (Residual(nn.Sequential(self.input_layernorm, self.self_attn)),
                      Residual(nn.Sequential(self.post_attention_layernorm, self.mlp)))

    def forward(self, x):
        for path in self.paths:
            x = path(x)
        return x
