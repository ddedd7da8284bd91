"""Training speed, written into BENCHMARKS.md with the command and the machine.

    python -m lab.bench [--only throughput target] [--minutes 120] [--device cpu|cuda|mps]

- throughput: tokens/s of a plain float32 eager loop (batch 16 x 256) against the kit's training loop
- target:     minutes of `make train IMPL=solutions` until the training-split perplexity is under 2.5
              (runs the real trainer; takes up to --minutes)

Each section of BENCHMARKS.md is replaced by the new measurement; the others stay. On a GPU the
sections are named after the device (``throughput-cuda``), so the CPU's numbers stay beside them.
(the grader's own timings come from `python -m grader.bench`).
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kit import benchmarks
from kit.cli import ArgumentParser
from kit.syllabus import CURRICULUM

from .config import SCHEDULE_STEPS, autocast, pick_compile, pick_device, pick_optimizer, pick_precision
from .muon import MuonAdamW
from .train import CONFIRM_BELOW, Trainer, parse

KIT = Path(__file__).resolve().parent.parent
OUT = benchmarks.OUT
SECTIONS = ["throughput", "target"]
GOAL_MINUTES = {"fp32": 15, "bf16": 5}  # to the target on 2 CPU cores, without and with native bf16 (issue 32)
TARGET_EVAL_EVERY = 50  # steps between the target run's evaluations: about 30 s of training on 2 CPU cores


def write_section(name, body, command, device="cpu"):
    benchmarks.write_section(name, body, command, device, out=OUT)


def _loop_tokens_per_s(model, batch_size, seq_len, steps, warmup, bf16=False, clip=None, compile=False,
                       device="cpu", optimizer="adamw"):
    """Median tokens/s of a training loop's steps after ``warmup`` steps; also the first step's seconds."""
    model = model.to(device)
    opt = (MuonAdamW(model, lr=1e-3, ns_dtype="bfloat16" if bf16 else "float32") if optimizer == "muon" else
           torch.optim.AdamW(model.parameters(), lr=1e-3))  # Newton-Schulz in bf16 where the forward is: as lab.train
    fwd = torch.compile(model) if compile else model
    x = torch.randint(0, 65, (batch_size, seq_len), device=device)
    y = torch.randint(0, 65, (batch_size, seq_len), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for _ in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        with autocast(device, bf16):
            logits = fwd(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        loss.item()  # as the trainer does: one sync per step
        times.append(time.perf_counter() - t0)
    return batch_size * seq_len / statistics.median(times[warmup:]), times[0]


def _trainer_tokens_per_s(device, precision, steps, warmup):
    """The trainer's own step (lab.train's defaults on this device), timed as the plain loop is."""
    with tempfile.TemporaryDirectory() as tmp:
        # compiled where `make train` (its 120 minutes) compiles: a run of a few steps would not (lab/config.py)
        compiles = pick_compile("auto", pick_device(device), parse([]).minutes)[0]
        args = parse(["--impl", str(KIT / "solutions"), "--out", str(Path(tmp) / "bench.pt"), "--device", device,
                      "--precision", precision, "--steps", str(steps + warmup), "--quiet",
                      "--compile", "on" if compiles else "off"])
        t = Trainer(args)
        t.plan()
        times = []
        for _ in range(warmup + steps):
            t0 = time.perf_counter()
            t.train_step()
            times.append(time.perf_counter() - t0)
        tokens = args.batch_size * t.seq_len
        return tokens / statistics.median(times[warmup:]), times[0], t.config


NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
NANOGPT_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.M)  # its train.py's log line


def _nanogpt_tokens_per_s(checkout, steps, warmup=5):
    """nanoGPT's own train.py (a checkout of github.com/karpathy/nanoGPT) at the kit's size and batch: 4 layers of 256,
    8 heads, context 256, batch 8, no dropout, no bias, torch.compile, AdamW, on the CPU, where its train.py computes in
    float32 whatever ``dtype`` says; TinyShakespeare characters split as its prepare.py does (from the kit's copy: no
    download). Runs in a copy of its three files; returns the tokens/s of its median iteration after ``warmup``, and
    its first iteration's seconds (compiling)."""
    import pickle

    import numpy as np
    src = Path(checkout)  # main() has checked that it holds NANOGPT_FILES
    with tempfile.TemporaryDirectory() as tmp:
        for f in NANOGPT_FILES:
            shutil.copy(src / f, tmp)
        data = Path(tmp) / "data" / "shakespeare_char"
        data.mkdir(parents=True)
        text = (KIT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
        chars = sorted(set(text))
        stoi = {c: i for i, c in enumerate(chars)}
        ids = np.array([stoi[c] for c in text], dtype=np.uint16)
        split = int(len(ids) * 0.9)
        ids[:split].tofile(data / "train.bin")
        ids[split:].tofile(data / "val.bin")
        with open(data / "meta.pkl", "wb") as f:
            pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
        cmd = [sys.executable, "train.py", "--dataset=shakespeare_char", "--device=cpu", "--compile=True",
               "--dtype=float32", "--n_layer=4", "--n_head=8", "--n_embd=256", "--block_size=256", "--batch_size=8",
               "--gradient_accumulation_steps=1", "--dropout=0.0", "--bias=False", f"--max_iters={warmup + steps}",
               "--eval_interval=1000000", "--eval_iters=1", "--log_interval=1", "--always_save_checkpoint=False",
               "--wandb_log=False", f"--out_dir={Path(tmp) / 'out'}"]
        p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=3600)
    times = {int(i): float(ms) / 1000 for i, ms in NANOGPT_ITER.findall(p.stdout)}
    if p.returncode != 0 or len(times) < warmup + steps:
        raise SystemExit(f"lab.bench: nanoGPT's train.py failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-2000:]}")
    after = [times[i] for i in sorted(times) if i >= warmup]
    return 8 * 256 / statistics.median(after), times[min(times)]


