"""Train the curriculum's 4 x 256 character model on TinyShakespeare.

    python -m lab.train [--impl exercises] [--out runs/final.pt] [--minutes 120] [--resume]
    python -m lab.train --upgrade runs/final.pt      # rewrite a checkpoint of an earlier kit in today's format

The model is built from the chosen implementation folder (your exercises, or the solutions).
Training stops once the perplexity on the training split is safely under the target (measured
as the final check measures it), or when the time budget is spent. A checkpoint is written
atomically every few minutes, at the end and on Ctrl-C; ``--resume`` continues exactly where it
stopped: same batches, same learning-rate schedule, same result. If the loss blows up (a spike, or
NaN), training goes back to the last healthy evaluation and goes on at half the learning rate.

What a run is and where it runs (device, compute dtype, optimizer) is decided once, in
``lab/config.py``; the checks of the command line happen before any training, so a run is never
lost to a bad option found at its end.
"""

import copy
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kit import checkpoint as ckpt
from kit.cli import ArgumentParser, UsageError, number, writable
from kit.corpus import CharTokenizer, DataError, find, split
from kit.i18n import _
from kit.outcome import render, said
from kit.perplexity import TRAIN_CHARS, perplexity, windows
from kit.syllabus import CURRICULUM, TARGET_PERPLEXITY

from .config import autocast, resolve, upgrade
from .model import ImplementationError, build, count_parameters, load
from .muon import MuonAdamW

EVAL_SHARE = 0.05  # roughly the part of the time that periodic evaluations and checkpoints take
SPIKE = 2.0  # an evaluation this many times the best training-split perplexity so far means the run diverged
MAX_ROLLBACKS = 3
# 32 windows estimate the perplexity to a few percent: from within 3% of the target, each evaluation (and
# the last one of a run) also measures 200,000 characters as the final check does, and training stops once
# that is 5% under the target. The final check's sequential test decides a model that far under in 128 to 256
# windows, one 2% under only from all 782 (4 times the grading's time, a quarter of a batch's throughput:
# BENCHMARKS.md, batch-checkpoints); the 3 points between cost about 140 steps, 4% of a run.
CONFIRM_BELOW, STOP_BELOW = 1.03, 0.95


POSITIVE, COUNT, FRACTION = number(float, 0, False), number(int, 1), number(float, 0, True, 1)


