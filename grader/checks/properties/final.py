"""The closing project: a trained 4 x 256 model with training-split perplexity under 2.5.

Why the training split: published held-out results for character-level TinyShakespeare bottom
out near validation loss 1.47 nats (perplexity ~4.3) even for a 10.7M-parameter model, so no
4 x 256 model gets under 2.5 on held-out text. The bar measures how well the model fits the text
it was trained on; the validation perplexity is printed beside it to show the gap.

Where the reference is at hand (every graded flow), the perplexity is computed here, in the
grader's own process, from the checkpoint's weights loaded strictly into the reference model;
the submission's own model is only checked to be causal and to give the same logits on windows
drawn afresh. At the student's desk (the release ships no reference) the student's own model
computes the logits. Either way the checkpoint is read within ``kit.checkpoint``'s limits and
must hold exactly the curriculum model's weights.

How many windows: a sequential test (``kit.perplexity``) decides "under 2.5 or not" at 99 %
confidence from windows drawn at random with the grading's seed (secret in every graded flow), so a
model far from the bar costs 16 windows and one close to it the full 782. The check has a deadline
of its own (``--final-timeout``, ``FINAL_TIMEOUT`` seconds by default): past it the check stops with
``Kind.STARVED``, saying the machine ran out of time, and the finished checks keep their points.
"""
import secrets
import time

import torch

from grader.compare import require, require_tensor
from grader.harness import call, check, only
from kit.checkpoint import CheckpointError, read_model
from kit.control import sequential
from kit.corpus import CharTokenizer, DataError, find, split
from kit.machine import usable_threads
from kit.outcome import CheckFailure, Kind, T, said
from kit.perplexity import (
    CONFIDENCE,
    FINAL_TIMEOUT,
    LOOKS,
    SEED,
    TRAIN_CHARS,
    VAL_WINDOWS,
    OutOfTime,
    Sequential,
    batch,
    run,
    window_losses,
    window_seed,
    windows,
)
from kit.syllabus import CURRICULUM, TARGET_PERPLEXITY

BATCH = 8  # windows per forward call
CHUNK = 128  # windows per request to the worker at the desk: a few seconds each, a few MB of logits
AGREE = 4  # windows on which the submission's model must give the reference's logits (of the first look's)
CALL_TIMEOUT = 120  # seconds for one request to the worker, within the check's own deadline
# the hints that name `make` targets or git: classroom/notebook/grading.py (notebook_hints) swaps each, by its
# template (not its wording), for the notebook's own advice (the training cell, the check cells) in every language;
# a new hint of that kind belongs there too
TRAIN_HINT = T("run `make train` (it stops by itself once under 2.5; about half an hour on 2 CPU cores, minutes on "
               "a GPU: BENCHMARKS.md has the measured times)")
HANDIN_HINT = T("{train}, then `make check` again; to hand it in through git, commit it explicitly (runs/ is ignored): "
                "`git add -f runs/final.pt`", train=TRAIN_HINT)
RETRAIN_HINT = T("train the curriculum's model with `make train`; do not edit the file")
TIED_HINT = T("the head is tied to the embedding: train the curriculum's model with `make train`; do not edit the file")
SIZES_HINT = T("train the curriculum's model: `make train` with the default sizes")
CORPUS_HINT = T("train on data/tinyshakespeare.txt with `make train`")
RESUME_HINT = T("train longer: `make train ARGS=--resume` continues your run (in the notebook: RESUME = True)")
TIME_HINT = T("this is not a verdict on your model: the grading machine was too slow or too busy to finish the "
              "measurement in time; the course staff can give it more time (python -m grader --final-timeout S) "
              "or grade again when the machine is less busy")


def fail(checked, got, hint, expected=None, kind=Kind.WRONG_VALUE):
    raise CheckFailure(checked, expected, got, hint, kind=kind)


