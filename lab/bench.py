"""Training speed, written into BENCHMARKS.md with the command and the machine.

    python -m lab.bench [--only throughput target] [--minutes 30]

- throughput: tokens/s of a plain float32 eager loop (batch 16 x 256) against the kit's training loop
- target:     minutes of `make train IMPL=solutions` until the training-split perplexity is under 2.5
              (runs the real trainer; takes up to --minutes)

Each section of BENCHMARKS.md is replaced by the new measurement; the others stay
(the grader's own timings come from `python -m grader.bench`).
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

KIT = Path(__file__).resolve().parent.parent
OUT = KIT / "BENCHMARKS.md"
SECTIONS = ["throughput", "target"]


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def write_section(name, body, command):
    """Replace (or add) the section ``name`` of BENCHMARKS.md, keeping the others."""
    text = OUT.read_text() if OUT.exists() else "# Benchmarks\n\nMeasured with `make bench`; each section says how.\n"
    block = (f"<!-- bench:{name} -->\n## {name}\n\n- command: `{command}`\n- machine: {machine()}\n"
             f"- date: {datetime.date.today().isoformat()}\n\n{body.strip()}\n<!-- /bench:{name} -->\n")
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->\n", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    fd, tmp = tempfile.mkstemp(dir=KIT, prefix=".bench-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, OUT)


def _loop_tokens_per_s(model, batch_size, seq_len, steps, warmup, autocast_dtype=None, clip=None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 65, (batch_size, seq_len))
    y = torch.randint(0, 65, (batch_size, seq_len))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch_size * seq_len / statistics.median(times)


def bench_throughput(steps=12):
    from .loader import load_impl
    from .model import CURRICULUM, build
    from .train import cpu_has_bf16, parse
    impl = load_impl(KIT / "solutions")
    defaults = parse([])
    torch.manual_seed(0)
    base = _loop_tokens_per_s(build(impl, 65, CURRICULUM), 16, 256, steps, 3)
    torch.manual_seed(0)
    kit = _loop_tokens_per_s(build(impl, 65, CURRICULUM), defaults.batch_size, 256, steps, 3,
                             torch.bfloat16 if cpu_has_bf16() else None, defaults.grad_clip)
    rows = [("plain float32 eager loop, batch 16 x 256", base),
            (f"kit's loop (lab.train defaults: batch {defaults.batch_size} x 256, "
             f"{'bf16 autocast' if cpu_has_bf16() else 'float32: this CPU has no native bf16'})", kit)]
    if not cpu_has_bf16():
        torch.manual_seed(0)
        bf = _loop_tokens_per_s(build(impl, 65, CURRICULUM), 16, 256, max(3, steps // 4), 1, torch.bfloat16)
        rows.append(("bf16 autocast, batch 16 x 256 (for comparison; not used here)", bf))
    table = "| loop | tokens/s |\n|---|---|\n" + "".join(f"| {n} | {v:,.0f} |\n" for n, v in rows)
    body = table + f"\nRatio kit / plain: **{kit / base:.2f}x** (median step time over {steps} steps after warm-up)."
    write_section("throughput", body, "python -m lab.bench --only throughput")
    return base, kit


def bench_target(minutes):
    out = KIT / "runs" / "bench-target.pt"
    cmd = [sys.executable, "-m", "lab.train", "--impl", "solutions", "--out", str(out), "--minutes", str(minutes)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=KIT, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit("bench: training failed:\n" + p.stderr[-2000:])
    from .checkpoint import load
    state = load(out)
    hist = state["metrics"]
    hit = next((m for m in hist if m.get("confirmed_train_ppl", 9e9) < 2.5), None)
    rows = "".join(f"| {m['step']} | {m['elapsed'] / 60:.1f} | {m['train_ppl']:.3f} | {m['val_ppl']:.3f} | "
                   f"{m.get('confirmed_train_ppl', float('nan')):.3f} |\n" for m in hist[:: max(1, len(hist) // 15)])
    if hist and hist[-1] is not hist[:: max(1, len(hist) // 15)][-1]:
        m = hist[-1]
        rows += (f"| {m['step']} | {m['elapsed'] / 60:.1f} | {m['train_ppl']:.3f} | {m['val_ppl']:.3f} | "
                 f"{m.get('confirmed_train_ppl', float('nan')):.3f} |\n")
    result = (f"training-split perplexity under 2.5 after **{hit['elapsed'] / 60:.1f} min** of training "
              f"(step {hit['step']}; {wall / 60:.1f} min wall time with evaluations)" if hit else
              f"not under 2.5 within {minutes} min: best confirmed/estimated training-split perplexity "
              f"{min(m.get('confirmed_train_ppl', m['train_ppl']) for m in hist):.3f}")
    body = (result + "\n\n| step | minutes | train ppl (32 windows) | val ppl (32 windows) | confirmed train ppl "
            "(200k chars) |\n|---|---|---|---|---|\n" + rows)
    write_section("target", body, f"python -m lab.bench --only target --minutes {minutes}")
    return hit


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lab.bench", description="Measure and record the kit's speed.")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=["throughput"],
                   help="what to measure (default: throughput; `target` takes up to --minutes)")
    p.add_argument("--minutes", type=float, default=30.0, help="time cap of the `target` run")
    args = p.parse_args(argv)
    for name in args.only:
        print(f"bench: {name} ...", flush=True)
        if name == "throughput":
            print(f"  {bench_throughput()}")
        elif name == "target":
            print(f"  {bench_target(args.minutes)}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
