"""The final check's perplexity, computed in the grader's own process from the checkpoint's weights.

The model is the reference TransformerLM loaded strictly with the weights; its attention runs
through ``F.scaled_dot_product_attention`` (the same function as the reference's explicit
softmax, to float32 rounding: logits within 1e-6), about twice as fast on a CPU.

Precision, decided here once: the verdict (under 2.5 or not) is always a float32 number. Where the
CPU computes bfloat16 natively, the windows are first measured in bf16 autocast, about twice as
fast again; bf16 moves this perplexity by about 0.01 % (BENCHMARKS.md, 2.4290 against 2.4287 on the
same windows), so a bf16 result more than ``BF16_MARGIN`` away from the target gives the same
verdict, and only a model that close to the target is measured again in float32.

This file holds a correct attention forward, so it never ships to students (classroom/release.py);
at their desk the student's own model computes the logits.
"""
import math

import torch
import torch.nn.functional as F

from kit.machine import cpu_has_bf16, torch_threads
from kit.perplexity import batch, exp_mean, nll_sum, windows

BATCH = 8  # windows per forward: the fastest on 2 CPU cores (BENCHMARKS.md, section final)
BF16_MARGIN = 0.005  # relative distance to the target beyond which a bf16 measurement decides
MEASURE_BF16 = cpu_has_bf16()  # native bf16 products: ~2x faster; emulated elsewhere (~20x slower): float32


def _fast_attention(attention_module):
    apply_rope = attention_module.apply_rope

    def forward(self, x):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, self.cos[:T], self.sin[:T]), apply_rope(k, self.cos[:T], self.sin[:T])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
    return forward


def reference_model(ref, vocab_size, config, weights):
    """The reference TransformerLM with ``weights`` loaded strictly, attention through the fused kernel; None
    where the reference lends no model (a recorder of it)."""
    model = ref.model(vocab_size, config)
    if model is None:
        return None
    model.load_state_dict(weights, strict=True, assign=True)  # the grader's own model: no second copy
    model.lm_head.weight = model.embed_tokens.weight  # assign breaks the tie (the check saw the two equal)
    attention = ref.module("attention")
    forward = _fast_attention(attention)
    for m in model.modules():
        if isinstance(m, attention.CausalSelfAttention):
            m.forward = forward.__get__(m)
    return model.eval()


def perplexity(model, ids, starts, seq_len, keep=(), bf16=False, threads=1):
    """``(perplexity, predicted characters, {window: (inputs, float32 logits)} for the windows in keep)``."""
    total, count, kept = 0.0, 0, {}
    with torch_threads(threads), torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for j in range(0, len(starts), BATCH):
            x, y = batch(ids, starts[j:j + BATCH], seq_len)
            logits = model(x)
            total, count = total + nll_sum(logits, y), count + y.numel()
            for r in range(len(x)):
                if j + r in keep:
                    kept[j + r] = (x[r], logits[r].float().clone())
    return exp_mean(total, count), count, kept


def measure(model, ids, n_chars, seed, seq_len, target=None, keep=(), threads=1):
    """The perplexity over ``n_chars`` predicted characters, with the verdict against ``target`` in float32."""
    starts = windows(len(ids), seq_len, n_chars, seed)
    if MEASURE_BF16:
        ppl, count, kept = perplexity(model, ids, starts, seq_len, keep, bf16=True, threads=threads)
        if target is None or abs(math.log(ppl / target)) > BF16_MARGIN:
            if keep:  # the windows compared with the submission's own model: in float32, as it computes them
                _, _, kept = perplexity(model, ids, starts[sorted(keep)], seq_len, range(len(keep)), threads=threads)
                kept = dict(zip(sorted(keep), kept.values()))
            return ppl, count, kept
    return perplexity(model, ids, starts, seq_len, keep, threads=threads)
