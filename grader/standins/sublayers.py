"""Sublayers for checking Residual: they take extra arguments, to see that they are passed on."""
import torch
import torch.nn as nn


class Shift(nn.Module):
    """``forward(x, shift=0.0, *, scale=1.0) = tanh(x @ W^T) * scale + shift``."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim) / dim ** 0.5)

    def forward(self, x, shift=0.0, *, scale=1.0):
        return torch.tanh(x @ self.weight.T) * scale + shift
