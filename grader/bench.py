"""The grader's speed, written into BENCHMARKS.md (see lab/bench.py for the format).

    python -m grader.bench [--only grader batch final] [--checkpoint runs/final.pt]

- grader: wall time of grading the solutions' five modules (the worker's start included); goal < 10 s
- batch:  submissions graded per minute by `python -m grader batch`
- final:  wall time of the final TinyShakespeare check on a trained checkpoint; goal < 60 s
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lab.bench import KIT, OUT, write_section


def bench_grader(repeats=3):
    cmd = [sys.executable, "-m", "grader", "--impl", "solutions", "--only", "residual", "rmsnorm", "attention",
           "block", "decoder", "--no-color"]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if "TOTAL 85/85" not in p.stdout:
            raise SystemExit("bench: the solutions did not get 85/85:\n" + p.stdout[-2000:])
    body = (f"Wall time of grading the solutions (unit checks, 85 points), {repeats} runs: "
            f"median **{statistics.median(times):.1f} s** (min {min(times):.1f} s, max {max(times):.1f} s). "
            f"Goal: under 10 s.")
    write_section("grader", body, "python -m grader.bench --only grader")
    return times


def bench_batch(n=6, jobs=2):
    from .batch import bench_batch as run
    res = run(n, jobs)
    body = (f"`python -m grader batch` on {res['submissions']} copies of the solutions (unit checks: "
            f"{', '.join(res['modules'])}), {res['jobs']} at once on {res['cpus']} cores: {res['seconds']:.1f} s, "
            f"**{res['per_minute']:.1f} submissions per minute** (outcomes: {res['statuses']}). Each submission "
            "runs in its own sandboxed worker, so one that hangs or eats memory costs only its own time limit.")
    write_section("batch", body, f"python -m grader.bench --only batch  (n={n}, jobs={jobs})")
    return res


def bench_final(checkpoint):
    """The final check on a trained checkpoint: 200,192 training and 51,200 validation characters."""
    if not Path(checkpoint).is_file():
        print(f"  skipped: no checkpoint at {checkpoint} (train one with `make train IMPL=solutions`)")
        return None
    cmd = [sys.executable, "-m", "grader", "--impl", "solutions", "--only", "final", "--checkpoint",
           str(checkpoint), "--no-color"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    note = next((line.strip() for line in p.stdout.splitlines() if "predicted characters" in line), "")
    body = (f"Wall time of `python -m grader --only final` on the solutions' checkpoint: **{wall:.1f} s** "
            f"(goal: under 60 s). It reported: {note or p.stdout.strip().splitlines()[-1]}")
    write_section("final", body, f"python -m grader.bench --only final --checkpoint {checkpoint}")
    return wall


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m grader.bench", description="Measure and record the grader's speed.")
    p.add_argument("--only", nargs="+", choices=["grader", "batch", "final"], default=["grader", "batch", "final"])
    p.add_argument("--checkpoint", default=str(KIT / "runs" / "final.pt"), help="checkpoint for the final check")
    args = p.parse_args(argv)
    for name in args.only:
        print(f"bench: {name} ...", flush=True)
        run = {"grader": bench_grader, "batch": bench_batch, "final": lambda: bench_final(args.checkpoint)}[name]
        print(f"  {run()}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
