"""A training run's configuration, decided once.

``resolve(args, state)`` turns the command line and, on ``--resume``, the checkpoint into one
``RunConfig``: what the run *is* (its hyperparameters, the model, the schedule's length: from the
checkpoint when resuming, so that it continues exactly) and where it *runs* (device, compute
dtype, optimizer, compile: decided here, each with its reason). Everything after reads the
RunConfig; nothing re-derives a choice. ``upgrade(state)`` is the one place that reads checkpoints
written by earlier versions of the kit.
"""
import shutil
from dataclasses import dataclass, field

import torch

from kit.i18n import _
from kit.machine import cpu_has_bf16

SCHEDULE_STEPS = {"adamw": 10_000, "muon": 3_800}  # measured on 2 CPU cores: BENCHMARKS.md
# The peak learning rate. Muon at 4e-3 over 3,000 steps was far ahead early (6.54 against 7.46 at step 200),
# level with 2e-3 over 3,800 from step 1,500, behind from 2,700 (2.700 against 2.661 at 2,800) and never under
# 2.5 (2.647 at its end); 2e-3 crossed at 3,100: BENCHMARKS.md, issue 32, target-versus-peak-4e-3-bf16.
PEAK_LR = {"adamw": 2e-3, "muon": 2e-3}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PRECISION = {v: k for k, v in DTYPES.items()}
# Hyperparameters that define a run: on --resume they come from the checkpoint, not the command line.
RUN_ARGS = ("batch_size", "lr", "min_lr_ratio", "warmup", "weight_decay", "grad_clip", "seed", "eval_every",
            "eval_windows", "schedule_steps", "optimizer", "embed_lr_scale")


def upgrade(state):
    """A checkpoint written by any earlier version of the kit, as this one reads it (returns a new dict).

    Before ``--optimizer`` a run was AdamW with a 10,000-step schedule; before ``precision`` it was
    float32; before the divergence guard there was no learning-rate scale and no rollback.
    """
    state = dict(state)
    args = dict(state.get("args") or {})
    args.setdefault("lr", PEAK_LR["adamw"])
    args.setdefault("optimizer", "adamw")
    args.setdefault("schedule_steps", SCHEDULE_STEPS["adamw"])
    args.setdefault("embed_lr_scale", 3.0)  # before the flag: MuonAdamW's default (the optimizer's state keeps it too)
    state["args"] = args
    state.setdefault("precision", "fp32")
    state.setdefault("lr_scale", 1.0)
    state.setdefault("rollbacks", 0)
    state.setdefault("metrics", [])
    return state


def pick_device(name):
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_optimizer(name, device):
    """Muon on a CPU, where it gets under the target in about half AdamW's time (BENCHMARKS.md); AdamW on
    a GPU or MPS, where the recipe was measured with it and Muon has not been."""
    if name != "auto":
        return name
    return "muon" if device == "cpu" else "adamw"


def pick_precision(name, device):
    """bf16 autocast where the device computes bf16 natively (a CUDA GPU that has it; a CPU with AVX512-BF16
    or AMX: products ~3x faster); float32 elsewhere, where bf16 is emulated and far slower, and on MPS."""
    if name != "auto":
        return name
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(device, bf16):
    """bfloat16 autocast when ``bf16`` (MPS has none of its own: the CPU's context, a no-op there)."""
    return torch.autocast(device if device != "mps" else "cpu", dtype=torch.bfloat16, enabled=bf16)


def resume_precision(saved, asked, device):
    """A resumed run keeps its checkpoint's precision, so it continues exactly, unless the command line
    names one, or the checkpoint is bf16 and this device has no native bf16 (emulated: ~20x slower)."""
    if asked != "auto":
        return asked
    if saved == "bf16" and pick_precision("auto", device) == "fp32":
        return "fp32"
    return saved


# torch.compile makes a step 6-8 % faster on a CPU in float32 (more with bf16, ~40 % on a GPU: BENCHMARKS.md,
# throughput) and costs 20-30 s on a quiet 2-core CPU with a warm cache, 150 s on a loaded one with a cold
# cache (about 13 s on a GPU): on a CPU it wins that back only after several minutes of training.
COMPILE_FROM_MINUTES = {"cpu": 10.0, "cuda": 1.0}
STEP_SECONDS = {"cpu": 0.5, "cuda": 0.01, "mps": 0.1}  # rough, to size a run planned in steps (--steps)


