"""Mistakes in decoder.py: stacking the blocks, the final norm, the tied head (graded over stand-in blocks)."""
from . import Mutant

F = "decoder.py"
BLOCKS = ("        self.blocks = nn.ModuleList([\n"
          "            TransformerBlock(hidden_size, num_heads, num_kv_heads, intermediate_size,\n"
          "                             max_seq_len, rms_norm_eps, rope_theta)\n"
          "            for _ in range(num_layers)\n"
          "        ])\n")
LOOP = "        for block in self.blocks:\n            x = block(x)\n        return self.norm(x)"
LM_DECODER = ("        self.decoder = TransformerDecoder(num_layers, hidden_size, num_heads, num_kv_heads, "
              "intermediate_size,\n                                          max_seq_len, rms_norm_eps, rope_theta)\n")
DEC = ("decoder_values", "decoder_arguments", "decoder_gradients", "lm_values", "lm_gradients")

MUTANTS = [
    Mutant("one block object reused for every layer", F, BLOCKS,
           "        block = TransformerBlock(hidden_size, num_heads, num_kv_heads, intermediate_size,\n"
           "                                 max_seq_len, rms_norm_eps, rope_theta)\n"
           "        self.blocks = nn.ModuleList([block] * num_layers)\n",
           loses=('decoder_arguments', 'decoder_gradients', 'decoder_values', 'lm_gradients', 'lm_values'), named="is applied num_layers times"),
    Mutant("the final norm is missing", F, LOOP, LOOP.replace("return self.norm(x)", "return x"),
           loses=('decoder_arguments', 'decoder_gradients', 'decoder_values', 'lm_gradients', 'lm_initialisation', 'lm_values'), named="the final norm is missing"),
    Mutant("the blocks run in reverse order", F, LOOP, LOOP.replace("in self.blocks", "in reversed(self.blocks)"),
           loses=('decoder_arguments', 'decoder_gradients', 'decoder_values', 'lm_gradients', 'lm_initialisation', 'lm_values'), named="reverse order"),
    Mutant("the norm is applied after every block", F, LOOP,
           "        for block in self.blocks:\n            x = self.norm(block(x))\n        return x",
           loses=('decoder_arguments', 'decoder_gradients', 'decoder_values', 'lm_gradients', 'lm_initialisation', 'lm_values'), named="after every block"),
    Mutant("rms_norm_eps and rope_theta not passed on to the blocks", F, BLOCKS,
           BLOCKS.replace("max_seq_len, rms_norm_eps, rope_theta)", "max_seq_len)"),
           loses=("decoder_arguments", "lm_values"),
           named="rms_norm_eps and rope_theta are not passed on to the blocks (the final norm gets eps)"),
    Mutant("untied head (lm_head has its own matrix)", F,
           "        self.lm_head.weight = self.embed_tokens.weight\n", "",
           loses=('lm_gradients', 'lm_initialisation'), named="self.lm_head.weight = self.embed_tokens.weight"),
    Mutant("transposed head (x @ lm_head.weight)", F,
           "        return self.lm_head(x)  # (B, T, V)", "        return x @ self.lm_head.weight  # (B, T, V)",
           loses=('lm_gradients', 'lm_initialisation', 'lm_values'), named="without transposing"),
    Mutant("the stub's weight initialisation removed (self.apply(self._init_weights))", F,
           "        self.apply(self._init_weights)\n", "",
           loses=("lm_initialisation",), named="keep the stub's `self.apply(self._init_weights)`"),
    Mutant("TransformerLM does not pass num_kv_heads on to the decoder", F,
           "        self.decoder = TransformerDecoder(num_layers, hidden_size, num_heads, num_kv_heads, intermediate_size,\n"
           "                                          max_seq_len, rms_norm_eps, rope_theta)\n",
           "        self.decoder = TransformerDecoder(num_layers, hidden_size, num_heads, intermediate_size=intermediate_size,\n"
           "                                          max_seq_len=max_seq_len, rms_norm_eps=rms_norm_eps,\n"
           "                                          rope_theta=rope_theta)\n",
           loses=("lm_values",), named="num_kv_heads does not reach the CausalSelfAttention"),
    Mutant("TransformerDecoder does not pass num_kv_heads and intermediate_size on to the blocks", F, BLOCKS,
           BLOCKS.replace("num_heads, num_kv_heads, intermediate_size,\n                             max_seq_len, "
                          "rms_norm_eps, rope_theta)",
                          "num_heads, max_seq_len=max_seq_len, rms_norm_eps=rms_norm_eps,\n"
                          "                             rope_theta=rope_theta)"),
           loses=("decoder_arguments", "lm_values"), named="does not reach the"),
    # the blocks' arguments by position, in another order: max_seq_len gets rms_norm_eps, and the grader's
    # stand-in attention raises when the sequence is longer than that
    Mutant("block arguments passed by position in the wrong order (rms_norm_eps before max_seq_len)", F, BLOCKS,
           BLOCKS.replace("max_seq_len, rms_norm_eps, rope_theta)", "rms_norm_eps, max_seq_len, rope_theta)"),
           loses=DEC + ("lm_initialisation",), named="raised inside the grader's stand-in CausalSelfAttention",
           says=(("*", "called from your decoder.py line"), ("*", "the grader's file attention.py, not yours"))),
    Mutant("embeddings scaled by sqrt(hidden_size)", F,
           "        x = self.embed_tokens(idx)  # (B, T, C)",
           "        x = self.embed_tokens(idx) * self.embed_tokens.embedding_dim ** 0.5  # (B, T, C)",
           loses=('lm_gradients', 'lm_initialisation', 'lm_values'), named="multiplied by sqrt(hidden_size)"),
    # arguments through every level: LM -> decoder -> blocks and final norm -> attention
    Mutant("TransformerLM does not pass rms_norm_eps and rope_theta on to the decoder", F, LM_DECODER,
           LM_DECODER.replace("max_seq_len, rms_norm_eps, rope_theta)", "max_seq_len)"),
           loses=("lm_values",), named="do not get from TransformerLM to the blocks and the final norm"),
    Mutant("the final norm does not get rms_norm_eps (RMSNorm(hidden_size))", F,
           "        self.norm = RMSNorm(hidden_size, eps=rms_norm_eps)", "        self.norm = RMSNorm(hidden_size)",
           loses=("decoder_arguments", "lm_values"), named="rms_norm_eps is not passed on to the final norm",
           never=("TransformerBlock(hidden_size",)),
    Mutant("TransformerDecoder does not pass max_seq_len on to the blocks", F, BLOCKS,
           BLOCKS.replace("intermediate_size,\n                             max_seq_len, rms_norm_eps, rope_theta)",
                          "intermediate_size,\n                             rms_norm_eps=rms_norm_eps, "
                          "rope_theta=rope_theta)"),
           loses=("decoder_arguments", "lm_values"), named="max_seq_len does not reach the CausalSelfAttention"),
    Mutant("TransformerLM does not pass max_seq_len on to the decoder", F, LM_DECODER,
           LM_DECODER.replace("max_seq_len, rms_norm_eps, rope_theta)",
                              "rms_norm_eps=rms_norm_eps, rope_theta=rope_theta)"),
           loses=("lm_values",), named="max_seq_len does not reach the CausalSelfAttention"),
    # a parameter set of its own: the student's structure, never the grader's fault (the reference loads it strictly)
    Mutant("a learned positional embedding added to TransformerLM (RoPE already encodes positions)", F,
           "        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)\n",
           "        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)\n"
           "        self.pos_emb = nn.Embedding(max_seq_len, hidden_size)\n",
           more=(("        x = self.embed_tokens(idx)  # (B, T, C)",
                  "        x = self.embed_tokens(idx) + self.pos_emb(torch.arange(idx.shape[1]))  # (B, T, C)"),),
           loses=("lm_values", "lm_gradients", "lm_initialisation"), named="parts the API does not have: pos_emb",
           never=("fault of the grader",)),
    Mutant("one block too many (range(num_layers + 1))", F, BLOCKS, BLOCKS.replace("range(num_layers)",
                                                                                   "range(num_layers + 1)"),
           loses=DEC + ("lm_initialisation",), named="parts the API does not have: blocks.3", never=("fault of the grader",)),
    Mutant("padding_idx=0 in the embedding (token 0 gets no gradient through it)", F,
           "        self.embed_tokens = nn.Embedding(vocab_size, hidden_size)\n",
           "        self.embed_tokens = nn.Embedding(vocab_size, hidden_size, padding_idx=0)\n",
           loses=("lm_gradients",), named="padding_idx"),
]
