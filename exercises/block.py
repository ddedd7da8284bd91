# Generated from solutions/block.py by `make stubs`: edit the solution, not this file's skeleton.
"""The pre-norm transformer block: the unit a decoder stacks.

    h   = x + self_attn(input_layernorm(x))            # residual 1: mix across positions
    out = h + mlp(post_attention_layernorm(h))         # residual 2: process each position

Pre-norm (Xiong et al., 2020; LLaMA, MiniMind): each sublayer sees a
normalised copy of the stream, but the residual stream itself is never
normalised, so the identity path from the output back to the input stays
clean. Post-norm (the original Transformer) normalises *after* the add,
``norm(x + sublayer(x))``, which puts a norm on the gradient's only highway
and needs learning-rate warm-up to train deep stacks.

Attention comes first because it gathers information from other positions;
the feed-forward network then processes what each position has gathered.

The feed-forward network is SwiGLU (Shazeer, 2020):

    mlp(x) = down_proj( silu(gate_proj(x)) * up_proj(x) )

with ``intermediate_size = 64 * ceil(8 * hidden_size / 3 / 64)`` by default
(8/3 keeps the parameter count of a 4x ReLU MLP, rounded up to a multiple of 64).

Shapes: ``(B, T, C) -> (B, T, C)`` for both modules.

Traps: two *separate* norms (one per sublayer, each with its own weight); add
the residual to the un-normalised stream (``x``, not ``input_layernorm(x)``);
silu on the gate only; the default intermediate_size at every hidden size
(128 for 32 and 48, 320 for 100).

Build the components with the API's names, ``RMSNorm``, ``CausalSelfAttention``
and ``FeedForward`` (imported as below, or defined in this file under those
names): the grader checks the block's wiring by swapping its own stand-ins in
for those names, and cannot for a class of another name.
"""
import math

import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .rmsnorm import RMSNorm


class FeedForward(nn.Module):
    def __init__(self, hidden_size, intermediate_size=None):
        super().__init__()
        # intermediate_size defaults to 64 * ceil(8 * hidden_size / 3 / 64); build gate_proj, up_proj
        # (hidden -> intermediate) and down_proj (intermediate -> hidden), all without bias.
        raise NotImplementedError("FeedForward.__init__")

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C), through (B, T, intermediate_size)
        raise NotImplementedError("FeedForward.forward")


class TransformerBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        # Build input_layernorm, self_attn, post_attention_layernorm and mlp.
        raise NotImplementedError("TransformerBlock.__init__")

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C)
        raise NotImplementedError("TransformerBlock.forward")