def student_logits(sub, weights, vocab, xs, what, deadline):
    """Logits of the submission's TransformerLM, loaded strictly with the checkpoint's weights (every thread: the
    grader waits meanwhile). A request cut short by the check's deadline (not by its own limit) is ``OutOfTime``."""
    timeout = min(CALL_TIMEOUT, max(1.0, deadline - time.monotonic()))
    try:
        got = only(sub, "decoder", "TransformerLM", what, init=([vocab], dict(CURRICULUM)), load=weights,
                   calls=[call(x) for x in xs], timeout=timeout, threads=usable_threads(sub.threads))
    except CheckFailure as e:
        if e.failure.kind is Kind.TIMED_OUT and timeout < CALL_TIMEOUT:
            raise OutOfTime(None) from None
        raise
    return [require_tensor(r["output"], (*x.shape, vocab), what, T("logits must be (B, T, vocab_size)"))
            for x, r in zip(xs, got["results"])]


class DeskMeasurement:
    """Per-window losses from the submission's own logits (at the desk, where no reference ships), in requests of
    at most CHUNK windows (no logits kept)."""

    def __init__(self, sub, weights, vocab, ids, starts, label, deadline):
        self.sub, self.weights, self.vocab, self.ids, self.starts = sub, weights, vocab, ids, starts
        self.label, self.deadline = label, deadline

    def __call__(self, i, j):
        seq_len = CURRICULUM["max_seq_len"]
        batches = [batch(self.ids, self.starts[k:min(k + BATCH, j)], seq_len) for k in range(i, j, BATCH)]
        outs = student_logits(self.sub, self.weights, self.vocab, [x for x, _ in batches],
                              T("TransformerLM with your checkpoint on {split} windows", split=self.label),
                              self.deadline)
        return [v for (_, y), logits in zip(batches, outs) for v in window_losses(logits, y).tolist()]


def reference_model(ref, V, weights):
    """The reference's TransformerLM holding ``weights`` (grader/measure.py); None without reference code (the
    release, whose student computes the perplexity with their own model)."""
    if not getattr(ref, "live", False):
        return None
    from grader.measure import reference_model as build  # never shipped to students: it holds a correct forward
    return build(ref, V, dict(CURRICULUM), weights)


def corpus(grading):
    try:  # --corpus (for the kit's own tests) takes any text; otherwise only the verified TinyShakespeare
        path = grading.corpus or find()
        return open(path, encoding="utf-8").read()
    except (DataError, OSError, UnicodeDecodeError) as e:
        # the system's own words for an unreadable file (its error text, as it is)
        got = T("{path}: {error}", path=str(e.filename), error=e.strerror.lower()) \
            if isinstance(e, OSError) and e.strerror else said(e)
        # the grading's own input, not the submission: at the desk `make data` restores it, a course grader is broken
        fail(T("the TinyShakespeare corpus the check measures on"), got, T("run `make data` to restore it; on the "
             "course's grader, please tell the course staff"), kind=Kind.GRADER_ERROR)


def out_of_time(budget, estimate):
    """The check's deadline passed before the measurement could decide: the machine's failure, not the model's."""
    so_far = (T("after {windows} of at most {most} windows the perplexity was {estimate}, not yet decided at "
                "{confidence:.0%} confidence", windows=estimate.windows, most=LOOKS[-1], estimate=estimate.describe(),
                confidence=CONFIDENCE) if estimate is not None else
              T("before the measurement had two windows"))
    fail(T("the final check's measurement, within its {budget:g} s", budget=budget),
         T("the time ran out: {so_far}", so_far=so_far), TIME_HINT, T("a verdict within {budget:g} s", budget=budget),
         Kind.STARVED)


