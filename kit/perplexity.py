"""Perplexity with teacher forcing over full-context windows: the number the final check grades.

The trainer's stop rule and the final check both measure with these functions, so "under 2.5"
means the same thing in both places: ``exp`` of the mean cross-entropy over windows of the training
split drawn uniformly at random, each holding ``seq_len`` inputs and predicting the next ``seq_len``
characters.

How many windows the final check measures is decided as it goes (``Sequential``): a sequential test
of "perplexity under the target" at ``CONFIDENCE``, over windows drawn at random from the grading's
seed. Each window's mean loss is one independent sample of the same distribution, so their mean is
normal to a good approximation (central limit theorem); at each of the ``LOOKS`` the test bounds the
mean loss by Student's t, ``mean +- t * s' / sqrt(n)``, at one-sided level ``(1 - CONFIDENCE) /
len(LOOKS)`` per look and side, where ``s'`` is the windows' own standard deviation taken at its
conservative side (``SD_MARGIN``). By Bonferroni's inequality the upper bound holds at every look at
once with probability at least ``CONFIDENCE``, and so does the lower one: the test passes a model
whose perplexity is the target or more, or fails one under it, with probability at most ``1 -
CONFIDENCE``. A model far from the target is decided at the first look (16 windows); one close to it
is measured up to the last look, the full measurement (``TRAIN_CHARS``, 782 windows), whose point
estimate decides what the bounds still cannot (as every measurement did before the test). The final check
runs this test on the regression estimator of kit/control.py (``Controlled``), whose bounds are narrower
for the same windows: each window's loss under a 5-gram model of the text is its control variate.
"""
import hashlib
import math
import statistics
import time
from dataclasses import dataclass

from kit.outcome import T

# The full measurement: 200,000 predicted characters of the training split (ceil(200000 / 256) = 782 full
# windows). The standard error of the log-perplexity over 782 windows is about 0.0063 (BENCHMARKS.md); the
# trainer stops 5% under the target (lab/train.py STOP_BELOW), where this test decides in 128 to 256 windows.
# SEED draws the windows where the grading seed is published (at the desk).
TRAIN_CHARS, SEED = 200_000, 2024
CONFIDENCE = 0.99  # of the final check's verdict, and of each side of the interval it reports
LOOKS = (16, 32, 64, 128, 256, 512, 782)  # windows measured at each look of the sequential test; the last: TRAIN_CHARS
# The bounds use the windows' standard deviation times 1 + SD_MARGIN / sqrt(n): roughly its upper confidence bound
# for losses as skewed as real ones (tests/test_final_check.py simulates it: without it, right-skewed losses
# pass a model at the bar 2 % of the time instead of at most 1 %).
SD_MARGIN = 1.5
# The validation split, shown beside the verdict (never graded): as many windows as the verdict took, at most these
VAL_WINDOWS = 64
# The final check's own deadline (python -m grader --final-timeout): Gradescope stops a grading at 540 s
# (classroom/gradescope.py); 300 s for the final check leave 240 s for the worker's start, the five units and the
# outputs, which take 10-20 s at Gradescope's 0.5 CPU on a quiet machine (BENCHMARKS.md, section final).
FINAL_TIMEOUT = 300.0


def windows(n_tokens, seq_len, n_chars, seed):
    """Start offsets of ``ceil(n_chars / seq_len)`` windows, drawn with a fixed seed.

    Each window holds ``seq_len`` inputs and predicts the next ``seq_len`` characters.
    """
    import torch
    count = math.ceil(n_chars / seq_len)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_tokens - seq_len, (count,), generator=g)


def window_seed(grading_seed, split_name):
    """The seed of the final check's windows of ``split_name``: ``SEED`` (``SEED + 1`` for validation) where the
    grading seed is published (empty), else one derived from the secret grading seed, so that no one can know the
    windows before the grading draws them (and a regrading with the same seed measures the same ones)."""
    if not grading_seed:
        return SEED + (split_name != "train")
    return int.from_bytes(hashlib.sha256(f"{grading_seed}:final:{split_name}".encode()).digest()[:8], "big") >> 1


def batch(ids, starts, seq_len):
    """Inputs ``(B, T)`` and next-character targets ``(B, T)`` for windows starting at ``starts``."""
    import torch
    offs = torch.arange(seq_len)
    x = ids[starts[:, None] + offs]
    y = ids[starts[:, None] + offs + 1]
    return x, y


def nll_sum(logits, targets):
    """Summed cross-entropy in float32 (logits ``(B, T, V)``, targets ``(B, T)``)."""
    import torch.nn.functional as F
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()


def window_losses(logits, targets):
    """Each window's mean cross-entropy in nats, ``(B,)`` float64 (logits ``(B, T, V)``, targets ``(B, T)``)."""
    import torch.nn.functional as F
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view(targets.shape).double().mean(1)


def perplexity(model, ids, starts, seq_len, batch_size=16, device="cpu", progress=None):
    """``exp(mean cross-entropy)`` of ``model`` over the windows; also returns the number of predictions."""
    import torch
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            x, y = batch(ids, starts[i:i + batch_size], seq_len)
            total += nll_sum(model(x.to(device)), y.to(device))
            count += y.numel()
            if progress is not None:
                progress(len(starts[i:i + batch_size]))
    model.train(was_training)
    return exp_mean(total, count), count


def exp_mean(total, count):
    """``exp(total / count)``; a wrecked model gives inf, not an OverflowError."""
    mean = total / count
    return math.exp(mean) if mean < 700 else math.inf


