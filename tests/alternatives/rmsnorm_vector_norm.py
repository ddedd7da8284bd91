"""Correct alternative: the root mean square from the L2 norm, sqrt(mean(x**2)) = ||x|| / sqrt(d)."""

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.to(torch.float32)
        d = x.shape[-1]
        rms = torch.sqrt(torch.linalg.vector_norm(xf, dim=-1, keepdim=True) ** 2 / d + self.eps)
        return (xf / rms).to(x.dtype) * self.weight
