"""The grader's speed, written into BENCHMARKS.md (see lab/bench.py for the format).

    python -m grader.bench [--only grader batch]
"""
import argparse
import statistics
import subprocess
import sys
import time

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
    body = "\n".join(f"- {k}: {v}" for k, v in res.items())
    write_section("batch", body, f"python -m grader.bench --only batch  (n={n}, jobs={jobs})")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m grader.bench", description="Measure and record the grader's speed.")
    p.add_argument("--only", nargs="+", choices=["grader", "batch"], default=["grader", "batch"])
    args = p.parse_args(argv)
    for name in args.only:
        print(f"bench: {name} ...", flush=True)
        print(f"  {bench_grader() if name == 'grader' else bench_batch()}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