def parse(argv=None):
    p = ArgumentParser(prog="python -m lab.train", description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="exercises", help="implementation folder (default: %(default)s)")
    p.add_argument("--out", default="runs/final.pt", help="checkpoint path (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--upgrade", metavar="PATH", help="rewrite a checkpoint of an earlier kit in today's format, then stop")
    p.add_argument("--data", help="corpus file (default: data/tinyshakespeare.txt or $TINYSHAKESPEARE)")
    # The schedule is --schedule-steps long, or shorter where --minutes would not fit it (a slow machine).
    # Muon (a CPU's choice) fits the text in about 40% of AdamW's steps: BENCHMARKS.md has the trials.
    p.add_argument("--minutes", type=POSITIVE, default=120.0,
                   help="time budget for this run: the schedule is shortened to fit it; training stops earlier "
                        "once under the target (default: %(default)s)")
    p.add_argument("--schedule-steps", type=COUNT,
                   help="longest learning-rate schedule, in steps, on a machine fast enough (default: 10,000 with "
                        "adamw, 3,800 with muon)")
    p.add_argument("--steps", type=COUNT, help="plan exactly this many steps instead of planning from --minutes")
    p.add_argument("--target", type=POSITIVE, default=TARGET_PERPLEXITY,
                   help="stop once training-split perplexity is below this")
    p.add_argument("--no-early-stop", action="store_true", help="run the whole schedule even below the target")
    p.add_argument("--batch-size", type=COUNT, default=8)
    p.add_argument("--optimizer", default="auto", choices=["auto", "adamw", "muon"],
                   help="muon: Muon for the hidden matrices, AdamW for the rest (lab/muon.py); auto: muon on a "
                        "CPU, adamw on a GPU, as measured in BENCHMARKS.md (default: %(default)s)")
    p.add_argument("--lr", type=POSITIVE, help="peak learning rate (default: 2e-3)")
    p.add_argument("--min-lr-ratio", type=FRACTION, default=0.1, help="final learning rate as a fraction of the peak")
    p.add_argument("--embed-lr-scale", type=POSITIVE, default=3.0,
                   help="muon: the learning rate of the AdamW group (tied embedding, norm gains) as a multiple of "
                        "the schedule's (default: %(default)s)")
    p.add_argument("--warmup", type=number(int, 0), default=100, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=number(float, 0), default=0.0)
    p.add_argument("--grad-clip", type=number(float, 0), default=1.0)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--eval-every", type=COUNT, default=100,
                   help="steps between evaluations (each a second or two; the run stops at the first one under the "
                        "target) (default: %(default)s)")
    p.add_argument("--eval-windows", type=COUNT, default=32, help="windows per split in the periodic evaluation")
    p.add_argument("--save-every", type=POSITIVE, default=5.0, help="minutes between checkpoints")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bf16 autocast or plain fp32 (auto: bf16 where the device computes it natively; "
                        "with --resume, the checkpoint's)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the training forward pass, before the clock starts (auto: for runs of 10 "
                        "minutes or more on a CPU with a C++ compiler, or on a GPU; falls back to eager if "
                        "compiling fails)")
    p.add_argument("--threads", type=COUNT, help="CPU threads (default: all cores)")
    # model size: the final check wants the curriculum's model; smaller ones are for quick experiments and tests
    p.add_argument("--layers", type=COUNT, default=CURRICULUM["num_layers"])
    p.add_argument("--hidden", type=COUNT, default=CURRICULUM["hidden_size"])
    p.add_argument("--heads", type=COUNT, default=CURRICULUM["num_heads"])
    p.add_argument("--seq-len", type=COUNT, default=CURRICULUM["max_seq_len"])
    p.add_argument("--stop-at", type=COUNT, help="save and stop at this step (--resume continues)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_lang()
    return p.parse_args(argv)


def check_args(args):
    """What can be checked before training: the device, the output path (the run is never lost at its end)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError(_("--device cuda: no CUDA device here (--device auto picks what there is)"))
    if args.device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(_("--device mps: no Apple GPU here (--device auto picks what there is)"))
    out = Path(args.out)
    if not out.is_dir():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(_("--out {path}: cannot make its folder ({reason})").format(
                path=out, reason=e.strerror or e)) from None
    writable("--out", out, "final.pt", probe_bytes=1 << 20)  # about what a checkpoint needs at once
    if args.data is not None and Path(args.data).is_dir():
        raise UsageError(_("--data {path}: is a folder; give the corpus file").format(path=args.data))
    if args.heads and args.hidden % args.heads:
        raise UsageError(_("--hidden {hidden} is not divisible by --heads {heads}").format(hidden=args.hidden,
                                                                                            heads=args.heads))


def lr_at(step, total, peak, warmup, min_ratio):
    """Linear warm-up, then cosine decay to ``min_ratio * peak`` at ``total``; flat after it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Batches:
    """Random training windows from a seeded generator whose state goes into the checkpoint."""

    def __init__(self, ids, seq_len, batch_size, seed):
        self.ids, self.seq_len, self.batch_size = ids, seq_len, batch_size
        self.g = torch.Generator().manual_seed(seed)

    def next(self):
        starts = torch.randint(0, len(self.ids) - self.seq_len, (self.batch_size,), generator=self.g)
        offs = torch.arange(self.seq_len)
        return self.ids[starts[:, None] + offs], self.ids[starts[:, None] + offs + 1]


def load_corpus(path):
    """The verified TinyShakespeare, or (``--data``, for experiments and tests) any UTF-8 text file."""
    if path is None:
        return find().read_text(encoding="utf-8")
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(_("--data {path}: not UTF-8 text").format(path=path)) from None
    except OSError as e:
        raise DataError(_("--data {path}: cannot be read ({reason})").format(path=path, reason=e.strerror or e)) \
            from None


def make_optimizer(model, config):
    """The run's optimizer, built last, from the decided configuration."""
    a = config.args
    if config.optimizer == "muon":
        return MuonAdamW(model, lr=a.lr, betas=(0.9, 0.95), weight_decay=a.weight_decay, ns_dtype=config.ns_dtype,
                         adamw_lr_scale=a.embed_lr_scale)
    return torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=a.weight_decay)


def for_this_run(opt_state, config):
    """The saved optimizer state with Newton-Schulz in this run's dtype (the precision may have changed)."""
    if config.optimizer != "muon":
        return opt_state
    groups = [dict(g, ns_dtype=config.ns_dtype) if g.get("muon") else g for g in opt_state["param_groups"]]
    return {**opt_state, "param_groups": groups}