# -- the sequential test --------------------------------------------------------------------------------

def t_quantile(p, df):
    """Student's t quantile (Cornish-Fisher expansion in 1/df, Abramowitz & Stegun 26.7.5): within 0.1% of the exact
    value for df >= 10 at the levels used here (tests/test_final_check.py checks it against the t distribution)."""
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


@dataclass(frozen=True)
class Estimate:
    """What the windows measured so far say: the mean loss (nats) and its bounds, each side valid with probability
    ``confidence`` whichever look the test stopped at."""
    windows: int
    seq_len: int
    mean: float
    sd: float  # of one window's mean loss
    low: float
    high: float
    target: float = None
    confidence: float = CONFIDENCE
    last: bool = False  # the full measurement: no further look

    @property
    def perplexity(self):
        return _exp(self.mean)

    @property
    def interval(self):
        return _exp(self.low), _exp(self.high)

    @property
    def chars(self):
        return self.windows * self.seq_len

    @property
    def decided(self):
        """True where the bounds exclude the target (a verdict at ``confidence``)."""
        return self.target is not None and (self.high < math.log(self.target) or self.low > math.log(self.target)
                                            or not math.isfinite(self.mean))

    @property
    def under(self):
        """The verdict: the bounds' where they decide, else (at the last look) the point estimate's."""
        return math.isfinite(self.mean) and (self.high < math.log(self.target) if self.decided
                                             else self.mean < math.log(self.target))

    def describe(self):
        """The perplexity with its bounds, in words (a ``Text``)."""
        lo, hi = self.interval
        return T("{perplexity:.3f} (each bound at {confidence:.0%} confidence: {low:.3f} to {high:.3f}; {windows} "
                 "windows, {chars:,} predicted characters)", perplexity=self.perplexity, confidence=self.confidence,
                 low=lo, high=hi, windows=self.windows, chars=self.chars)


def _exp(x):
    return math.exp(x) if x < 700 else math.inf


def bounds(losses, level, seq_len, target=None, confidence=CONFIDENCE, last=False, margin=0.0):
    """The ``Estimate`` of the mean of ``losses`` (per-window mean losses), bounded on each side by Student's t at
    one-sided ``level``, each bound moved out by ``margin`` nats (the error of a lower precision)."""
    losses = [float(v) for v in losses]
    n = len(losses)
    if not all(math.isfinite(v) for v in losses):  # a wrecked model: infinite (or not a number) on some window
        return Estimate(n, seq_len, math.inf, math.inf, math.inf, math.inf, target, confidence, last)
    mean = math.fsum(losses) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in losses) / (n - 1)) if n > 1 else math.inf
    # the spread taken at its conservative side: the sample's sd understates it most often when the mean is low
    # (right-skewed losses), the way a false pass happens
    half = t_quantile(level, n - 1) * sd * (1 + SD_MARGIN / math.sqrt(n)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(n, seq_len, mean, sd, mean - half - margin, mean + half + margin, target, confidence, last)


class Sequential:
    """The sequential test of "perplexity under ``target``": ``next_look()`` says how many windows to have measured
    before asking again; ``look(losses)`` gives the ``Estimate`` there, ``decided`` once its bounds exclude the
    target (or at the last look, where the point estimate decides)."""

    def __init__(self, target, seq_len, looks=LOOKS, confidence=CONFIDENCE, margin=0.0):
        self.target, self.seq_len, self.looks, self.confidence, self.margin = target, seq_len, looks, confidence, margin
        self.level = 1 - (1 - confidence) / len(looks)  # one-sided, per look and side (Bonferroni)

    def next_look(self, measured):
        """Windows to have measured at the next look after ``measured``; None past the last."""
        return next((n for n in self.looks if n > measured), None)

    def look(self, losses):
        return bounds(losses, self.level, self.seq_len, self.target, self.confidence, len(losses) >= self.looks[-1],
                      self.margin)

    def stop(self, estimate):
        return estimate.decided or estimate.last


def interval(losses, seq_len, confidence=CONFIDENCE):
    """The ``Estimate`` of a fixed sample (the validation windows): each side at ``confidence``."""
    return bounds(losses, confidence, seq_len, confidence=confidence, last=True)


class OutOfTime(Exception):
    """The deadline passed before the test could decide; ``estimate`` says what the windows measured so far say
    (None before two)."""

    def __init__(self, estimate):
        super().__init__("out of time")
        self.estimate = estimate


def run(test, measure, chunk, deadline=None):
    """Measure windows until ``test`` stops: ``measure(i, j)`` gives the per-window losses of windows ``i`` to
    ``j - 1``, at most ``chunk`` at a time (it may raise ``OutOfTime`` itself). Before each chunk, past ``deadline``
    (``time.monotonic()``) raises ``OutOfTime``. Returns ``(the last Estimate, the losses)``."""
    losses = []
    while True:
        n = test.next_look(len(losses))
        while len(losses) < n:
            if deadline is not None and time.monotonic() > deadline:
                raise OutOfTime(test.look(losses) if len(losses) > 1 else None)
            try:
                got = measure(len(losses), min(n, len(losses) + chunk))
            except OutOfTime as e:  # a measurement cut short by the deadline: with what the windows so far say
                raise OutOfTime(e.estimate or (test.look(losses) if len(losses) > 1 else None)) from None
            losses.extend(got)
        estimate = test.look(losses)
        if test.stop(estimate):
            return estimate, losses
