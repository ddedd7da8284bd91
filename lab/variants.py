"""Re-wired transformer blocks for the experiments, built from the learner's own components.

The kit's ``TransformerBlock`` is one fixed wiring (pre-norm, attention then FFN, two skip
paths). The experiments need the others too, so ``VariantBlock`` takes the wiring as
arguments and builds it from ``RMSNorm``, ``CausalSelfAttention`` and ``FeedForward`` of
the implementation loaded by ``kit.loader`` (never from ``solutions/`` directly):

    norm="pre"   x = x + f(norm(x))       the kit's block (LLaMA, MiniMind)
    norm="post"  x = norm(x + f(x))       the original Transformer (Vaswani et al., 2017)
    norm="none"  x = x + f(x)
    residual=False drops the "x +" (pre: f(norm(x)); post: norm(f(x))); residual="attn" or
    "ffn" keeps the skip path of that sublayer only.

``attention=False`` / ``ffn=False`` remove a sublayer (and its norm); ``order="ffn_attn"``
runs the FFN first. Each sublayer keeps its norm's name whatever the order
(``input_layernorm`` goes with ``self_attn``, ``post_attention_layernorm`` with ``mlp``),
so the default wiring has exactly ``TransformerBlock``'s state_dict keys.

``VariantLM`` is ``TransformerLM`` around such blocks: embedding, blocks, a final norm
(pre-norm only: post-norm blocks already end with a norm), tied head. Two initialisations:

    init="small"   the kit's (GPT-2): every weight N(0, 0.02). Fed a unit-RMS input, a sublayer
                   answers tens (attention) to hundreds (FFN) of times smaller, so a post-norm
                   block starts near the identity; the stream starts at RMS 0.02.
    init="xavier"  the original Transformer's: Xavier-uniform matrices, embeddings N(0, 1/C)
                   times sqrt(C) on the way in. The stream starts at RMS 1 and a sublayer's
                   output is of the same order as its input (the setting Xiong et al. analyse).
"""
import math

import torch
import torch.nn as nn

NORMS = ("pre", "post", "none")
RESIDUALS = (True, False, "attn", "ffn")
INITS = ("small", "xavier")
ORDERS = ("attn_ffn", "ffn_attn")


class VariantBlock(nn.Module):
    def __init__(self, impl, hidden_size, num_heads, *, norm="pre", residual=True, attention=True, ffn=True,
                 order="attn_ffn", intermediate_size=None, max_seq_len=256):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if not (attention or ffn):
            raise ValueError("a block needs at least one sublayer")
        self.norm, self.residual, self.order = norm, residual, order
        RMSNorm = impl.rmsnorm.RMSNorm
        if attention:
            self.input_layernorm = RMSNorm(hidden_size) if norm != "none" else None
            self.self_attn = impl.attention.CausalSelfAttention(hidden_size, num_heads, max_seq_len=max_seq_len)
        if ffn:
            self.post_attention_layernorm = RMSNorm(hidden_size) if norm != "none" else None
            self.mlp = impl.block.FeedForward(hidden_size, intermediate_size)

    def sublayers(self):
        """``[(norm or None, sublayer, has a skip path), ...]`` in the order they run."""
        subs = []
        if hasattr(self, "self_attn"):
            subs.append((self.input_layernorm, self.self_attn, self.residual in (True, "attn")))
        if hasattr(self, "mlp"):
            subs.append((self.post_attention_layernorm, self.mlp, self.residual in (True, "ffn")))
        return subs[::-1] if self.order == "ffn_attn" else subs

    def forward(self, x):
        # x: (B, T, C) -> (B, T, C)
        for norm, f, skip in self.sublayers():
            if self.norm == "pre":
                y = f(norm(x))
                x = x + y if skip else y
            elif self.norm == "post":
                y = f(x)
                x = norm(x + y if skip else y)
            else:
                y = f(x)
                x = x + y if skip else y
        return x


class VariantLM(nn.Module):
    """``(B, T) long -> logits (B, T, vocab_size)`` through ``num_layers`` variant blocks."""

    def __init__(self, impl, vocab_size, num_layers, hidden_size, num_heads, max_seq_len=256, init="small",
                 **wiring):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)
        self.blocks = nn.ModuleList([VariantBlock(impl, hidden_size, num_heads, max_seq_len=max_seq_len, **wiring)
                                     for _ in range(num_layers)])
        # Pre-norm leaves the stream un-normalised, so it needs one norm before the head; a post-norm
        # block's output is already normalised; "none" means no norm anywhere.
        self.norm = impl.rmsnorm.RMSNorm(hidden_size) if wiring.get("norm", "pre") == "pre" else nn.Identity()
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight  # tied, as TransformerLM
        self.embed_scale = 1.0
        if init == "small":
            self.apply(self._init_small)
        else:
            self.apply(self._init_xavier)
            # Vaswani et al. 3.4: the tied matrix has std 1/sqrt(C) so the logits start O(1), and the
            # embedding is multiplied by sqrt(C) on the way in, so the stream starts at RMS 1.
            torch.nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=hidden_size ** -0.5)
            self.embed_scale = math.sqrt(hidden_size)

    @staticmethod
    def _init_small(module):
        # TransformerLM's init (GPT-2 style, std 0.02), so variants differ from the kit's model only in wiring.
        # It makes every sublayer's output start small next to its input (see docs/guide-block.md).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @staticmethod
    def _init_xavier(module):
        # Xavier-uniform keeps a square matrix's output about as large as its input: each sublayer then
        # adds to the stream about as much as the stream already holds.
        if isinstance(module, nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)

    def forward(self, idx):
        x = self.embed_tokens(idx) * self.embed_scale  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm(x))  # (B, T, V)
