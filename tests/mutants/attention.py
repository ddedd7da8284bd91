"""Mistakes in attention.py: RoPE, the mask, the scores, grouped-query heads, the merge."""
from . import Mutant

F = "attention.py"
MASK = "        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # True above the diagonal"
FILL = '        scores = scores.masked_fill(mask, float("-inf"))\n'
SCORES = "        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T)"
SOFTMAX = "        att = F.softmax(scores.float(), dim=-1).type_as(q)"
MERGE = "        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)"
REPEAT = ("        k = k.repeat_interleave(n_rep, dim=1)  # (B, H, T, D): query head i reads kv head i // n_rep\n"
          "        v = v.repeat_interleave(n_rep, dim=1)\n")
Q = "        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)"
K = "        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)"
V = "        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)"
ROPE_Q = "        q = apply_rope(q, self.cos[:T], self.sin[:T])\n"
ROPE_K = "        k = apply_rope(k, self.cos[:T], self.sin[:T])\n"
APPLY = "    return x * cos[:T] + rotate_half(x) * sin[:T]"
INV_FREQ = "    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (head_dim/2,)"
KV_PROJ = ("        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)\n"
           "        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)\n")
PROJ = ("        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)\n"
        "        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)\n"
        "        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)\n"
        "        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)\n"
        "        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)\n")
VALUES = ("matches_reference", "grouped_query", "gradients", "bfloat16")

