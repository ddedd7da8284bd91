"""带旋转位置编码（RoPE）的因果自注意力。

带因果掩码的缩放点积注意力（Vaswani et al., 2017）：

    scores = Q K^T / sqrt(head_dim)               (B, H, T, T)
    scores[t, s] = -inf  for s > t                 （不许偷看未来）
    out    = softmax(scores, dim=-1) V             (B, H, T, head_dim)

RoPE（Su et al., 2021）通过*旋转* q 和 k 来编码位置：每一对通道 (i, i + head_dim/2) 旋转
角度 ``pos * theta^(-2i/head_dim)``。由于旋转可以复合，``<rope(q, m), rope(k, n)>`` 只取决于
偏移 ``m - n``：注意力看到的是相对位置。位置 0 旋转角度为 0，所以 RoPE 不改变它。这里用的是
LLaMA 和 MiniMind 的 "rotate half" 布局（前一半通道与后一半通道配对），而不是论文中的交错布局
（通道 2i 与 2i+1 配对）。

分组查询注意力（GQA）：当 ``num_kv_heads < num_heads`` 时，几个查询头共用一个键/值头；
查询头 i 读取键值头 ``i // (num_heads // num_kv_heads)``。``num_kv_heads = num_heads`` 就是
普通的多头注意力。

陷阱：掩码*严格*位于对角线以上（一个 token 可以关注它自己）；分数要除以 sqrt(head_dim)，
不是 sqrt(hidden_size)，而且要在 softmax *之前*除（softmax 的权重之和必须为 1）；softmax 作用在
最后一个轴（键）上；RoPE 只作用于 q 和 k，绝不作用于 v，``cos`` 乘 x，``sin`` 乘它旋转后的那一半；
用 ``repeat_interleave`` 重复键值头（头 0, 0, 1, 1, ...），不要用 ``repeat``（0, 1, 0, 1, ...）；
合并各头时先 ``transpose(1, 2)`` *再* ``reshape``。不要 dropout：同样的输入必须给出同样的输出。
"""


def precompute_rope(head_dim, max_seq_len, theta=10000.0):
    """返回 ``(cos, sin)``，形状都是 ``(max_seq_len, head_dim)``。

    对 ``i < head_dim / 2``，``inv_freq[i] = theta ** (-2i / head_dim)``；
    ``angles[pos, i] = pos * inv_freq[i]``；最后一维的前后两半存放相同的角度：
    ``cos = cat([cos(angles), cos(angles)], -1)``。
    位置从 0 开始。
    """
    ...


def rotate_half(x):
    """在最后一维的两半上做 ``(x1, x2) -> (-x2, x1)``。"""
    ...


def apply_rope(x, cos, sin):
    """用表的前 T 行旋转形状为 ``(..., T, head_dim)`` 的 ``x``。

    ``cos`` 和 ``sin`` 的形状是 ``(T_max, head_dim)``，且 ``T_max >= T``（即 ``precompute_rope``
    生成的表）；第 t 行旋转位置 t，所以只用到第 ``0 .. T-1`` 行，绝不是最后 T 行。结果是在这些
    行上计算的 ``x * cos + rotate_half(x) * sin``，形状与 x 相同，并且是一个新张量：``x`` 本身
    保持不变（调用者可能还要用它）。
    """
    ...


class CausalSelfAttention:
    """带 RoPE 的多头（或分组查询）因果自注意力。

    ``__init__`` 设置 ``num_heads``、``num_kv_heads``（为 None 时等于 ``num_heads``）、
    ``head_dim = hidden_size // num_heads`` 和 ``max_seq_len``；构建 ``q_proj``
    （hidden -> num_heads * head_dim）、``k_proj`` 和 ``v_proj``（hidden -> num_kv_heads * head_dim）
    以及 ``o_proj``（num_heads * head_dim -> hidden），全部是 ``nn.Linear(..., bias=False)``；
    并把 ``precompute_rope`` 生成的 RoPE 表注册为 buffer ``cos`` 和 ``sin``，``persistent=False``
    （它们由配置推出，所以不进 state_dict）。当 ``hidden_size % num_heads != 0`` 或
    ``num_heads % num_kv_heads != 0`` 时抛出 ``ValueError``；当 ``T > max_seq_len`` 时，
    ``forward`` 抛出 ``ValueError``。
    """

    def forward(self, x):
        # x：(B, T, C) -> (B, T, C)
        ...
