"""Mistakes in block.py: SwiGLU, and the block's wiring (graded over stand-in components)."""
from . import Mutant

F = "block.py"
FWD = ("        h = x + self.self_attn(self.input_layernorm(x))\n"
       "        return h + self.mlp(self.post_attention_layernorm(h))")
INIT = ("        self.input_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)\n"
        "        self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)\n"
        "        self.post_attention_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)\n")
SWIGLU = "        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))"
WIRING = ("block_assembly", "block_assembly_gqa", "block_gradients", "block_bfloat16")

MUTANTS = [
    # the feed-forward network
    Mutant("SwiGLU with gate and up swapped", F, SWIGLU,
           "        return self.down_proj(self.gate_proj(x) * F.silu(self.up_proj(x)))",
           loses=("feedforward_values", "feedforward_gradients"), named="gate_proj and up_proj are swapped"),
    Mutant("ReLU instead of SiLU", F, SWIGLU, SWIGLU.replace("F.silu", "F.relu"),
           loses=("feedforward_values", "feedforward_gradients"), named="ReLU instead of SiLU", also=("decoder",)),
    Mutant("default intermediate_size not rounded to a multiple of 64", F,
           "            intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)",
           "            intermediate_size = int(8 * hidden_size / 3)",
           # the reference's weights (128 wide) no longer load, so the value checks fail too
           loses=('feedforward_gradients', 'feedforward_values'), named="64 * math.ceil"),
    # the block
    Mutant("post-norm block", F, FWD,
           "        h = self.input_layernorm(x + self.self_attn(x))\n"
           "        return self.post_attention_layernorm(h + self.mlp(h))",
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="post-norm", also=("decoder",)),
    Mutant("the residual around attention is missing", F, FWD,
           FWD.replace("h = x + self.self_attn", "h = self.self_attn"),
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="first residual (around attention) is missing"),
    Mutant("one norm used for both sublayers (in forward)", F, FWD,
           FWD.replace("self.post_attention_layernorm(h)", "self.input_layernorm(h)"),
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="input_layernorm is used for both sublayers"),
    Mutant("one RMSNorm object shared by both sublayers (in __init__)", F,
           "        self.post_attention_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)\n",
           "        self.post_attention_layernorm = self.input_layernorm\n",
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="one RMSNorm object serves as both norms"),
    Mutant("FFN before attention", F, FWD,
           "        h = x + self.mlp(self.post_attention_layernorm(x))\n"
           "        return h + self.self_attn(self.input_layernorm(h))",
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients'), named="the MLP runs before attention"),
    Mutant("residual added to the normalised input", F, FWD,
           "        x = self.input_layernorm(x)\n"
           "        h = x + self.self_attn(x)\n"
           "        h = self.post_attention_layernorm(h)\n"
           "        return h + self.mlp(h)",
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="added to the normalised input"),
    Mutant("rms_norm_eps and rope_theta not passed on", F, INIT,
           INIT.replace(", eps=rms_norm_eps", "").replace(", max_seq_len, rope_theta)", ", max_seq_len)"),
           loses=WIRING, named="are not passed on"),
    Mutant("intermediate_size not passed on to FeedForward", F,
           "        self.mlp = FeedForward(hidden_size, intermediate_size)",
           "        self.mlp = FeedForward(hidden_size)",
           loses=('block_arguments',), named="FeedForward(hidden_size, intermediate_size)"),
    Mutant("residuals added in place (x += ...)", F, FWD,
           "        x += self.self_attn(self.input_layernorm(x))\n"
           "        return x + self.mlp(self.post_attention_layernorm(x))",
           loses=('block_gradients',), named="not x += ..."),
]
