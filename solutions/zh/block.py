"""Pre-Norm 的 Transformer 块：解码器堆叠的基本单元。

    h   = x + self_attn(input_layernorm(x))            # 残差连接 1：在位置之间混合信息
    out = h + mlp(post_attention_layernorm(h))         # 残差连接 2：逐位置处理信息

Pre-Norm（Xiong et al., 2020；LLaMA、MiniMind）：每个子层看到的是残差流归一化之后的副本，而
残差流本身从不被归一化，所以从输出回到输入的恒等路径始终是干净的。Post-Norm（原始的
Transformer）在相加*之后*才归一化，``norm(x + sublayer(x))``，这就在梯度唯一的"高速公路"上
放了一个归一化层，深层堆叠需要学习率预热（warm-up）才能训练。

Attention 放在前面，因为它从其他位置收集信息；前馈网络（FFN）再处理每个位置收集到的信息。

前馈网络是 SwiGLU（Shazeer, 2020）：

    mlp(x) = down_proj( silu(gate_proj(x)) * up_proj(x) )

默认 ``intermediate_size = 64 * ceil(8 * hidden_size / 3 / 64)``（8/3 使参数量与 4 倍宽的
ReLU MLP 相同，再向上取整到 64 的倍数）。

形状：两个模块都是 ``(B, T, C) -> (B, T, C)``。

陷阱：两个*独立*的归一化层（每个子层一个，各有自己的 weight）；残差加在未归一化的残差流上
（是 ``x``，不是 ``input_layernorm(x)``）；silu 只作用在 gate 上；任何 hidden size 下都要用默认的
intermediate_size（32 和 48 时为 128，100 时为 320）。

用 API 中的名字 ``RMSNorm``、``CausalSelfAttention`` 和 ``FeedForward`` 构建组件（像下面这样
导入，或者以这些名字定义在本文件中）：评分程序检查块的连接方式时，会用它自己的替身组件替换
这些名字，换了别的类名就做不到了。
"""


class FeedForward:
    def __init__(self, hidden_size, intermediate_size=None):
        # intermediate_size 默认为 64 * ceil(8 * hidden_size / 3 / 64)；构建 gate_proj、up_proj
        # （hidden -> intermediate）和 down_proj（intermediate -> hidden），都不带偏置。
        ...

    def forward(self, x):
        # x：(B, T, C) -> (B, T, C)，中间经过 (B, T, intermediate_size)
        ...


class TransformerBlock:
    def __init__(self, hidden_size, num_heads, num_kv_heads=None, intermediate_size=None,
                 max_seq_len=256, rms_norm_eps=1e-6, rope_theta=10000.0):
        # 构建 input_layernorm、self_attn、post_attention_layernorm 和 mlp。
        ...

    def forward(self, x):
        # x：(B, T, C) -> (B, T, C)
        ...