class Trainer:
    def __init__(self, args):
        self.out = Path(args.out)
        state = upgrade(ckpt.load(self.out, legacy=True)) if args.resume else None
        if state is not None and not {"optimizer", "batch_rng", "args"} <= set(state):
            raise ckpt.CheckpointError(_("{path}: holds weights only, it cannot be resumed").format(path=self.out))
        self.config = config = resolve(args, state)
        self.args, self.device = args, config.device
        for note in config.notes:
            print(note)
        if args.threads:
            torch.set_num_threads(args.threads)
        text = load_corpus(args.data)
        self.tok = CharTokenizer(state["vocab"]) if state else CharTokenizer.from_text(text)
        try:
            ids = self.tok.ids(text)
        except ValueError as e:
            raise DataError(_("the corpus does not match the checkpoint's vocabulary ({error})").format(error=render(said(e)))) \
                from None
        self.train_ids, self.val_ids = split(ids)
        self.seq_len = config.model["max_seq_len"]
        if len(self.train_ids) <= self.seq_len + 1 or len(self.val_ids) <= self.seq_len + 1:
            raise DataError(_("the corpus is too short for windows of {n} characters").format(n=self.seq_len))
        self.impl = load(args.impl)
        torch.manual_seed(args.seed)
        self.model = build(self.impl, self.tok.vocab_size, config.model).to(self.device)
        self.batches = Batches(self.train_ids, self.seq_len, args.batch_size, args.seed)
        self.step, self.total, self.budget_end, self.elapsed, self.history = 0, None, None, 0.0, []
        self.lr_scale, self.rollbacks, self.good = 1.0, 0, None
        self.eval_starts = {
            "train": windows(len(self.train_ids), self.seq_len, args.eval_windows * self.seq_len, args.seed + 1),
            "val": windows(len(self.val_ids), self.seq_len, args.eval_windows * self.seq_len, args.seed + 2),
        }
        try:
            if state:
                self.model.load_state_dict(state["model"])
            self.opt = make_optimizer(self.model, config)
            if state:
                self.opt.load_state_dict(for_this_run(state["optimizer"], config))
        except (RuntimeError, ValueError, KeyError) as e:
            raise ckpt.CheckpointError(_("{path}: does not fit this implementation ({error})").format(
                path=self.out, error=str(e)[:160])) from None
        if state:
            self.batches.g.set_state(state["batch_rng"])
            torch.set_rng_state(state["torch_rng"])
            self.step, self.total, self.elapsed = state["step"], state["total_steps"], state["elapsed"]
            self.budget_end, self.history = state.get("budget_end"), state["metrics"]
            self.lr_scale, self.rollbacks = state["lr_scale"], state["rollbacks"]
        self.fwd = torch.compile(self.model) if config.compile else self.model

    @property
    def precision(self):
        return self.config.precision

    # -- checkpoints -----------------------------------------------------------

    def state(self):
        return {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "config": self.config.model,
            "vocab": "".join(self.tok.chars), "step": self.step, "total_steps": self.total,
            "budget_end": self.budget_end, "elapsed": self.elapsed, "batch_rng": self.batches.g.get_state(),
            "torch_rng": torch.get_rng_state(), "metrics": self.history, "precision": self.precision,
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "impl": str(Path(self.args.impl).resolve()),
            "args": {k: v for k, v in vars(self.args).items() if isinstance(v, (int, float, str, bool))},
        }

    def save(self):
        """Write the checkpoint; if that fails (a full disk, a folder gone), keep the run in a rescue file and say
        so (``saved_to`` is where it went)."""
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the write short
        try:
            state = self.state()
            try:
                ckpt.save(state, self.out)
                self.saved_to = self.out
            except OSError as e:
                rescue = Path(tempfile.gettempdir()) / f"{self.out.stem}-rescue-{os.getpid()}.pt"
                try:
                    ckpt.save(state, rescue)
                except OSError:
                    raise ckpt.CheckpointError(_("cannot write {path} ({reason}), nor a rescue copy in {folder}: free "
                                                 "some space and train again").format(
                        path=self.out, reason=e.strerror or e, folder=rescue.parent)) from None
                self.saved_to = rescue
                print(_("error: cannot write {path} ({reason}); the run is kept in {rescue}: move it to {path} and "
                        "continue with --resume").format(path=self.out, reason=e.strerror or e, rescue=rescue),
                      file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old)

    # -- training ------------------------------------------------------------

    def autocast(self):
        """bfloat16 autocast where the run computes in it (lab/config.py)."""
        return autocast(self.device, self.config.dtype == torch.bfloat16)

    def train_step(self):
        a = self.args
        lr = lr_at(self.step, self.total or 10 ** 9, a.lr, a.warmup, a.min_lr_ratio) * self.lr_scale
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y = self.batches.next()
        x, y = x.to(self.device), y.to(self.device)
        with self.autocast():
            try:
                logits = self.fwd(x)
            except Exception as e:  # noqa: BLE001  (compiling failed: go on without it)
                if self.fwd is self.model:
                    raise
                print(_("note: torch.compile failed ({error}); training without it").format(error=type(e).__name__),
                      file=sys.stderr)
                self.fwd = self.model
                logits = self.fwd(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def compile_first(self):
        """Compile the training step (forward and backward) now, before the clock starts, saying so while it runs:
        torch.compile works in the first call, 20-150 s on a CPU that --minutes must not count as training. A
        window of the text, no optimizer step, no random draw: the run goes on exactly as without it."""
        if self.fwd is self.model:
            return
        b, t = self.args.batch_size, self.seq_len
        x = self.train_ids[: b * t + 1]
        x, y = x[:-1].view(b, t).to(self.device), x[1:].view(b, t).to(self.device)
        t0 = time.perf_counter()
        with Status(_("compiling the model (torch.compile, once a run; not counted as training)"), self.args.quiet):
            try:
                with self.autocast():
                    logits = self.fwd(x)
                F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).backward()
            except Exception as e:  # noqa: BLE001  (compiling failed: go on without it)
                print(_("note: torch.compile failed ({error}); training without it").format(error=type(e).__name__),
                      file=sys.stderr)
                self.fwd = self.model
            finally:
                self.model.zero_grad(set_to_none=True)
        if self.fwd is not self.model:
            took = time.perf_counter() - t0
            print(_("compiled in {seconds:.0f} s (not counted in the {minutes:g} minutes)").format(
                seconds=took, minutes=self.args.minutes) if self.budget_end is not None else
                  _("compiled in {seconds:.0f} s").format(seconds=took))

    def evaluate(self, starts=None, split_name="train"):
        ids = self.train_ids if split_name == "train" else self.val_ids
        with self.autocast():
            ppl, _windows = perplexity(self.model, ids, starts if starts is not None else self.eval_starts[split_name],
                                self.seq_len, device=self.device)
        return ppl

    def confirm(self):
        """Measure as the final check does (200,000+ predicted characters), with windows of another seed.
        In bf16 autocast it agrees with the final check's float32 to 0.01 % on the same windows (BENCHMARKS.md)."""
        starts = windows(len(self.train_ids), self.seq_len, TRAIN_CHARS, self.args.seed + 3)
        return self.evaluate(starts, "train")

    def plan(self):
        """How long the schedule is (``total``) and where this run stops (``end``).

        With --steps both are fixed. Otherwise the schedule ends when ``budget_end`` seconds of
        training have passed, and ``replan`` turns that into a step count from the measured speed,
        again and again as it settles (the first steps are slow, and a busy machine is slower). A
        resumed run keeps its plan; one resumed after its schedule ended goes on for --minutes more
        at the final learning rate.
        """
        a = self.args
        self.extending = False
        if a.steps is not None and not a.resume:
            self.total, self.budget_end = a.steps, None
        elif self.total is None:
            self.budget_end = a.minutes * 60 * (1 - EVAL_SHARE)
        elif self.step >= self.total:
            self.extending = True
            self.budget_end = self.elapsed + a.minutes * 60 * (1 - EVAL_SHARE)
            self.end = None
            return
        self.end = self.total

    def replan(self, per_step):
        if self.budget_end is None or not per_step:
            return
        left = max(1, round((self.budget_end - self.elapsed) / per_step))
        if self.extending:
            self.end = self.step + left
        else:
            self.total = self.end = min(self.step + left, max(self.step, self.config.schedule_steps))

    # -- divergence ------------------------------------------------------------

    def snapshot(self):
        """Remember this healthy state in memory (model, optimizer, batch position): ~40 MB for the 4 x 256."""
        self.good = {"step": self.step, "model": copy.deepcopy(self.model.state_dict()),
                     "optimizer": copy.deepcopy(self.opt.state_dict()), "batch_rng": self.batches.g.get_state(),
                     "history": len(self.history)}

    def spiked(self, train_ppl):
        """This evaluation (the last in the history) is non-finite or far above the best before it."""
        best = min((m["train_ppl"] for m in self.history[:-1]), default=None)
        return not math.isfinite(train_ppl) or (best is not None and train_ppl > SPIKE * best)

    def roll_back(self, bar, why):
        """Go back to the last healthy state and halve the learning rate; False once that has not helped."""
        self.rollbacks += 1
        g = self.good
        self.model.load_state_dict(g["model"])
        self.opt.load_state_dict(copy.deepcopy(g["optimizer"]))
        self.batches.g.set_state(g["batch_rng"])
        bad_step, self.step, self.history = self.step, g["step"], self.history[:g["history"]]
        bar.n = self.step
        if self.rollbacks > MAX_ROLLBACKS:
            return False
        self.lr_scale *= 0.5
        bar.write(_("step {step:>6}  {why}: back to step {good}, learning rate halved (now {scale:g} x the schedule; "
                    "{n} of {most})").format(step=bad_step, why=why, good=self.step, scale=self.lr_scale,
                                             n=self.rollbacks, most=MAX_ROLLBACKS))
        return True

    def run(self):
        a, c = self.args, self.config
        print(_("model: {params:,} parameters {config} from {impl}; device {device}, {precision}, {mode}, batch "
                "{batch} x {seq_len}, {optimizer}").format(
            params=count_parameters(self.model), config=c.model, impl=a.impl, device=self.device,
            precision=self.precision, mode="torch.compile" if c.compile else _("eager"), batch=a.batch_size,
            seq_len=self.seq_len, optimizer=c.optimizer))
        self.plan()
        self.compile_first()
        from tqdm import tqdm
        provisional = None if self.extending else c.schedule_steps  # until replan has measured a step
        bar = tqdm(total=self.end if self.end is not None else provisional, initial=self.step, disable=a.quiet,
                   unit="step", dynamic_ncols=True, smoothing=0.05)
        last_save = time.monotonic()
        ema, tokens, per_step, run_steps = None, a.batch_size * self.seq_len, None, 0
        deadline = time.monotonic() + a.minutes * 60 * 1.05
        self.snapshot()
        try:
            while self.end is None or self.step < self.end:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                self.elapsed += dt
                run_steps += 1
                if not math.isfinite(loss):
                    if not self.roll_back(bar, _("loss is {loss}").format(loss=loss)):
                        return self.give_up(bar)
                    ema = None
                    continue
                ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                if run_steps > 2:  # the first steps pay one-time costs
                    per_step = dt if per_step is None else 0.97 * per_step + 0.03 * dt
                    if run_steps < 20 or run_steps % 25 == 0:
                        self.replan(per_step)
                        bar.total = self.end
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3f}", ppl=f"{math.exp(min(ema, 99)):.2f}", tok_s=f"{tokens / dt:,.0f}",
                                refresh=False)
                if self.step % a.eval_every == 0 or self.step == self.end:
                    tr, va = self.evaluate(split_name="train"), self.evaluate(split_name="val")
                    self.history.append({"step": self.step, "elapsed": round(self.elapsed, 1), "train_ppl": tr,
                                         "val_ppl": va, "lr": self.opt.param_groups[0]["lr"]})
                    bar.write(_("step {step:>6}  train ppl {train:6.3f}  val ppl {val:6.3f}  ({minutes:.1f} min of "
                                "training)").format(step=self.step, train=tr, val=va, minutes=self.elapsed / 60))
                    if self.spiked(tr):
                        if not self.roll_back(bar, _("training-split perplexity jumped to {ppl:.3f}").format(ppl=tr)):
                            return self.give_up(bar)
                        ema = None
                        continue
                    self.snapshot()
                    if tr < a.target * CONFIRM_BELOW and not a.no_early_stop:
                        full = self.confirm()
                        bar.write(" " * 11 + _("confirmed on 200,000 training characters: perplexity {ppl:.3f}")
                                  .format(ppl=full))
                        self.history[-1]["confirmed_train_ppl"] = full
                        if full < a.target * STOP_BELOW:
                            bar.close()
                            return self.finish(_("training-split perplexity {ppl:.3f} < {target}").format(
                                ppl=full, target=a.target))
                if time.monotonic() - last_save > a.save_every * 60:
                    self.save()
                    last_save = time.monotonic()
                if time.monotonic() > deadline:
                    break
                if a.stop_at is not None and self.step >= a.stop_at:
                    bar.close()
                    self.save()
                    print(_("stopped at step {step} as asked: saved {path}; continue with --resume").format(
                        step=self.step, path=self.saved_to))
                    return 0 if self.saved_to == self.out else 1
        except KeyboardInterrupt:
            bar.close()
            self.save()
            print("\n" + _("interrupted at step {step}: saved {path}; continue with --resume").format(
                step=self.step, path=self.saved_to))
            return 130
        bar.close()
        reason = _("schedule finished") if self.end is not None and self.step >= self.end else _("time budget spent")
        last = self.history[-1] if self.history else {}
        near = last.get("step") == self.step and last["train_ppl"] < a.target * CONFIRM_BELOW
        if near and "confirmed_train_ppl" not in last:
            # near the target at the end: say where it stands as the final check measures it, not from 32 windows
            last["confirmed_train_ppl"] = self.confirm()
            print(_("measured on 200,000 training characters: perplexity {ppl:.3f}").format(
                ppl=last["confirmed_train_ppl"]))
        return self.finish(reason)

    def give_up(self, bar):
        bar.close()
        self.save()  # the last healthy state, so nothing trained is lost
        print(_("error: training diverged {n} times even at lower learning rates; saved the last healthy state "
                "(step {step}) to {path}. Look for a numerical problem in {impl} (the softmax in float32? the RMSNorm "
                "epsilon inside the square root?) or start again with a lower --lr").format(
            n=self.rollbacks, step=self.step, path=self.saved_to, impl=self.args.impl), file=sys.stderr)
        return 1

    def finish(self, reason):
        self.save()
        last = self.history[-1] if self.history else {}
        ppl = last.get("confirmed_train_ppl") or last.get("train_ppl")
        print(_("stopped: {reason}; step {step}, {minutes:.1f} min of training; saved {path}").format(
            reason=reason, step=self.step, minutes=self.elapsed / 60, path=self.saved_to))
        if ppl is not None and ppl >= self.args.target:
            print(_("training-split perplexity {ppl:.3f} is not under {target} yet: continue with "
                    "`python -m lab.train --impl {impl} --resume --minutes 15`").format(
                ppl=ppl, target=self.args.target, impl=self.args.impl))
        return 0 if self.saved_to == self.out else 1


