"""The decoder: a stack of blocks, and the language model around it.

    TransformerDecoder:  x -> block_1 -> ... -> block_L -> norm          (B, T, C)
    TransformerLM:       idx -> embed_tokens -> decoder -> lm_head       (B, T) -> (B, T, V)

Each block has its *own* parameters: build ``num_layers`` separate blocks
(``nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)])``), not
one block repeated. In a pre-norm stack the residual stream is never
normalised inside the blocks, so the decoder ends with one final ``norm``
before the output head.

Weight tying (Press & Wolf, 2017): ``lm_head`` maps hidden states back to the
vocabulary with the *same* matrix as ``embed_tokens`` (``lm_head.weight =
embed_tokens.weight``, shape (V, C); ``nn.Linear(C, V)`` stores (V, C) too, so
no transpose is needed). It saves V*C parameters and ties the meaning of
tokens on the way in and on the way out.

Traps: reusing one block object for every layer; forgetting the final norm;
creating an untied head (a second, independent matrix); an argument that does
not reach the blocks (num_kv_heads and intermediate_size too: pass every one on,
in the signature's order or by keyword); removing the stub's
``self.apply(self._init_weights)``.
"""
import torch
import torch.nn as nn

from .block import TransformerBlock
from .rmsnorm import RMSNorm


class TransformerDecoder(nn.Module):
    def __init__(self, num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        # Build self.blocks (an nn.ModuleList of num_layers TransformerBlock) and self.norm (RMSNorm).
        ### BEGIN SOLUTION
        self.blocks = nn.ModuleList([
            TransformerBlock(hidden_size, num_heads, num_kv_heads, intermediate_size,
                             max_seq_len, rms_norm_eps, rope_theta)
            for _ in range(num_layers)
        ])
        self.norm = RMSNorm(hidden_size, eps=rms_norm_eps)
        ### END SOLUTION

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C)
        ### BEGIN SOLUTION
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
        ### END SOLUTION


class TransformerLM(nn.Module):
    def __init__(self, vocab_size, num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=None,
                 intermediate_size=None, max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        super().__init__()
        # Build self.embed_tokens, self.decoder and self.lm_head, with lm_head's weight tied to the embedding.
        ### BEGIN SOLUTION
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)
        self.decoder = TransformerDecoder(num_layers, hidden_size, num_heads, num_kv_heads, intermediate_size,
                                          max_seq_len, rms_norm_eps, rope_theta)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight
        ### END SOLUTION
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        # GPT-2 style: small normal weights keep the initial logits near zero (loss near ln(vocab_size)).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        # idx: (B, T) long -> logits (B, T, vocab_size)
        ### BEGIN SOLUTION
        x = self.embed_tokens(idx)  # (B, T, C)
        x = self.decoder(x)  # (B, T, C)
        return self.lm_head(x)  # (B, T, V)
        ### END SOLUTION
