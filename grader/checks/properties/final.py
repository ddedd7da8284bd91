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
"""
import secrets

import torch

from grader.compare import require, require_tensor
from grader.harness import call, check, only
from kit.checkpoint import CheckpointError, read_model
from kit.corpus import CharTokenizer, DataError, find, split
from kit.outcome import CheckFailure, Kind
from kit.perplexity import SEED, TRAIN_CHARS, VAL_CHARS, batch, exp_mean, nll_sum, windows
from kit.syllabus import CURRICULUM, TARGET_PERPLEXITY

BATCH = 8  # windows per forward call
CHUNK = 128  # windows per request to the worker (16 calls): a few seconds each, a few MB of logits
AGREE = 4  # windows on which the submission's model must give the reference's logits
TRAIN_HINT = ("run `make train` (it stops by itself once under 2.5; about half an hour on 2 CPU cores, minutes on "
              "a GPU: BENCHMARKS.md has the measured times)")


def fail(checked, got, hint, expected=None, kind=Kind.WRONG_VALUE):
    raise CheckFailure(checked, expected, got, hint, kind=kind)


def student_logits(sub, weights, vocab, xs, what, timeout=120):
    """Logits of the submission's TransformerLM, loaded strictly with the checkpoint's weights (every thread: the
    grader waits meanwhile)."""
    got = only(sub, "decoder", "TransformerLM", what, init=([vocab], dict(CURRICULUM)), load=weights,
               calls=[call(x) for x in xs], timeout=timeout, threads=sub.threads)
    return [require_tensor(r["output"], (*x.shape, vocab), what, "logits must be (B, T, vocab_size)")
            for x, r in zip(xs, got["results"])]


def desk_perplexity(sub, weights, vocab, split_ids, n_chars, seed, label):
    """The perplexity from the submission's own logits, in requests of CHUNK windows (no logits kept)."""
    T = CURRICULUM["max_seq_len"]
    starts = windows(len(split_ids), T, n_chars, seed)
    total, count = 0.0, 0
    for i in range(0, len(starts), CHUNK):
        batches = [batch(split_ids, starts[j:j + BATCH], T) for j in range(i, min(i + CHUNK, len(starts)), BATCH)]
        outs = student_logits(sub, weights, vocab, [xb for xb, _ in batches],
                              f"TransformerLM with your checkpoint on {label} windows")
        for (_, yb), logits in zip(batches, outs):
            total, count = total + nll_sum(logits, yb), count + yb.numel()
    return exp_mean(total, count), count


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
        e = f"{e.filename}: {e.strerror.lower()}" if isinstance(e, OSError) and e.strerror else e
        # the grading's own input, not the submission: at the desk `make data` restores it, a course grader is broken
        fail("the TinyShakespeare corpus the check measures on", str(e), "run `make data` to restore it; on the "
             "course's grader, please tell the course staff", kind=Kind.GRADER_ERROR)


