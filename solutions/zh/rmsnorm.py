"""RMSNorm（Zhang & Sennrich, 2019），LLaMA 和 MiniMind 使用的归一化。

对每个长度为 d 的向量 x（最后一维）：

    RMS(x) = sqrt(mean_i(x_i^2) + eps)
    y      = x / RMS(x) * weight

与 LayerNorm 不同，它不减去均值，也没有偏置：它只把 x 缩放到均方根为 1，再乘上一个可学习的
逐通道增益 ``weight``（初始化为全 1，所以这一层一开始就是单纯的缩放）。

形状：``x`` 是 ``(..., dim)``，通常是 ``(B, T, C)``；输出与 ``x`` 形状相同。输出的 dtype 是
``x.type_as(x) * weight`` 的 dtype：当 weight 与 x 同类型时就是 x 的 dtype（bfloat16 的 x 乘
float32 的 weight 得到 float32，与 LLaMA 和 MiniMind 一致）。

陷阱：
- 只在*最后一维*上归一化（``dim=-1, keepdim=True``），不要在 batch 或序列维上归一化；
- eps 放在平方根*里面*（``rsqrt(mean + eps)``）；
- 即使 x 是 bfloat16，统计量也要用 float32 计算（bf16 数值的平方会损失精度），先用
  ``.type_as(x)`` 转回来，*再*乘以 ``weight``；
- 不要减去均值：那是 LayerNorm。
"""


class RMSNorm:
    def __init__(self, dim, eps=1e-6):
        # self.eps = eps，以及 self.weight：一个形状为 (dim,)、全部填 1 的 nn.Parameter。
        ...

    def forward(self, x):
        # x：(..., dim) -> (..., dim)
        ...
