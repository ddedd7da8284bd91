"""Stand-in attention: a causal running mean of ``tanh(q_proj(x))``, then ``o_proj``.

Same constructor and parameter names as the real CausalSelfAttention; it mixes
positions causally, but it is not attention. The output is scaled by
``1 + 1 / ln(rope_theta)`` so that a block that does not pass ``rope_theta``
on is seen, and T > max_seq_len raises ValueError as the real one does.
"""
import math

import torch
import torch.nn as nn


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        head_dim = hidden_size // num_heads
        self.max_seq_len = max_seq_len
        self.theta_factor = 1.0 + 1.0 / math.log(rope_theta)
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(self, x):
        T = x.shape[1]
        if T > self.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len {self.max_seq_len}")
        h = torch.tanh(self.q_proj(x))  # (B, T, H*D)
        counts = torch.arange(1, T + 1, device=x.device, dtype=h.dtype).view(1, T, 1)
        return self.o_proj(h.cumsum(dim=1) / counts) * self.theta_factor


# The exercise's other names, so that `from .attention import CausalSelfAttention, apply_rope` imports under
# the stand-in. They are not given here (this file ships with the release): a block graded over the stand-in
# attention has no use for them, and calling one says so.
def _not_given(name):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"{name} is not part of the grader's stand-in attention: the block's checks run "
                                  "it over a stand-in CausalSelfAttention, which needs no RoPE from the block")
    fn.__name__ = name
    return fn


precompute_rope, rotate_half, apply_rope = (_not_given(n) for n in ("precompute_rope", "rotate_half", "apply_rope"))