@check(15)
def check_tinyshakespeare_perplexity(sub, ref, grading):
    """Your trained model: training-split perplexity < 2.5 on TinyShakespeare, causal, the curriculum's 4 x 256"""
    text = corpus(grading)
    tok = CharTokenizer.from_text(text)
    V, T = tok.vocab_size, CURRICULUM["max_seq_len"]
    shapes, _ = ref.template("decoder", "TransformerLM", (V,), dict(CURRICULUM))
    path, shown = grading.checkpoint, grading.checkpoint_shown
    if path is None or not path.is_file():
        fail("the checkpoint of your trained model", f"no file at {shown}", TRAIN_HINT + ", then `make check` again; "
             "to hand it in through git, commit it explicitly (runs/ is ignored): `git add -f runs/final.pt`",
             "runs/final.pt (or --checkpoint PATH)", Kind.NOT_IMPLEMENTED)
    try:
        info, weights = read_model(path, {k: s for k, (s, _) in shapes.items()}, shown)
    except CheckpointError as e:
        fail("the checkpoint of your trained model", str(e), "train the curriculum's model with `make train`; do not "
             "edit the file", "a checkpoint of the curriculum's 4 x 256 TransformerLM", Kind.WRONG_STRUCTURE)
    weights = {k: v.float() for k, v in weights.items()}
    tied = ("embed_tokens.weight", "lm_head.weight")
    require(all(k in weights for k in tied) and torch.equal(weights[tied[0]], weights[tied[1]]),
            "the checkpoint's tied weights (embed_tokens.weight and lm_head.weight)", "the same matrix",
            "two different matrices", "the head is tied to the embedding: train the curriculum's model with `make "
            "train`; do not edit the file", Kind.WRONG_STRUCTURE)
    require(info.get("config") == CURRICULUM, "the checkpoint's model configuration", str(CURRICULUM),
            str(info.get("config")), "train the curriculum's model: `make train` with the default sizes",
            Kind.WRONG_STRUCTURE)
    require(info.get("vocab") == "".join(tok.chars), "the checkpoint's vocabulary",
            f"the corpus's {V} characters", "another vocabulary", "train on data/tinyshakespeare.txt with `make train`",
            Kind.WRONG_STRUCTURE)
    train_ids, val_ids = split(tok.ids(text))

    # the submission's own model, loaded with the checkpoint, in one request: on a causality probe (the second half
    # of two windows changed) and, where the reference measures, on training windows drawn afresh for this grading
    x, _ = batch(train_ids, windows(len(train_ids), T, 2 * T, SEED + 7), T)
    x2 = x.clone()
    x2[:, T // 2:] = (x2[:, T // 2:] + 1 + torch.arange(T - T // 2) % (V - 1)) % V
    model = reference_model(ref, V, weights)
    picks = sorted(secrets.SystemRandom().sample(range(-(-TRAIN_CHARS // T)), AGREE)) if model is not None else []
    probes, what = [x, x2], "TransformerLM with your checkpoint on a causality probe"
    if picks:  # the measurement's own windows (kit.perplexity.windows), those it keeps the logits of
        probes.append(batch(train_ids, windows(len(train_ids), T, TRAIN_CHARS, SEED)[picks], T)[0])
        what += " and on sampled training windows"
    y, y2, *sampled = student_logits(sub, weights, V, probes, what)

    # 1. causal: changing the second half of a window must not move the logits of the first half
    err = (y[:, :T // 2] - y2[:, :T // 2]).abs().max().item()
    require(err <= 1e-4, "logits at positions < 128 after changing the characters at positions >= 128",
            "unchanged (tolerance 1e-4)", f"changed by up to {err:.3g}",
            "the model must not see the future: check the attention mask")

    # 2. the perplexity with teacher forcing over full windows
    if model is not None:  # computed here, from the weights: nothing the submission says counts (grader/measure.py)
        from grader.measure import measure
        ppl, n_train, kept = measure(model, train_ids, TRAIN_CHARS, SEED, T, TARGET_PERPLEXITY, keep=set(picks),
                                     threads=grading.threads)
        val_ppl, n_val, _ = measure(model, val_ids, VAL_CHARS, SEED + 1, T, threads=grading.threads)
    else:  # at the desk: the student's own model computes the logits (in its sandbox), the numbers are made here
        ppl, n_train = desk_perplexity(sub, weights, V, train_ids, TRAIN_CHARS, SEED, "training-split")
        val_ppl, n_val = desk_perplexity(sub, weights, V, val_ids, VAL_CHARS, SEED + 1, "validation-split")

    # 3. the submission's own model gives the reference's logits on the sampled windows
    if picks:
        if not torch.equal(torch.stack([kept[i][0] for i in picks]), probes[2]):
            raise RuntimeError("the sampled windows sent to the submission are not the ones measured")
        expected = torch.stack([kept[i][1] for i in picks])
        diff = (sampled[0] - expected).abs().max().item()
        scale = expected.abs().max().item()
        require(diff <= 1e-3 + 1e-4 * scale, "your model's logits against the reference transformer with the same "
                "weights", "the same logits (tolerance 1e-3)", f"max abs difference {diff:.3g} on sampled training "
                "windows", "the module checks above say where your model differs; fix those first")

    minutes = info.get("elapsed")
    grading.measure(perplexity=round(ppl, 4), val_perplexity=round(val_ppl, 4),
                    minutes=round(minutes / 60, 1) if isinstance(minutes, (int, float)) else None)
    summary = (f"training-split perplexity {ppl:.3f} over {n_train:,} predicted characters (validation split: "
               f"{val_ppl:.3f} over {n_val:,}; the gap is the model fitting its training text)")
    if grading.corpus:
        summary += f" [measured on {grading.corpus}, not on TinyShakespeare]"
    grading.note(summary)
    require(ppl < TARGET_PERPLEXITY,
            f"perplexity = exp(mean cross-entropy) over {n_train:,} training-split characters, full {T}-character "
            "windows", f"< {TARGET_PERPLEXITY}", f"{ppl:.3f} (validation {val_ppl:.3f})",
            "train longer: `make train ARGS=--resume` continues your run (in the notebook: RESUME = True)")
