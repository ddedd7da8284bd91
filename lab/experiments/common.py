"""What the six experiments share: budgets, seeded training runs, gradient norms, output files.

Every run of an experiment trains (or only inits) a small character-level model on
TinyShakespeare. Runs of one experiment share the seed, so they start from the same
random stream and see the same batches in the same order: the only difference between
two curves is the wiring under test. Each finished run is cached as JSON under
``<out>/cache/`` (keyed by its settings and the implementation's source), so an
interrupted ``python -m lab.experiments`` picks up where it stopped.
"""
import csv
import hashlib
import io
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kit.corpus import load_splits
from kit.files import atomic_write, write_text
from kit.i18n import N_, _
from kit.loader import load_impl
from kit.syllabus import MODULES

from ..variants import VariantLM

CACHE_VERSION = 2  # 2: the wiring names its init
WIRING_DEFAULTS = dict(norm="pre", residual=True, attention=True, ffn=True, order="attn_ffn", init="small")


@dataclass(frozen=True)
class Budget:
    """Model and data sizes of one budget; experiments scale their steps with ``pick``."""

    name: str
    hidden_size: int
    num_heads: int
    seq_len: int
    batch_size: int
    eval_batches: int  # validation batches per evaluation (fixed, the same for every run)
    lr: float  # AdamW learning rate of the experiments that do not study the learning rate


BUDGETS = {
    # The tests' budget: seconds per experiment, enough for the physics to show.
    "tiny": Budget("tiny", hidden_size=32, num_heads=2, seq_len=32, batch_size=8, eval_batches=4, lr=3e-3),
    # The learner's budget: about 1-3 minutes per experiment on 2 CPU cores.
    "full": Budget("full", hidden_size=64, num_heads=4, seq_len=32, batch_size=16, eval_batches=8, lr=1e-3),
}


@dataclass
class Result:
    """What an experiment returns: a table, a figure, what it shows, and the numbers tests read."""

    name: str
    title: str
    table: list  # rows (dicts) of the summary table: <name>.md
    series: list  # rows (dicts) of the data behind the plot: <name>.csv
    figure: object  # a matplotlib Figure: <name>.png
    findings: list = field(default_factory=list)  # one-line conclusions, with the measured numbers
    claim: str = ""  # what the curriculum says this experiment shows
    verdict: list = field(default_factory=list)  # does the claim hold here, and under which conditions
    data: dict = field(default_factory=dict)  # raw numbers for the tests
    seconds: float = 0.0
    note: str = ""  # how the result was made (runs from the cache), for the table's header


def source_hash(folder):
    """Hash of the implementation's five files, so the cache notices an edited implementation."""
    h = hashlib.sha1()
    for m in MODULES:
        p = Path(folder) / f"{m}.py"
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()[:16]


def fmt(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4)) else f"{v:.3f}"
    return str(v)


# The columns of the experiments' summary tables: the rows' keys stay English (the data, what tests read), the
# header of a table written (<name>.md) is in the language in force.
COLUMNS = (N_("model"), N_("layers"), N_("residual"), N_("params"), N_("train loss (last 20%)"), N_("val loss"),
           N_("vs full"), N_("stream RMS after last block"), N_("grad first/last at init"),
           N_("grad first/last trained"), N_("grad first/last block"), N_("grad first/last at step 30"),
           N_("wiring"), N_("first/last at init"), N_("first/last trained"), N_("first block trained"),
           N_("last block trained"), N_("regime"), N_("warm-up"), N_("ms/step"), N_("seconds"))


def listing(items):
    """``items`` (strings) as one list in a sentence: ``a, b, c`` in English."""
    return _(", ").join(items)


