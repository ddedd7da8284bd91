# Generated from solutions/residual.py by `make stubs`: edit the solution, not this file's skeleton.
"""Residual connection: ``y = x + F(x)``.

A residual (skip) connection adds a sublayer's output back to its input. The
sublayer only has to learn the *change* to x, and on the way back the gradient
reaches x through the identity path untouched:

    dL/dx = dL/dy * (I + dF/dx)

so even when ``dF/dx`` is tiny (a deep stack at initialisation), the ``I`` term
carries the signal to the early layers. That is why deep transformers train.

Shapes: ``x`` is any tensor, typically ``(B, T, C)``; ``F(x)`` must have the
same shape as ``x``.

The trap: writing ``x += self.sublayer(x)``. The in-place add changes the
caller's tensor (and breaks autograd when x is needed for the backward pass).
Build a new tensor instead.
"""
import torch.nn as nn


class Residual(nn.Module):
    """Wraps ``sublayer`` so that ``forward(x, ...) = x + sublayer(x, ...)``."""

    def __init__(self, sublayer):
        super().__init__()
        # Keep the sublayer as self.sublayer (assigning an nn.Module registers it as a submodule).
        raise NotImplementedError("Residual.__init__")

    def forward(self, x, *args, **kwargs):
        # x: (B, T, C) -> (B, T, C); extra arguments go to the sublayer untouched.
        raise NotImplementedError("Residual.forward")
