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
MY_ATTENTION = '''

class MyAttention(nn.Module):
    """Causal self-attention with RoPE, written here under a name of its own."""

    def __init__(self, hidden_size, num_heads, num_kv_heads=None, max_seq_len=256, rope_theta=10000.0):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads or num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        inv_freq = rope_theta ** (-torch.arange(0, self.head_dim, 2).float() / self.head_dim)
        angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq).repeat(1, 2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):
        B, T, C = x.shape

        def heads(t, n):
            return t.view(B, T, n, self.head_dim).transpose(1, 2)

        def rope(t):
            t1, t2 = t.chunk(2, dim=-1)
            return t * self.cos[:T] + torch.cat([-t2, t1], dim=-1) * self.sin[:T]
        q = rope(heads(self.q_proj(x), self.num_heads))
        k = rope(heads(self.k_proj(x), self.num_kv_heads))
        v = heads(self.v_proj(x), self.num_kv_heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))
'''

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
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients', 'residual_paths'), named="added to the normalised input",
           says=(("*", "add each residual to the un-normalised stream (x, not input_layernorm(x))"),)),
    Mutant("rms_norm_eps and rope_theta not passed on", F, INIT,
           INIT.replace(", eps=rms_norm_eps", "").replace(", max_seq_len, rope_theta)", ", max_seq_len)"),
           loses=WIRING, named="are not passed on"),
    Mutant("intermediate_size not passed on to FeedForward", F,
           "        self.mlp = FeedForward(hidden_size, intermediate_size)",
           "        self.mlp = FeedForward(hidden_size)",
           loses=('block_arguments',), named="FeedForward(hidden_size, intermediate_size)"),
    Mutant("only the first residual added to the normalised input (x = input_layernorm(x) first)", F, FWD,
           "        x = self.input_layernorm(x)\n"
           "        h = x + self.self_attn(x)\n"
           "        return h + self.mlp(self.post_attention_layernorm(h))",
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients',
                  'residual_paths'),
           named="add each residual to the un-normalised stream (x, not input_layernorm(x))"),
    Mutant("the FFN's default intermediate_size is 4 * hidden_size (right at 32, wrong at 48 and 100)", F,
           "            intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)",
           "            intermediate_size = 4 * hidden_size",
           loses=("feedforward_values", "feedforward_gradients"), named="(128 for hidden_size 48)"),
    # a component defined in block.py under a name of its own: the grader cannot swap in its stand-in
    Mutant("block.py builds its attention from a class of its own (MyAttention), not CausalSelfAttention", F,
           "from .attention import CausalSelfAttention\n", "import torch\n\n" + MY_ATTENTION,
           more=(("        self.self_attn = CausalSelfAttention(", "        self.self_attn = MyAttention("),),
           loses=WIRING + ("block_arguments", "residual_paths"),
           named="could not put its stand-in CausalSelfAttention there",
           says=(("*", "builds self_attn from its own class MyAttention (defined in block.py)"),)),
    Mutant("residuals added in place (x += ...)", F, FWD,
           "        x += self.self_attn(self.input_layernorm(x))\n"
           "        return x + self.mlp(self.post_attention_layernorm(x))",
           loses=('block_gradients',), named="not x += ..."),
    Mutant("max_seq_len not passed on to the attention", F,
           "        self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)",
           "        self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, rope_theta=rope_theta)",
           loses=("block_arguments",), named="max_seq_len does not reach the CausalSelfAttention"),
    Mutant("up_proj used as the gate (silu(up_proj(x)) * up_proj(x))", F, SWIGLU,
           "        return self.down_proj(F.silu(self.up_proj(x)) * self.up_proj(x))",
           loses=("feedforward_values", "feedforward_gradients"), named="up_proj is used as the gate"),
    Mutant("the block returns the MLP branch without the second residual", F, FWD,
           FWD.replace("return h + self.mlp", "return self.mlp"),
           loses=('block_arguments', 'block_assembly', 'block_assembly_gqa', 'block_bfloat16', 'block_gradients',
                  'residual_paths'), named="the second residual (around the MLP) is missing"),
    Mutant("only post_attention_layernorm gets rms_norm_eps", F,
           "        self.input_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)\n",
           "        self.input_layernorm = RMSNorm(hidden_size)\n",
           loses=WIRING, named="rms_norm_eps reaches post_attention_layernorm only"),
]
