"""Stand-in norm: ``tanh(x) * weight + eps``.

Elementwise and nonlinear, so where it sits shows in the output; eps is added
outright so that a block that does not pass ``rms_norm_eps`` on is seen.
"""
import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return torch.tanh(x) * self.weight + self.eps