@check(15)
def check_tinyshakespeare_perplexity(sub, ref, grading):
    """Your trained model: training-split perplexity < 2.5 on TinyShakespeare, causal, the curriculum's 4 x 256"""
    budget = getattr(grading, "final_timeout", None) or FINAL_TIMEOUT
    deadline = time.monotonic() + budget
    text = corpus(grading)
    tok = CharTokenizer.from_text(text)
    V, seq_len = tok.vocab_size, CURRICULUM["max_seq_len"]
    shapes, _ = ref.template("decoder", "TransformerLM", (V,), dict(CURRICULUM))
    path, shown = grading.checkpoint, grading.checkpoint_shown
    if path is None or not path.is_file():
        fail(T("the checkpoint of your trained model"), T("no file at {path}", path=str(shown)), HANDIN_HINT,
             T("runs/final.pt (or --checkpoint PATH)"), Kind.NOT_IMPLEMENTED)
    try:
        info, weights = read_model(path, {k: s for k, (s, _) in shapes.items()}, shown)
    except CheckpointError as e:
        fail(T("the checkpoint of your trained model"), said(e), RETRAIN_HINT,
             T("a checkpoint of the curriculum's 4 x 256 TransformerLM"), Kind.WRONG_STRUCTURE)
    weights = {k: v.float() for k, v in weights.items()}
    tied = ("embed_tokens.weight", "lm_head.weight")
    require(all(k in weights for k in tied) and torch.equal(weights[tied[0]], weights[tied[1]]),
            T("the checkpoint's tied weights (embed_tokens.weight and lm_head.weight)"), T("the same matrix"),
            T("two different matrices"), TIED_HINT, Kind.WRONG_STRUCTURE)
    require(info.get("config") == CURRICULUM, T("the checkpoint's model configuration"), str(CURRICULUM),
            str(info.get("config")), SIZES_HINT, Kind.WRONG_STRUCTURE)
    require(info.get("vocab") == "".join(tok.chars), T("the checkpoint's vocabulary"),
            T("the corpus's {n} characters", n=V), T("another vocabulary"),
            CORPUS_HINT, Kind.WRONG_STRUCTURE)
    train_ids, val_ids = split(tok.ids(text))
    # the windows, drawn at random from the grading's seed (secret in every graded flow, SEED at the desk): the
    # sequential test measures them in this order, as many as it needs
    starts = windows(len(train_ids), seq_len, TRAIN_CHARS, window_seed(grading.seed, "train"))

    # the submission's own model, loaded with the checkpoint, in one request: on a causality probe (the second half
    # of two windows changed) and, where the reference measures, on training windows of the first look (always
    # measured), picked afresh for this grading
    x, _ = batch(train_ids, windows(len(train_ids), seq_len, 2 * seq_len, SEED + 7), seq_len)
    x2 = x.clone()
    x2[:, seq_len // 2:] = (x2[:, seq_len // 2:] + 1 + torch.arange(seq_len - seq_len // 2) % (V - 1)) % V
    model = reference_model(ref, V, weights)
    picks = sorted(secrets.SystemRandom().sample(range(LOOKS[0]), AGREE)) if model is not None else []
    probes, what = [x, x2], T("TransformerLM with your checkpoint on a causality probe")
    if picks:
        probes.append(batch(train_ids, starts[picks], seq_len)[0])
        what = T("TransformerLM with your checkpoint on a causality probe and on sampled training windows")
    try:
        y, y2, *sampled = student_logits(sub, weights, V, probes, what, deadline)

        # 1. causal: changing the second half of a window must not move the logits of the first half
        err = (y[:, :seq_len // 2] - y2[:, :seq_len // 2]).abs().max().item()
        require(err <= 1e-4, T("logits at positions < 128 after changing the characters at positions >= 128"),
                T("unchanged (tolerance 1e-4)"), T("changed by up to {err:.3g}", err=err),
                T("the model must not see the future: check the attention mask"))

        # 2. the perplexity with teacher forcing over full windows, as many as the sequential test needs
        if model is not None:  # computed here, from the weights: nothing the submission says counts
            from grader.measure import measure, sample
            est, kept, precision = measure(model, train_ids, starts, seq_len, TARGET_PERPLEXITY, keep=picks,
                                           threads=usable_threads(grading.threads), deadline=deadline)
        else:  # at the desk: the student's own model computes the logits (in its sandbox), the numbers are made here
            desk = DeskMeasurement(sub, weights, V, train_ids, starts, T("training-split"), deadline)
            est = run(sequential(train_ids, starts, seq_len, TARGET_PERPLEXITY), desk, CHUNK, deadline)[0]
            precision = T("float32, by your own model (the student release has no reference)")
    except OutOfTime as e:
        out_of_time(budget, e.estimate)

    # 3. the submission's own model gives the reference's logits on the sampled windows
    if picks:
        if not torch.equal(torch.stack([kept[i][0] for i in picks]), probes[2]):
            raise RuntimeError("the sampled windows sent to the submission are not the ones measured")
        expected = torch.stack([kept[i][1] for i in picks])
        diff = (sampled[0] - expected).abs().max().item()
        scale = expected.abs().max().item()
        require(diff <= 1e-3 + 1e-4 * scale, T("your model's logits against the reference transformer with the same "
                "weights"), T("the same logits (tolerance 1e-3)"),
                T("max abs difference {diff:.3g} on sampled training windows", diff=diff),
                T("the module checks above say where your model differs; fix those first"))

    # 4. the validation split, beside it (never graded): as many windows as the verdict took (at most VAL_WINDOWS),
    # within what is left of the deadline
    val_starts = windows(len(val_ids), seq_len, min(VAL_WINDOWS, est.windows) * seq_len,
                         window_seed(grading.seed, "val"))
    if model is not None:
        val = sample(model, val_ids, val_starts, seq_len, threads=usable_threads(grading.threads), deadline=deadline)
    else:
        try:
            val = run(Sequential(None, seq_len, (len(val_starts),)),
                      DeskMeasurement(sub, weights, V, val_ids, val_starts, T("validation-split"), deadline), CHUNK,
                      deadline)[0]
        except OutOfTime as e:
            val = e.estimate

    ppl = est.perplexity
    val_ppl = val.perplexity if val is not None else None
    low, high = est.interval
    grading.measure(perplexity=round(ppl, 4), perplexity_low=round(low, 4), perplexity_high=round(high, 4),
                    windows=est.windows, val_perplexity=round(val_ppl, 4) if val_ppl is not None else None)
    how = (T("decided at {confidence:.0%} confidence", confidence=CONFIDENCE) if est.decided else
           T("too close to {target} to decide at {confidence:.0%} confidence: the full measurement's estimate decides",
             target=TARGET_PERPLEXITY, confidence=CONFIDENCE))
    summary = T("training-split perplexity {estimate}, {how}; measured in {precision}", estimate=est.describe(),
                how=how, precision=precision)
    if val is None:
        validation = T("validation split: not measured, the deadline came first")
    elif val.windows == len(val_starts):
        validation = T("validation split: {estimate}; the gap is the model fitting its training text",
                       estimate=val.describe())
    else:
        validation = T("validation split: {estimate}, cut short by the deadline; the gap is the model fitting its "
                       "training text", estimate=val.describe())
    summary = T("{summary} ({validation})", summary=summary, validation=validation)
    if grading.corpus:
        summary = T("{summary} [measured on {path}, not on TinyShakespeare]", summary=summary, path=str(grading.corpus))
    grading.note(summary)
    require(est.under,
            T("perplexity = exp(mean cross-entropy) over training-split windows of {length} characters drawn at "
              "random, as many as a sequential test needs to decide at {confidence:.0%} confidence", length=seq_len,
              confidence=CONFIDENCE), f"< {TARGET_PERPLEXITY}",
            T("{estimate}; {how} (validation {val:.3f})", estimate=est.describe(), how=how, val=val_ppl)
            if val_ppl is not None else T("{estimate}; {how}", estimate=est.describe(), how=how),
            RESUME_HINT)
