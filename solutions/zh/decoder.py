"""解码器：一摞 Transformer 块，以及包在它外面的语言模型。

    TransformerDecoder:  x -> block_1 -> ... -> block_L -> norm          (B, T, C)
    TransformerLM:       idx -> embed_tokens -> decoder -> lm_head       (B, T) -> (B, T, V)

每个块都有*自己*的参数：构建 ``num_layers`` 个彼此独立的块
（``nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)])``），而不是把同一个块重复
多次。在 Pre-Norm 的堆叠中，残差流在块内部从不被归一化，所以解码器在输出头之前要以一个最终的
``norm`` 结束。

权重共享（weight tying，Press & Wolf, 2017）：``lm_head`` 用与 ``embed_tokens`` *同一个*矩阵把
隐藏状态映射回词表（``lm_head.weight = embed_tokens.weight``，形状 (V, C)；``nn.Linear(C, V)``
存储的也是 (V, C)，所以不需要转置）。这样省下 V*C 个参数，并让 token 在输入端和输出端的含义
保持一致。

陷阱：所有层复用同一个块对象；忘了最后的 norm；建了一个不共享权重的输出头（第二个独立的
矩阵）；某个参数没有传到块里（num_kv_heads 和 intermediate_size 也要传：每一个都要往下传，按
签名的顺序或者用关键字）；删掉了存根里的 ``self.apply(self._init_weights)``。
"""


class TransformerDecoder:
    def __init__(self, num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        # 构建 self.blocks（由 num_layers 个 TransformerBlock 组成的 nn.ModuleList）和 self.norm(RMSNorm)。
        ...

    def forward(self, x):
        # x：(B, T, C) -> (B, T, C)
        ...


class TransformerLM:
    def __init__(self, vocab_size, num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=None,
                 intermediate_size=None, max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        # 构建 self.embed_tokens、self.decoder 和 self.lm_head，并让 lm_head 的权重与嵌入层共享。
        ...

    @staticmethod
    def _init_weights(module):
        # GPT-2 的做法：很小的正态分布权重让初始 logits 接近零（损失接近 ln(vocab_size)）。
        ...

    def forward(self, idx):
        # idx：(B, T) long -> logits (B, T, vocab_size)
        ...