def pick_compile(name, device, minutes=None):
    """Whether to torch.compile the training forward pass, and why not when it does not (a note, or None).

    ``minutes``: about how long this run trains. A run too short to win back compiling stays eager; on a CPU
    compiling needs a C++ compiler at run time; MPS is left eager."""
    if name != "auto":
        return name == "on", None
    if device not in COMPILE_FROM_MINUTES:
        return False, None
    if device == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return False, _("note: no C++ compiler found (c++, g++, clang++): training without torch.compile, ~7 % slower")
    if minutes is not None and minutes < COMPILE_FROM_MINUTES[device]:
        note = _("note: not compiling: {minutes:.3g} minutes of training are too short to win back torch.compile's "
                 "time (it pays from about {pays:g}); --compile on compiles all the same")
        return False, note.format(minutes=minutes, pays=COMPILE_FROM_MINUTES[device])
    return True, None


def training_minutes(args, state=None):
    """About how many minutes this run trains: --minutes, or --steps at a rough step time, or, resuming, what
    is left of the checkpoint's plan (within --minutes)."""
    device = pick_device(args.device)
    by_steps = lambda steps: max(0, steps) * STEP_SECONDS.get(device, 0.5) / 60  # noqa: E731
    if state is None:
        return by_steps(args.steps) if args.steps is not None else args.minutes
    total, step = state.get("total_steps"), state.get("step", 0)
    if total is None or step >= total:
        return args.minutes
    if state.get("budget_end") is None:
        return min(args.minutes, by_steps(total - step))
    return min(args.minutes, max(0.0, state["budget_end"] - state.get("elapsed", 0.0)) / 60)


@dataclass
class RunConfig:
    """Everything a run needs to know, decided once (see the module docstring)."""
    args: object  # the parsed command line (paths, budget, evaluation settings, the run's hyperparameters)
    model: dict  # TransformerLM's keyword arguments
    device: str
    dtype: torch.dtype  # the compute dtype of the forward pass (autocast when bfloat16)
    optimizer: str
    schedule_steps: int
    compile: bool
    notes: list = field(default_factory=list)  # the decisions worth saying in the run's first lines

    @property
    def precision(self):
        return PRECISION[self.dtype]

    @property
    def ns_dtype(self):
        """Muon's Newton-Schulz runs in the compute dtype: bf16 only where the forward pass is (native there)."""
        return "bfloat16" if self.dtype == torch.bfloat16 else "float32"


def resolve(args, state=None):
    """The RunConfig of ``args`` (parsed ``lab.train`` options) and, when resuming, the checkpoint ``state``
    (as ``upgrade`` gives it)."""
    device = pick_device(args.device)
    notes = []
    if state is not None:
        for k in RUN_ARGS:
            setattr(args, k, state["args"].get(k, getattr(args, k)))
        model = dict(state["config"])
        saved = state["precision"]
        precision = resume_precision(saved, args.precision, device)
        if precision != saved:
            why = "" if args.precision != "auto" else _(" (no native bf16 on this {device})").format(device=device)
            notes.append(_("note: {path} trained in {saved}; resuming in {precision}{why}").format(
                path=args.out, saved=saved, precision=precision, why=why))
    else:
        args.optimizer = pick_optimizer(args.optimizer, device)
        if args.schedule_steps is None:
            args.schedule_steps = SCHEDULE_STEPS[args.optimizer]
        if args.lr is None:
            args.lr = PEAK_LR[args.optimizer]
        model = {"num_layers": args.layers, "hidden_size": args.hidden, "num_heads": args.heads,
                 "max_seq_len": args.seq_len}
        precision = pick_precision(args.precision, device)
    compile, why = pick_compile(args.compile, device, training_minutes(args, state))
    notes += [why] if why else []
    return RunConfig(args, model, device, DTYPES[precision], args.optimizer, args.schedule_steps, compile, notes)
