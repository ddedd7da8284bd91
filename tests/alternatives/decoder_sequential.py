"""Correct alternative: the blocks held in an nn.Sequential (called as one module), every argument by keyword."""
import torch
import torch.nn as nn

from .block import TransformerBlock
from .rmsnorm import RMSNorm


class TransformerDecoder(nn.Module):
    def __init__(self, num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        self.blocks = nn.Sequential(*[
            TransformerBlock(hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads,
                             intermediate_size=intermediate_size, max_seq_len=max_seq_len,
                             rms_norm_eps=rms_norm_eps, rope_theta=rope_theta)
            for _ in range(num_layers)])
        self.norm = RMSNorm(hidden_size, eps=rms_norm_eps)

    def forward(self, x):
        return self.norm(self.blocks(x))


class TransformerLM(nn.Module):
    def __init__(self, vocab_size, num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=None,
                 intermediate_size=None, max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)
        self.decoder = TransformerDecoder(num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads,
                                          num_kv_heads=num_kv_heads, intermediate_size=intermediate_size,
                                          max_seq_len=max_seq_len, rms_norm_eps=rms_norm_eps, rope_theta=rope_theta)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        x = self.embed_tokens(idx)
        return self.lm_head(self.decoder(x))