def _commit(checkout):
    p = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "unknown commit"


def bench_throughput(device="cpu", steps=12, precision="auto", nanogpt=None):
    """The plain loop against the trainer's own step, and the alternatives the kit's choice was made from; with
    ``nanogpt`` (a checkout), nanoGPT's train.py at the same size and batch, before and after the trainer's step."""
    from kit.loader import load_impl

    from .model import build
    impl = load_impl(KIT / "solutions")
    d = parse([])
    kit_bf16 = pick_precision(precision, device) == "bf16"
    steps = steps if device == "cpu" else 50  # a GPU step takes milliseconds: more of them for a steady median
    runs = [  # (label, batch, bf16, compile, steps, optimizer): AdamW unless the row says otherwise
        ("plain float32 eager loop, batch 16 x 256 (the baseline)", 16, False, False, steps, "adamw"),
        ("float32 eager, batch 8 x 256", 8, False, False, steps, "adamw"),
        ("float32 eager, batch 4 x 256", 4, False, False, steps, "adamw"),
        ("float32 torch.compile, batch 8 x 256", 8, False, True, steps, "adamw"),
        ("bf16 autocast eager, batch 16 x 256", 16, True, False, steps if kit_bf16 else 3, "adamw"),
    ]
    if kit_bf16:  # what torch.compile adds in bf16
        runs.append(("bf16 autocast eager, batch 8 x 256", 8, True, False, steps, "adamw"))
    rows = []
    for label, b, bf16, comp, n, opt in runs:
        torch.manual_seed(0)
        tps, first = _loop_tokens_per_s(build(impl, 65, CURRICULUM), b, 256, n, 3 if not comp else 4, bf16,
                                        d.grad_clip, comp, device, opt)
        rows.append((label, tps, first))
        print(f"  {label}: {tps:,.0f} tokens/s (first step {first:.1f} s)", flush=True)
    if nanogpt:
        nano = [_nanogpt_tokens_per_s(nanogpt, steps)]
        print(f"  nanoGPT: {nano[0][0]:,.0f} tokens/s (first iteration {nano[0][1]:.1f} s)", flush=True)
    tps, first, config = _trainer_tokens_per_s(device, precision, steps, 4)
    settings = (f"batch {d.batch_size} x 256, {config.precision}{', torch.compile' if config.compile else ', eager'}, "
                f"{config.optimizer}")
    rows.append((f"**the trainer's own step** (lab.train's choices here: {settings})", tps, first))
    print(f"  {rows[-1][0]}: {tps:,.0f} tokens/s (first step {first:.1f} s)", flush=True)
    # the baseline again at the end: the faster of its two runs is the one compared, so a slow start (a busy
    # machine, a cold cache) cannot flatter the ratio
    torch.manual_seed(0)
    again, _ = _loop_tokens_per_s(build(impl, 65, CURRICULUM), 16, 256, steps, 3, False, d.grad_clip, False, device,
                                  "adamw")
    rows[0] = (rows[0][0], max(rows[0][1], again), rows[0][2])
    base, kit = rows[0][1], rows[-1][1]
    versus = ""
    if nanogpt:  # the faster of its two runs, before and after the trainer's step
        nano.append(_nanogpt_tokens_per_s(nanogpt, steps))
        print(f"  nanoGPT again: {nano[1][0]:,.0f} tokens/s", flush=True)
        best = max(nano)
        rows.append((f"nanoGPT's own train.py (commit {_commit(nanogpt)}; 4 x 256, 8 heads, context 256, batch 8 x 256, "
                     "no dropout or bias, torch.compile, AdamW, float32: its train.py's only CPU precision)",
                     best[0], best[1]))
        versus = (f"\n\nThe trainer's own step against nanoGPT's train.py at the same size and batch: **{kit / best[0]:.2f}x** "
                  f"(nanoGPT {nano[0][0]:,.0f} before the trainer's step and {nano[1][0]:,.0f} after; the faster "
                  f"compared; median of its {steps} iterations after 5, from its own log).")
    table = "| loop | tokens/s | first step (s) |\n|---|---|---|\n" + "".join(
        f"| {n} | {v:,.0f} | {f:.1f} |\n" for n, v, f in rows)
    ratio = kit / base
    body = (table + f"\nRatio trainer / plain: **{ratio:.2f}x** (goal: 1.5x). Median step time over {steps} steps "
            f"after warm-up; the baseline is the faster of two runs, first and last ({again:,.0f} the second time); "
            "the trainer's row is `lab.train`'s own step, its first step compiling where it compiles." + versus +
            f"\n<!-- ratio: {ratio:.2f} -->\n<!-- trainer_tokens_per_s: {kit:.0f} -->")
    write_section(section("throughput", device, precision=precision), body,
                  f"python -m lab.bench --only throughput{flag(device, precision=precision)}"
                  f"{' --nanogpt ' + str(nanogpt) if nanogpt else ''}", device)
    return base, kit


