"""残差连接：``y = x + F(x)``。

残差连接（skip connection，跳跃连接）把子层的输出加回到它的输入上。这样子层只需要学习
对 x 的*调整量*；反向传播时，梯度经过恒等路径原封不动地回到 x：

    dL/dx = dL/dy * (I + dF/dx)

所以即使 ``dF/dx`` 很小（比如初始化时的深层网络），``I`` 这一项也能把信号传回前面的层。
这正是深层 Transformer 能够训练起来的原因。

形状：``x`` 可以是任意张量，通常是 ``(B, T, C)``；``F(x)`` 必须和 ``x`` 形状相同。

陷阱：写成 ``x += self.sublayer(x)``。原地加法会改掉调用者手里的张量（而且当反向传播还需要
x 时会让 autograd 报错）。请构造一个新的张量。
"""


class Residual:
    """包装 ``sublayer``，使得 ``forward(x, ...) = x + sublayer(x, ...)``。"""

    def __init__(self, sublayer):
        # 把子层存为 self.sublayer（把 nn.Module 赋值给属性，就会把它注册为子模块）。
        ...

    def forward(self, x, *args, **kwargs):
        # x：(B, T, C) -> (B, T, C)；多出来的参数原样传给子层。
        ...
