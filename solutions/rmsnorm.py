"""RMSNorm (Zhang & Sennrich, 2019), the normalisation of LLaMA and MiniMind.

For each vector x of size d (the last dimension):

    RMS(x) = sqrt(mean_i(x_i^2) + eps)
    y      = x / RMS(x) * weight

Unlike LayerNorm it does not subtract the mean and has no bias: it only
rescales x to unit root-mean-square, then applies a learned per-channel gain
``weight`` (initialised to ones, so the layer starts as a pure rescaling).

Shapes: ``x`` is ``(..., dim)``, usually ``(B, T, C)``; the output has the
shape of ``x``. Its dtype is that of ``x.type_as(x) * weight``: x's dtype when
the weight has it too (a bfloat16 x with a float32 weight gives float32, as in
LLaMA and MiniMind).

Traps:
- normalise over the *last* dimension only (``dim=-1, keepdim=True``), not
  over the batch or the sequence;
- eps goes *inside* the square root (``rsqrt(mean + eps)``);
- compute the statistics in float32 even when x is bfloat16 (squares of bf16
  values lose precision), cast back with ``.type_as(x)``, *then* multiply by
  ``weight``;
- do not subtract the mean: that is LayerNorm.
"""
import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        # self.eps = eps, and self.weight: an nn.Parameter of shape (dim,) filled with ones.
        ### BEGIN SOLUTION
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        ### END SOLUTION

    def forward(self, x):
        # x: (..., dim) -> (..., dim)
        ### BEGIN SOLUTION
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight
        ### END SOLUTION