def _non_defaults(device, optimizer=None, precision="auto"):
    """The settings other than the CPU in float32 and the trainer's optimizer for the device: they name the
    section and show in its command (a CPU with native bf16 trains in it: its numbers get their own sections)."""
    auto = pick_optimizer("auto", device)
    precision = pick_precision(precision, device)
    defaults = (("device", device, "cpu"), ("precision", precision, "fp32" if device == "cpu" else precision),
                ("optimizer", optimizer or auto, auto))
    return [(k, v) for k, v, default in defaults if v != default]


def section(name, device, optimizer=None, precision="auto"):
    return "-".join([name, *(v for _, v in _non_defaults(device, optimizer, precision))])


def flag(device, optimizer=None, precision="auto"):
    """The options that reproduce a measurement: its section's, and ``--precision`` wherever this machine's own
    choice differs (float32 measured on a CPU with native bf16)."""
    flags = dict(_non_defaults(device, optimizer, precision))
    chosen = pick_precision(precision, device)
    if chosen != pick_precision("auto", device):
        flags["precision"] = chosen
    return "".join(f" --{k} {v}" for k, v in flags.items())


def bench_target(minutes, device="cpu", optimizer="auto", precision="auto"):
    optimizer, precision = pick_optimizer(optimizer, device), pick_precision(precision, device)
    out = KIT / "runs" / f"{section('bench-target', device, optimizer, precision)}.pt"
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Evaluations every 50 steps instead of lab.train's 250 time the crossing to within ~30 s of training; they
    # do not change the training (fixed windows, no random draws, not counted in the minutes of training).
    cmd = [sys.executable, "-m", "lab.train", "--impl", "solutions", "--out", str(out), "--minutes", str(minutes),
           "--device", device, "--optimizer", optimizer, "--precision", precision,
           "--eval-every", str(TARGET_EVAL_EVERY), "--quiet"]
    print(f"  training the solutions for up to {minutes} min; progress in {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=KIT, text=True, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench: training failed; see {log}")
    from kit.checkpoint import load
    state = load(out)
    return report_target(state["metrics"], minutes, wall, state["args"]["batch_size"] * state["config"]["max_seq_len"],
                         device, optimizer, precision)


