"""The final check's control variate: each window's loss under a character 5-gram model of the same text.

The final check estimates the mean loss of a model over windows drawn at random from the training split
(kit/perplexity.py). Most of the spread between windows is the text itself: a window of names and
stage directions is hard for any model, a window of common words easy. A character 5-gram model,
counted on the same split, sees part of the same difference (its per-window loss correlates with a
trained model's: r 0.77 at perplexity 3.3, 0.4 to 0.5 at the bar, where the model has learnt more than
5-grams know: BENCHMARKS.md, section final), and its mean over *every* window of the split, ``mu``, is
computed exactly here. The regression estimator

    mean(L) - beta * (mean(C) - mu),    beta fitted on the measured windows,

is the fitted line's value at ``C = mu``: it estimates the same mean loss, with a standard error smaller
by about ``sqrt(1 - r^2)``: the same bounds from ``1 - r^2`` of the windows (0.8 of them at the bar,
0.4 at perplexity 3.3). Its bound is Student's t with ``n - 2`` degrees of freedom on the fit's residuals, the standard
error of a regression line's value at a point (``sqrt(1/n + (mu - mean C)^2 / Sxx)``), taken at its
conservative side as kit/perplexity.py takes the plain one. Nothing of the submission enters ``C`` or
``mu``: the grader counts them from the corpus, and a model whose losses do not follow the text's
difficulty only loses the reduction (r near 0: the plain bound, one degree of freedom fewer).
"""
import math
import os

from kit.perplexity import LOOKS, SD_MARGIN, Estimate, Sequential, t_quantile

ORDER = 5  # characters: 4 of context and the one predicted (r at perplexity 3.3: 0.32 at 2, 0.63 at 3, 0.77 at
# 5, 0.77 at 6, 0.73 at 8; at the bar 0.43 at 3, 0.50 at 5, 0.51 at 6, 0.51 at 8, 0.41 at 12)
ALPHA = 0.5  # add-alpha smoothing of the counts: any fixed choice gives a valid control, this one a good one


def position_losses(ids, vocab_size, order=ORDER):
    """``l[p] = -log p(ids[p + 1] | the order - 1 characters up to ids[p])`` for every position ``p`` of ``ids``
    (1-D int64 tensor) but the last, under the add-``ALPHA`` n-gram model counted on ``ids`` itself; the first
    ``order - 2`` positions, which lack a full context: ``log(vocab_size)``. Float64, ``(len(ids) - 1,)``."""
    import torch
    ids, V, k = ids.long(), vocab_size, order - 1
    n = len(ids)
    context = torch.zeros(n - k, dtype=torch.int64)
    for j in range(k):  # the k characters before each predicted one, as one number (V ** order < 2 ** 63)
        context = context * V + ids[j:n - k + j]
    _, ci, cc = torch.unique(context, return_inverse=True, return_counts=True)
    _, fi, fc = torch.unique(context * V + ids[k:], return_inverse=True, return_counts=True)
    p = (fc[fi].double() + ALPHA) / (cc[ci].double() + ALPHA * V)
    losses = torch.full((n - 1,), math.log(V), dtype=torch.float64)
    losses[k - 1:] = -p.log()
    return losses


class Controls:
    """Each window's 5-gram loss and their exact mean over every window ``windows()`` can draw from ``ids``."""

    def __init__(self, ids, vocab_size, seq_len):
        import torch
        self.seq_len = seq_len
        losses = position_losses(ids, vocab_size)
        # a window at s predicts ids[s + 1 .. s + seq_len] from positions s .. s + seq_len - 1
        self.prefix = torch.cat([torch.zeros(1, dtype=torch.float64), losses.cumsum(0)])
        starts = len(ids) - seq_len  # windows(): torch.randint(0, n_tokens - seq_len)
        self.mu = ((self.prefix[seq_len:seq_len + starts] - self.prefix[:starts]).sum() / (starts * seq_len)).item()

    def of(self, starts):
        """The 5-gram mean loss of the windows at ``starts`` (a tensor of offsets), as a list of floats."""
        return ((self.prefix[starts + self.seq_len] - self.prefix[starts]) / self.seq_len).tolist()


def bounds(losses, controls, mu, level, seq_len, target=None, confidence=None, last=False, margin=0.0):
    """The ``Estimate`` of the mean of ``losses`` by the regression estimator on ``controls`` (same windows) with
    their known mean ``mu``; bounds by Student's t at one-sided ``level``. ``None`` where the controls cannot be
    used (fewer than 4 windows, a control without spread, a loss that is not finite): the plain estimate then."""
    n = len(losses)
    if n < 4 or not all(math.isfinite(v) for v in losses):
        return None
    lm, cm = math.fsum(losses) / n, math.fsum(controls) / n
    sxx = math.fsum((c - cm) ** 2 for c in controls)
    if sxx <= 0:
        return None
    beta = math.fsum((c - cm) * (v - lm) for c, v in zip(controls, losses)) / sxx
    mean = lm - beta * (cm - mu)
    resid = math.sqrt(math.fsum((v - lm - beta * (c - cm)) ** 2 for c, v in zip(controls, losses)) / (n - 2))
    se = resid * math.sqrt(1 / n + (mu - cm) ** 2 / sxx)
    half = t_quantile(level, n - 2) * se * (1 + SD_MARGIN / math.sqrt(n))
    sd = se * math.sqrt(n)  # the spread one window would need for this standard error: what Estimate.sd means
    return Estimate(n, seq_len, mean, sd, mean - half - margin, mean + half + margin, target, confidence, last)


class Controlled(Sequential):
    """kit.perplexity's sequential test on the regression estimator: ``controls`` are the 5-gram losses of the
    windows in the order they are measured, ``mu`` their mean over the whole split."""

    def __init__(self, target, seq_len, controls, mu, **kwargs):
        super().__init__(target, seq_len, **kwargs)
        self.controls, self.mu = list(controls), mu

    def look(self, losses):
        estimate = bounds(losses, self.controls[:len(losses)], self.mu, self.level, self.seq_len, self.target,
                          self.confidence, len(losses) >= self.looks[-1], self.margin)
        return estimate if estimate is not None else super().look(losses)


def use_control():
    """Whether the test uses the 5-gram control variate (kit/control.py): yes, unless ``GRADER_CONTROL=0`` (the
    benchmarks measure both)."""
    return os.environ.get("GRADER_CONTROL", "").strip().lower() not in ("0", "no", "off", "false")


def sequential(ids, starts, seq_len, target, looks=LOOKS, margin=0.0):
    """The sequential test of the windows at ``starts``: on the regression estimator with each window's 5-gram loss
    as its control (about a quarter of the windows near the bar: kit/control.py), counted from ``ids``."""
    if not use_control():
        return Sequential(target, seq_len, looks, margin=margin)
    controls = Controls(ids, int(ids.max()) + 1, seq_len)
    return Controlled(target, seq_len, controls.of(starts), controls.mu, looks=looks, margin=margin)