class Status:
    """A status line that counts the seconds while something slow runs (a thread redraws it), or, with
    ``quiet``, one printed line."""

    def __init__(self, what, quiet=False):
        self.what, self.quiet = what, quiet

    def __enter__(self):
        import threading

        from tqdm import tqdm
        if self.quiet:
            print(f"{self.what} ...", flush=True)
            return self
        self.bar = tqdm(total=None, desc=self.what, bar_format="{desc}: {elapsed}", dynamic_ncols=True)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.thread.start()
        return self

    def _tick(self):
        every = 1.0 if sys.stderr.isatty() else 15.0  # a log or a notebook's pipe: a line every 15 s
        while not self.done.wait(every):
            self.bar.refresh()

    def __exit__(self, *exc):
        if not self.quiet:
            self.done.set()
            self.thread.join()
            self.bar.close()
        return False


def upgrade_file(path):
    """``--upgrade``: read a checkpoint of any earlier kit (the user's own file) and write it in today's format."""
    state = upgrade(ckpt.load(path, legacy=True))
    state.pop("format", None)
    ckpt.save(state, path)
    print(_("ok: {path} is in today's format ({format})").format(path=path, format=ckpt.FORMAT))
    return 0


def main(argv=None):
    args = parse(argv)
    try:
        if args.upgrade:
            return upgrade_file(args.upgrade)
        check_args(args)
        return Trainer(args).run()
    except UsageError as e:
        print(_("error: {message}").format(message=e), file=sys.stderr)
        return 2
    except (ckpt.CheckpointError, DataError, ImplementationError) as e:
        print(_("error: {message}").format(message=render(said(e))), file=sys.stderr)
        return 1
    except NotImplementedError as e:
        print(_("error: {impl} is not complete yet: {what} raises NotImplementedError (run `make check` to see what "
                "is left)").format(impl=args.impl, what=e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
