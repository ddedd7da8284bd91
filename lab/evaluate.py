"""Perplexity with teacher forcing over full-context windows: the number the final check grades."""
import math

import torch
import torch.nn.functional as F


def windows(n_tokens, seq_len, n_chars, seed):
    """Start offsets of ``ceil(n_chars / seq_len)`` windows, drawn with a fixed seed.

    Each window holds ``seq_len`` inputs and predicts the next ``seq_len`` characters.
    """
    count = math.ceil(n_chars / seq_len)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_tokens - seq_len, (count,), generator=g)


def batch(ids, starts, seq_len):
    """Inputs ``(B, T)`` and next-character targets ``(B, T)`` for windows starting at ``starts``."""
    offs = torch.arange(seq_len)
    x = ids[starts[:, None] + offs]
    y = ids[starts[:, None] + offs + 1]
    return x, y


def nll_sum(logits, targets):
    """Summed cross-entropy in float32 (logits ``(B, T, V)``, targets ``(B, T)``)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()


@torch.no_grad()
def perplexity(model, ids, starts, seq_len, batch_size=16, device="cpu", progress=None):
    """``exp(mean cross-entropy)`` of ``model`` over the windows; also returns the number of predictions."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        x, y = batch(ids, starts[i:i + batch_size], seq_len)
        total += nll_sum(model(x.to(device)), y.to(device))
        count += y.numel()
        if progress is not None:
            progress(len(starts[i:i + batch_size]))
    model.train(was_training)
    mean = total / count
    return (math.exp(mean) if mean < 700 else math.inf), count  # a wrecked model: inf, not OverflowError