# Candidate recipes for the CPU, as lab.train's flags (the schedule as --steps): `--versus NAME` trains one beside
# today's (also run as --steps: its whole schedule, whatever the load does to the step time). BENCHMARKS.md has
# each one's run.
RECIPES = {"peak-4e-3": ["--steps", "3000", "--lr", "4e-3", "--warmup", "100", "--min-lr-ratio", "0.1",
                         "--embed-lr-scale", "3"]}


def load_text():
    """The machine's load: 1-minute load average and the number of CPUs (other people's work shares them)."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def bench_versus(minutes, versus, device="cpu", precision="auto"):
    """Today's recipe and ``versus`` (a name in RECIPES) trained at once, each on half the cores, same machine, same
    load: the curves side by side, step for step. The section is rewritten every few minutes while they run, so a
    run cut short still leaves its curves."""
    precision = pick_precision(precision, device)
    threads = max(1, (os.cpu_count() or 2) // 2)
    runs = {}
    today = ["--steps", str(SCHEDULE_STEPS[pick_optimizer("auto", device)])]
    for name, extra in (("today", today), (versus, RECIPES[versus])):
        out = KIT / "runs" / f"bench-versus-{name}-{precision}.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lab.train", "--impl", "solutions", "--out", str(out), "--minutes", str(minutes),
               "--device", device, "--precision", precision, "--eval-every", str(TARGET_EVAL_EVERY), "--quiet",
               "--threads", str(threads), "--save-every", "2", "--compile", "off", *extra]
        log = open(out.with_suffix(".log"), "w")
        print(f"  {name}: {' '.join(cmd[1:])}; progress in {out.with_suffix('.log')}", flush=True)
        p = subprocess.Popen(cmd, cwd=KIT, text=True, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)})
        runs[name] = (p, out, log, " ".join(["python -m lab.train", *cmd[3:]]))
    loads, t0, last = [load_text()], time.perf_counter(), 0.0
    while any(p.poll() is None for p, *_ in runs.values()):
        time.sleep(10)
        if time.perf_counter() - last > 120:
            loads.append(load_text())
            report_versus(runs, versus, minutes, device, precision, threads, loads, time.perf_counter() - t0, False)
            last = time.perf_counter()
    loads.append(load_text())
    return report_versus(runs, versus, minutes, device, precision, threads, loads, time.perf_counter() - t0, True)


def report_versus(runs, versus, minutes, device, precision, threads, loads, wall, done):
    from kit.checkpoint import CheckpointError, load
    hists, hits = {}, {}
    for name, (p, out, _, _) in runs.items():
        try:
            hists[name] = load(out)["metrics"] if out.exists() else []
        except (CheckpointError, OSError, KeyError):
            hists[name] = []
        hits[name] = next((m for m in hists[name] if m.get("confirmed_train_ppl", 9e9) < 2.5), None)
    names = list(runs)
    at = {n: {m["step"]: m for m in hists[n]} for n in names}
    steps = sorted(set().union(*at.values()))
    shown = [s for s in steps if s % 250 == 0 or any("confirmed_train_ppl" in at[n].get(s, {}) for n in names)]
    cell = lambda m: ("" if m is None else f"{m['train_ppl']:.3f}" + (  # noqa: E731
        f" ({m['confirmed_train_ppl']:.3f})" if "confirmed_train_ppl" in m else "") + f", {m['elapsed'] / 60:.1f} min")
    rows = "".join(f"| {s} | " + " | ".join(cell(at[n].get(s)) for n in names) + " |\n" for s in shown)

    def says(n):
        h = hits[n]
        if h:
            return f"under 2.5 at step **{h['step']}** after {h['elapsed'] / 60:.1f} min of training"
        if not hists[n]:
            return "no evaluation yet"
        last = hists[n][-1]
        return (f"{'not under 2.5' if done else 'still running'}: step {last['step']}, "
                f"{last['train_ppl']:.3f} after {last['elapsed'] / 60:.1f} min of training")
    status = "finished" if done else f"in progress ({wall / 60:.0f} min of wall time so far)"
    body = (f"Side by side, {status}: today's recipe and `{versus}` ({' '.join(RECIPES[versus])}), trained at once "
            f"with {threads} thread{'s' if threads > 1 else ''} each, {precision}, eager (compiling takes minutes on a "
            f"loaded machine; the same for both), evaluated every {TARGET_EVAL_EVERY} "
            f"steps (confirmed on 200,000 characters within 3 % of 2.5). Today: {says(names[0])}; {versus}: "
            f"{says(names[1])}. Minutes are each run's own training time on {threads} thread(s) of a shared machine, "
            f"comparable with each other, not with a quiet 2-core run; the steps are the machine-independent part. "
            f"Load while they ran: {'; '.join(loads[:1] + loads[-1:])} (other work shared the CPUs). Commands: "
            + "; ".join(f"`{r[3]}`" for r in runs.values())
            + f"\n\n| step | today: train ppl (200k), minutes | {versus}: train ppl (200k), minutes |\n|---|---|---|\n"
            + rows)
    write_section(section(f"target-versus-{versus}", device, precision=precision), body,
                  f"python -m lab.bench --only target --versus {versus} --minutes {minutes:g}"
                  f"{flag(device, precision=precision)}", device)
    return hits


def report_target(hist, minutes, wall, tokens_per_step, device, optimizer, precision="fp32"):
    """Write the target section from a run's metrics; return the first confirmed hit (or None)."""
    hit = next((m for m in hist if m.get("confirmed_train_ppl", 9e9) < 2.5), None)
    picked = {id(m) for m in hist[:: max(1, len(hist) // 15)]}
    shown = [m for m in hist if id(m) in picked or "confirmed_train_ppl" in m or m is hist[-1]]  # and each 200k measure
    conf = lambda m: f"{m['confirmed_train_ppl']:.3f}" if "confirmed_train_ppl" in m else "-"  # noqa: E731
    rows = "".join(f"| {m['step']} | {m['elapsed'] / 60:.1f} | {m['train_ppl']:.3f} | {m['val_ppl']:.3f} | "
                   f"{conf(m)} |\n" for m in shown)
    result = (f"training-split perplexity under 2.5 after **{hit['elapsed'] / 60:.1f} min** of training "
              f"(step {hit['step']}; {wall / 60:.1f} min wall time with evaluations)" if hit else
              f"not under 2.5 within {minutes:g} min: best confirmed/estimated training-split perplexity "
              f"{min(m.get('confirmed_train_ppl', m['train_ppl']) for m in hist):.3f}")
    goal = GOAL_MINUTES[precision]
    if hit and device == "cpu" and hit["elapsed"] <= goal * 60:
        result += f", within the goal of {goal} minutes"
    result += f" (optimizer: {optimizer}, {precision})"
    at_goal = next((m for m in reversed(hist) if m["elapsed"] <= goal * 60), None)
    if device == "cpu" and at_goal and (hit is None or hit["elapsed"] > goal * 60):
        last = hit or hist[-1]
        tokens = last["step"] * tokens_per_step
        result += (f". The goal of {goal} minutes is not met on this machine: after {goal} minutes the model is at "
                   f"{at_goal['train_ppl']:.2f} (step {at_goal['step']}). Getting under 2.5 means fitting the training "
                   f"text itself: {tokens / 1e6:.1f}M tokens, {tokens / 1_003_854:.0f} passes over it, at the "
                   f"{tokens / last['elapsed']:,.0f} tokens/s this CPU allows in {precision} (see throughput). The "
                   "recipe was chosen by the trials at the top of this file")
    every = parse([]).eval_every  # lab.train's default
    body = (result + f". The run evaluates every {TARGET_EVAL_EVERY} steps (lab.train: every {every}, so it notices "
            f"up to {every - TARGET_EVAL_EVERY} steps later), measuring 200,000 training characters wherever its "
            f"32-window estimate is within {CONFIRM_BELOW - 1:.0%} of 2.5.\n\nValidation perplexity falls to about 4.4 "
            "and then rises while the training-split perplexity keeps falling: the overfitting the README explains."
            "\n\n| step | minutes | train ppl (32 windows) | val ppl (32 windows) | confirmed train ppl (200k chars) |"
            "\n|---|---|---|---|---|\n" + rows)
    write_section(section("target", device, optimizer, precision), body,
                  f"python -m lab.bench --only target --minutes {minutes:g}{flag(device, optimizer, precision)}",
                  device)
    return hit


def main(argv=None):
    p = ArgumentParser(prog="python -m lab.bench", description="Measure and record the kit's speed.")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=["throughput"],
                   help="what to measure (default: throughput; `target` takes up to --minutes)")
    p.add_argument("--minutes", type=float, default=120.0, help="time cap of the `target` run (lab.train's default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"],
                   help="where to measure (default: %(default)s; other devices get their own sections)")
    p.add_argument("--optimizer", default="auto", choices=["auto", "adamw", "muon"],
                   help="the trainer's optimizer for `target` (auto: lab.train's choice for the device; another "
                        "one gets a section of its own)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the kit loop's precision (auto: lab.train's choice: bf16 on a GPU or a CPU with native "
                        "bf16; a CPU in bf16 gets sections of its own)")
    p.add_argument("--versus", choices=sorted(RECIPES),
                   help="`target` only: train today's recipe and this earlier one at once, each on half the cores, "
                        "and write their curves side by side")
    p.add_argument("--nanogpt", metavar="DIR", help="`throughput` only: a checkout of github.com/karpathy/nanoGPT; "
                                                     "its train.py is timed at the kit's size and batch beside the "
                                                     "trainer's step")
    args = p.parse_args(argv)
    if args.nanogpt and not all((Path(args.nanogpt) / f).is_file() for f in NANOGPT_FILES):
        p.error(f"--nanogpt {args.nanogpt}: not a checkout of nanoGPT (no {', '.join(NANOGPT_FILES)} there)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    for name in args.only:
        print(f"bench: {name} ...", flush=True)
        if name == "throughput":
            print(f"  {bench_throughput(args.device, precision=args.precision, nanogpt=args.nanogpt)}")
        elif name == "target" and args.versus:
            print(f"  {bench_versus(args.minutes, args.versus, args.device, args.precision)}")
        elif name == "target":
            print(f"  {bench_target(args.minutes, args.device, args.optimizer, args.precision)}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