MUTANTS = [
    # the mask
    Mutant("no causal mask", F, FILL, "",
           loses=("causal", *VALUES), named="no causal mask", also=("block", "decoder")),
    Mutant("the mask hides the diagonal too (triu() without diagonal=1)", F, MASK, MASK.replace("triu(1)", "triu()"),
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'matches_reference', 'parameters', 'validation'), named="hides the diagonal",
           also=("block", "decoder")),  # NaN rows reach the INFO checks with your own components: no grader error
    Mutant("tril() instead of triu(1): the mask hides the past and the diagonal", F, MASK, MASK.replace("triu(1)", "tril()"),
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'matches_reference', 'parameters', 'validation'), named="each query sees only later positions"),
    Mutant("the mask is applied after the softmax (weights zeroed, not renormalised)", F, FILL, "",
           more=((SOFTMAX, SOFTMAX + ".masked_fill(mask, 0.0)"),),
           loses=("causal", *VALUES), named="applied after the softmax"),
    # the scores
    Mutant("scores scaled by sqrt(hidden_size)", F, SCORES, SCORES.replace("self.head_dim)", "C)"),
           loses=VALUES, named="sqrt(hidden_size) instead of sqrt(head_dim)"),
    Mutant("scores not scaled", F, SCORES, "        scores = q @ k.transpose(-2, -1)  # (B, H, T, T)",
           loses=VALUES, named="scores are not scaled"),
    Mutant("softmax over the wrong axis (dim=-2)", F, SOFTMAX, SOFTMAX.replace("dim=-1", "dim=-2"),
           loses=("causal", *VALUES), named="softmax over the query axis",
           says=(("causal", "softmax over the query axis"),), never=("hint:     mask the scores",)),
    Mutant("the scale applied after the softmax (weights divided by sqrt(head_dim))", F, SCORES,
           "        scores = q @ k.transpose(-2, -1)  # (B, H, T, T)",
           more=((SOFTMAX, SOFTMAX + " / math.sqrt(self.head_dim)"),),
           loses=("parameters", "validation", "causal", *VALUES), named="the scale is applied after the softmax",
           says=(("*", "the scale is applied after the softmax"),), never=("value path",)),
    Mutant("dropout on the attention weights that stays on in eval mode (F.dropout without training=)", F, SOFTMAX,
           "        att = F.dropout(F.softmax(scores.float(), dim=-1), p=0.1).type_as(q)",
           loses=("parameters", "validation", "causal", *VALUES),
           named="two calls with the same input gave different outputs",
           says=(("*", "two calls with the same input gave different outputs"),)),
    Mutant("scores computed as k @ q^T", F, SCORES, SCORES.replace("(q @ k.transpose", "(k @ q.transpose"),
           loses=VALUES, named="looks like the scores"),
    # heads
    Mutant("heads merged without transposing back", F, MERGE,
           "        y = y.reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)",
           loses=("causal", *VALUES), named="merged without transposing"),
    Mutant("heads split with view(B, H, T, D) instead of view + transpose", F,
           Q, "        q = self.q_proj(x).view(B, self.num_heads, T, self.head_dim)  # (B, H, T, D)",
           more=((K, "        k = self.k_proj(x).view(B, self.num_kv_heads, T, self.head_dim)  # (B, Hkv, T, D)"),
                 (V, "        v = self.v_proj(x).view(B, self.num_kv_heads, T, self.head_dim)  # (B, Hkv, T, D)")),
           loses=("causal", *VALUES), named="looks like the head split or merge"),
    Mutant("k/v heads not repeated for grouped-query attention", F, REPEAT, "",
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'parameters'), named="not repeated"),
    Mutant("k/v heads repeated with .repeat instead of .repeat_interleave", F, REPEAT,
           REPEAT.replace("repeat_interleave(n_rep, dim=1)", "repeat(1, n_rep, 1, 1)"),
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'parameters'), named="instead of repeat_interleave"),
    Mutant("k_proj and v_proj not shrunk for grouped-query attention", F, KV_PROJ,
           KV_PROJ.replace("num_kv_heads * self.head_dim", "hidden_size"),
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'parameters'),
           named="k_proj or v_proj has the wrong number of outputs"),
    Mutant("o_proj not applied", F, "        return self.o_proj(y)", "        return y",
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'matches_reference', 'parameters', 'validation'), named="o_proj is not applied"),
    # RoPE
    Mutant("RoPE in the interleaved layout (pairs 2i, 2i+1)", F,
           "    angles = torch.cat([angles, angles], dim=-1)  # (T, head_dim)",
           "    angles = angles.repeat_interleave(2, dim=-1)  # (T, head_dim): each angle twice in a row",
           more=((APPLY, "    x1, x2 = x[..., 0::2], x[..., 1::2]\n"
                         "    rotated = torch.stack([-x2, x1], dim=-1).flatten(-2)  # pairs (2i, 2i+1)\n"
                         "    return x * cos[:T] + rotated * sin[:T]"),),
           loses=('apply_rope_values', 'bfloat16', 'gradients', 'grouped_query', 'matches_reference', 'rope_tables_values'),
           named="interleaved"),
    Mutant("RoPE frequency exponent without the factor 2", F, INV_FREQ,
           INV_FREQ.replace("torch.arange(0, head_dim, 2, dtype", "torch.arange(head_dim // 2, dtype"),
           loses=("rope_tables_values", *VALUES), named="the exponent is i/d"),
    Mutant("RoPE applied to v as well", F, ROPE_K, ROPE_K + ROPE_K.replace("k", "v"),
           loses=VALUES, named="also applied to v"),
    Mutant("RoPE applied to q only", F, ROPE_K, "",
           loses=VALUES, named="applied to q only"),
    # shifting every position rotates q and k alike: the attention output cannot tell, only the tables can
    Mutant("RoPE positions start at 1", F, "    positions = torch.arange(max_seq_len, dtype=torch.float32)  # (T,)",
           "    positions = torch.arange(1, max_seq_len + 1, dtype=torch.float32)  # (T,)",
           loses=('rope_tables_values',), named="positions start at 1"),
    Mutant("RoPE applied in the (B, T, H, D) layout, before the transpose", F,
           Q, Q.replace(".transpose(1, 2)  # (B, H, T, D)", "  # (B, T, H, D)"),
           more=((K, K.replace(".transpose(1, 2)  # (B, Hkv, T, D)", "  # (B, T, Hkv, D)")),
                 (ROPE_Q + ROPE_K, (ROPE_Q + ROPE_K).replace("\n", ".transpose(1, 2)\n"))),
           loses=('bfloat16', 'gradients', 'grouped_query', 'matches_reference'),
           named="layout"),
    Mutant("apply_rope uses the last T rows of longer tables", F, APPLY, APPLY.replace("[:T]", "[-T:]"),
           loses=("apply_rope_values",), named="the last T rows of the tables"),
    Mutant("cos and sin swapped in apply_rope (x * sin + rotate_half(x) * cos)", F, APPLY,
           "    return x * sin[:T] + rotate_half(x) * cos[:T]",
           loses=("apply_rope_values", *VALUES), named="cos and sin are swapped: x * sin + rotate_half(x) * cos",
           says=(("apply_rope_values", "cos and sin are swapped"), ("matches_reference", "cos and sin swapped")),
           never=("rotate_half returns", "rotate_half(x) = cat")),
    Mutant("precompute_rope returns (sin, cos)", F, "    return angles.cos(), angles.sin()",
           "    return angles.sin(), angles.cos()",
           loses=("rope_tables_values", *VALUES), named="precompute_rope returns sin, cos",
           says=(("matches_reference", "cos and sin swapped"),), never=("rotate_half returns", "rotate_half(x) = cat")),
    Mutant("RoPE rotates the wrong way (x * cos - rotate_half(x) * sin)", F,
           APPLY, APPLY.replace("+ rotate", "- rotate"),
           loses=("apply_rope_values", *VALUES), named="the wrong way"),
    # configuration
    Mutant("head_dim kept in a local variable, never as self.head_dim", F,
           "        self.head_dim = hidden_size // num_heads\n", "        head_dim = hidden_size // num_heads\n",
           more=((PROJ, PROJ.replace("self.head_dim", "head_dim")),),
           loses=("parameters", "validation", "causal", *VALUES),
           named="CausalSelfAttention has no attribute head_dim: set self.head_dim in __init__",
           says=(("*", "CausalSelfAttention has no attribute head_dim: set self.head_dim in __init__"),),
           never=("__missing__",)),
    Mutant("no ValueError for T > max_seq_len", F,
           "        if T > self.max_seq_len:\n"
           "            raise ValueError(f\"sequence length {T} exceeds max_seq_len {self.max_seq_len}\")\n", "",
           loses=("validation",), named="check T against self.max_seq_len"),
    # the checks' non-contiguous input reaches forward transposed (kit/tensorpack.py keeps the strides)
    Mutant("x flattened with x.view(B * T, C) before the projections (fails on a non-contiguous x)", F, Q,
           "        x = x.view(B * T, C)  # (B*T, C): the projections see one row per token\n" + Q,
           loses=("matches_reference",), named="a .view(...) of a tensor that is not contiguous"),
    Mutant("apply_rope rotates x in place (x.mul_(cos), then adds)", F, APPLY,
           "    rotated = rotate_half(x)\n"
           "    return x.mul_(cos[:T]).add_(rotated * sin[:T])",
           loses=("apply_rope_values",), named="return a new tensor: x * cos + rotate_half(x) * sin"),
    Mutant("RoPE tables kept as plain attributes, not buffers (they do not follow model.to(...))", F,
           '        self.register_buffer("cos", cos, persistent=False)\n'
           '        self.register_buffer("sin", sin, persistent=False)\n',
           "        self.cos, self.sin = cos, sin\n",
           loses=("bfloat16",), named="self.cos is kept as a plain tensor attribute, not a buffer"),
    Mutant("rope_theta ignored (precompute_rope called with its default theta)", F,
           "        cos, sin = precompute_rope(self.head_dim, max_seq_len, rope_theta)\n",
           "        cos, sin = precompute_rope(self.head_dim, max_seq_len)\n",
           loses=("matches_reference",), named="rope_theta is ignored", never=("-4i",)),
    Mutant("precompute_rope ignores its theta (10000 hard-coded)", F, INV_FREQ, INV_FREQ.replace("theta **", "10000.0 **"),
           loses=("rope_tables_values", "matches_reference"), named="theta argument is ignored",
           never=("-4i",)),
    Mutant("head_dim computed from num_kv_heads (hidden_size // num_kv_heads)", F,
           "        self.head_dim = hidden_size // num_heads\n", "        self.head_dim = hidden_size // num_kv_heads\n",
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'parameters'),
           named="head_dim is computed from num_kv_heads", never=("k_proj or v_proj has the wrong",)),
    Mutant("an inverted boolean mask given to scaled_dot_product_attention (True above the diagonal)", F,
           SCORES + "\n" + MASK + "\n" + FILL + SOFTMAX + "\n        y = att @ v  # (B, H, T, D)\n",
           MASK + "\n        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D)\n",
           loses=('bfloat16', 'causal', 'gradients', 'grouped_query', 'matches_reference', 'parameters', 'validation'),
           named="the boolean mask is inverted", never=("rescales the weights",)),
    Mutant("the RoPE tables sliced from row 1 in forward (cos[1:T + 1])", F, ROPE_Q + ROPE_K,
           (ROPE_Q + ROPE_K).replace("[:T]", "[1:T + 1]"),
           loses=("matches_reference", "validation"), named="sliced from row 1", never=("another layout",)),
]