def markdown_table(rows):
    cols = list(rows[0])
    lines = ["| " + " | ".join(_(c) if c in COLUMNS else c for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(rows):
    cols = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def blocks_of(model):
    return model.blocks if hasattr(model, "blocks") else model.decoder.blocks


@torch.no_grad()
def stream_rms(model, x):
    """RMS of the residual stream after each block (what the next block receives), on the batch ``x``."""
    out = []
    hooks = [b.register_forward_hook(lambda m, i, o: out.append(float(o.float().pow(2).mean().sqrt())))
             for b in blocks_of(model)]
    try:
        model.eval()
        model(x)
        model.train()
    finally:
        for h in hooks:
            h.remove()
    return out


def block_grad_norms(model):
    """L2 norm of the gradient of all parameters of each block: [block 0, ..., block L-1]."""
    out = []
    for b in blocks_of(model):
        sq = sum(float(p.grad.double().pow(2).sum()) for p in b.parameters() if p.grad is not None)
        out.append(math.sqrt(sq))
    return out


class Lab:
    """One implementation, one budget, one seed: builds, trains and caches the experiments' runs."""

    def __init__(self, impl_dir, budget="full", seed=0, out="runs/experiments", cache=True, progress=True,
                 data_path=None, fresh=False):
        self.impl_dir = Path(impl_dir)
        self.impl = load_impl(impl_dir)
        self.budget = BUDGETS[budget]
        self.seed = seed
        self.out = Path(out)
        self.cache = cache  # False: neither read nor write runs/experiments/cache
        self.fresh = fresh  # True: ignore runs cached before this Lab, but share the runs it trains itself
        self._trained_here = set()
        self.progress = progress
        self.tok, self.train_ids, self.val_ids = load_splits(data_path)
        self.vocab_size = self.tok.vocab_size
        self.impl_hash = source_hash(impl_dir)
        self._val = None
        self.runs_cached = self.runs_trained = 0  # counters, for the report

    def entropies(self):
        """``(unigram, bigram)`` entropy of the training text in nats/char: the loss of a model that knows
        only how common each character is, and the best loss of one that sees only the current character."""
        if not hasattr(self, "_entropies"):
            ids = self.train_ids.tolist()
            n = len(ids)
            uni = Counter(ids)
            pairs = Counter(zip(ids[:-1], ids[1:]))
            firsts = Counter(ids[:-1])
            h1 = -sum(c / n * math.log(c / n) for c in uni.values())
            h2 = -sum(c / (n - 1) * math.log(c / firsts[a]) for (a, _), c in pairs.items())
            self._entropies = (h1, h2)
        return self._entropies

    def pick(self, tiny, full):
        return tiny if self.budget.name == "tiny" else full

    # -- models and data -------------------------------------------------------------------------------
    def variant(self, num_layers, seed=None, **wiring):
        """A seeded ``VariantLM`` of this budget's width, built from the learner's components."""
        b = self.budget
        torch.manual_seed(self.seed if seed is None else seed)
        return VariantLM(self.impl, self.vocab_size, num_layers, b.hidden_size, b.num_heads,
                         max_seq_len=b.seq_len, **wiring)

    def kit_model(self, num_layers):
        """The learner's own ``TransformerLM`` at this budget's width."""
        b = self.budget
        torch.manual_seed(self.seed)
        return self.impl.decoder.TransformerLM(self.vocab_size, num_layers=num_layers, hidden_size=b.hidden_size,
                                               num_heads=b.num_heads, max_seq_len=b.seq_len)

    def batch(self, gen, ids):
        b = self.budget
        ix = torch.randint(len(ids) - b.seq_len - 1, (b.batch_size,), generator=gen)
        x = torch.stack([ids[i:i + b.seq_len] for i in ix.tolist()])
        y = torch.stack([ids[i + 1:i + 1 + b.seq_len] for i in ix.tolist()])
        return x, y  # (B, T) each

    def val_batches(self):
        if self._val is None:
            gen = torch.Generator().manual_seed(1234)  # the same validation text for every run and seed
            self._val = [self.batch(gen, self.val_ids) for _ in range(self.budget.eval_batches)]
        return self._val

    def loss(self, model, x, y):
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model):
        model.eval()
        losses = [float(self.loss(model, x, y)) for x, y in self.val_batches()]
        model.train()
        return sum(losses) / len(losses)

    def backward_once(self, model, seed=None):
        """Fill ``model``'s gradients with those of one training batch (the first of the seed's stream)."""
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        x, y = self.batch(gen, self.train_ids)
        model.zero_grad(set_to_none=True)
        self.loss(model, x, y).backward()
        return model

    # -- training ----------------------------------------------------------------------------------------
    def train(self, experiment, label, steps, layers, model="variant", lr=None, warmup=0, grad_steps=(), evals=5,
              shown=None, **wiring):
        """Train a model for ``steps`` AdamW steps; return the run as a dict (cached).

        ``model="variant"``: a ``VariantLM`` of ``layers`` blocks wired by ``wiring`` (see lab/variants.py);
        ``model="kit"``: the learner's own ``TransformerLM``.
        ``warmup``: linear learning-rate warm-up over that many steps, then constant ``lr``.
        ``grad_steps``: steps at which to record per-block gradient norms (0 = at initialisation).
        ``label`` names the run in the data (the CSV, the cache's run); ``shown`` is how its progress bar names it,
        in the language in force (default: ``label`` translated, where the catalog has it).
        No gradient clipping: the experiments are about what the wiring does to the gradient.
        """
        b = self.budget
        lr = b.lr if lr is None else lr
        if model == "variant":
            wiring = {**WIRING_DEFAULTS, **wiring}
        elif wiring:
            raise ValueError("the kit's TransformerLM has one wiring")
        # The key is what determines the run, not its label: experiments that need the same run share it.
        spec = dict(v=CACHE_VERSION, model=model, layers=layers, wiring=wiring, steps=steps, lr=lr, warmup=warmup,
                    grad_steps=sorted(grad_steps), evals=evals, budget=b.__dict__, seed=self.seed,
                    impl=self.impl_hash, torch=torch.__version__)
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        path = self.out / "cache" / f"{digest}.json"
        if self.cache and path.is_file() and (not self.fresh or path in self._trained_here):
            try:
                run = dict(json.loads(path.read_text()), label=label, cached=True)
                self.runs_cached += 1
                return run
            except (OSError, ValueError):
                pass  # a damaged cache file: train again
        model = self.variant(layers, **wiring) if model == "variant" else self.kit_model(layers)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
        gen = torch.Generator().manual_seed(self.seed)  # the same batches for every run of this seed
        eval_at = {round(steps * k / evals) for k in range(evals + 1)}
        probe = self.val_batches()[0][0]
        run = dict(label=label, params=sum(p.numel() for p in model.parameters()), train=[], val=[],
                   grads={}, diverged_at=None, stream_init=stream_rms(model, probe))
        t0 = time.time()
        # disable=None: a bar on a terminal, none in a log file
        bar = tqdm(range(steps + 1), desc=f"{experiment}: {shown or _(label)}", leave=False,
                   disable=None if self.progress else True, dynamic_ncols=True)
        for step in bar:
            if step in eval_at:
                run["val"].append([step, self.evaluate(model)])
            if step == steps:
                break
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
            x, y = self.batch(gen, self.train_ids)
            loss = self.loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step in grad_steps:
                run["grads"][str(step)] = block_grad_norms(model)
            if not math.isfinite(loss.item()):
                run["diverged_at"] = step  # a NaN loss poisons every later step: stop here
                break
            opt.step()
            run["train"].append([step, loss.item()])
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        run["seconds"] = time.time() - t0
        run["stream_final"] = stream_rms(model, probe) if run["diverged_at"] is None else None
        run["final_train"] = smoothed_final(run["train"])
        run["final_val"] = run["val"][-1][1] if run["val"] and run["diverged_at"] is None else float("nan")
        self.runs_trained += 1
        if self.cache:
            write_text(path, json.dumps(run))
            self._trained_here.add(path)
        return run


def late_steps(steps, window=10):
    """The last ``window`` steps: gradient norms are averaged over them (one batch is noisy)."""
    return range(max(0, steps - window), steps)


def late_grads(run, steps, window=10):
    """Per-block gradient norms averaged (geometric mean) over ``late_steps``; None if the run diverged."""
    rows = [run["grads"].get(str(s)) for s in late_steps(steps, window)]
    if any(r is None for r in rows):
        return None
    return [math.exp(sum(math.log(max(v, 1e-300)) for v in col) / len(col)) for col in zip(*rows)]


def smoothed_final(train, last=0.2):
    """Mean training loss over the last 20% of the steps (one batch is noisy)."""
    if not train:
        return float("nan")
    n = max(1, int(len(train) * last))
    return sum(v for _, v in train[-n:]) / n


def ema(values, alpha=0.1):
    out, m = [], None
    for v in values:
        m = v if m is None else (1 - alpha) * m + alpha * v
        out.append(m)
    return out


def curve_rows(runs):
    """The tidy CSV rows of training curves: run, step, train_loss (raw), val_loss (where evaluated)."""
    rows = []
    for r in runs:
        val = dict((s, v) for s, v in r["val"])
        for s, v in r["train"]:
            rows.append({"run": r["label"], "step": s, "train_loss": v, "val_loss": val.pop(s, "")})
        rows += [{"run": r["label"], "step": s, "train_loss": "", "val_loss": v} for s, v in val.items()]
    return rows


def plot_curves(ax, runs, title, styles=None, unigram=None):
    """Smoothed training loss (lines) and validation loss (dots) of several runs.

    ``unigram``: draw the unigram entropy, the plateau of a model that learned only character frequencies.
    """
    if unigram is not None:
        ax.axhline(unigram, color="gray", ls=":", lw=1)
        ax.text(0, unigram, " unigram entropy", color="gray", fontsize=7, va="bottom")
    for i, r in enumerate(runs):
        style = (styles or {}).get(r["label"], {})
        steps = [s for s, _ in r["train"]]
        line, = ax.plot(steps, ema([v for _, v in r["train"]]), label=r["label"], lw=1.5, **style)
        if r["val"]:
            ax.plot([s for s, _ in r["val"]], [v for _, v in r["val"]], "o", ms=3.5, color=line.get_color())
        if r["diverged_at"] is not None:
            ax.annotate("diverged", (r["diverged_at"], ax.get_ylim()[1]), color=line.get_color(), fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/char)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def figure(ncols=1, width=5.2, height=3.8, nrows=1):
    """A figure and its axes, row by row in one flat list."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig, path):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


