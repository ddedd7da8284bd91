"""The grader's speed and memory, written into BENCHMARKS.md (kit/benchmarks.py).

    python -m grader.bench [--only grader whole memory batch] [--checkpoint runs/final.pt]

- grader: wall time of grading the solutions' five units (the worker's start included)
- whole:  wall time of a whole grading, the final check on a trained checkpoint included
- memory: peak memory of a whole grading in a memory cgroup (grader, worker and the library pages they
          touch), and the same grading inside a 768 MB and a 512 MB limit (cgroup v1, as root)
- batch:  submissions graded per minute by `python -m grader batch`
- pythons: the kit on other interpreters (--pythons PATH ...): a grading of the units and the quick tests
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.benchmarks import OUT, write_section
from kit.cli import ArgumentParser
from kit.outcome import totals
from kit.syllabus import MODULES, POINTS, TOTAL

from .report import num

KIT = Path(__file__).resolve().parent.parent
CGROUP = Path("/sys/fs/cgroup/memory")
UNIT_POINTS = TOTAL - POINTS["final"]


def grading(units=None, checkpoint=None, prefix=(), python=sys.executable, env=None):
    """``(seconds, completed process, the grading as the grader recorded it, or None)``."""
    from grader.run import Grading
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        record = Path(tmp) / "record.json"
        cmd = [*prefix, python, "-m", "grader", "--impl", "solutions", "--no-color", "--record", str(record)]
        if units:
            cmd += ["--only", *units]
        if checkpoint:
            cmd += ["--checkpoint", str(checkpoint)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True, env={**os.environ, **(env or {})})
        seconds = time.perf_counter() - t0
        graded = Grading.from_dict(json.loads(record.read_text())) if record.is_file() else None
    return seconds, p, graded


def _total(graded):
    if graded is None:
        return "no grading"
    got, points = totals(graded.results)
    return f"TOTAL {num(got)}/{num(points)}"


def _require_full(graded, p, points):
    """Stop the bench unless the solutions got all ``points`` (a timing of a broken grading means nothing)."""
    if graded is None or totals(graded.results) != (points, points):
        raise SystemExit(f"bench: the solutions did not get {points}/{points} ({_total(graded)}):\n"
                         + p.stdout[-2000:] + p.stderr[-2000:])


def bench_grader(repeats=5):
    times = []
    for _ in range(repeats):
        seconds, p, graded = grading(MODULES)
        _require_full(graded, p, UNIT_POINTS)
        times.append(seconds)
    median = statistics.median(times)
    body = (f"Wall time of `python -m grader --impl solutions --only {' '.join(MODULES)}` (the five units, {UNIT_POINTS} points, "
            f"the worker's start included), {repeats} runs: median **{median:.2f} s** (min {min(times):.2f} s, max "
            f"{max(times):.2f} s).\n<!-- units_s: {median:.2f} -->")
    write_section("grader", body, "python -m grader.bench --only grader")
    return times


def _shown(path):
    """A checkpoint as a reader would type it: relative to the kit when it lies inside."""
    p = Path(path).resolve()
    return str(p.relative_to(KIT)) if p.is_relative_to(KIT) else str(path)


def bench_whole(checkpoint, repeats=3):
    if not Path(checkpoint).is_file():
        print(f"  skipped: no checkpoint at {checkpoint} (train one with `make train IMPL=solutions`)")
        return None
    rows, note = [], ""
    # the sandbox the graded flows use, and the plain process it falls back to, in the same run
    for label, env in (("as it runs", None), ("without bubblewrap", {"KIT_NO_BWRAP": "1"})):
        times = []
        for _ in range(repeats):
            seconds, p, graded = grading(checkpoint=checkpoint, env=env)
            _require_full(graded, p, TOTAL)
            times.append(seconds)
            note = note or next((r.note for r in graded.results if r.unit == "final" and r.note), "")
        rows.append((label, graded.isolation, statistics.median(times), min(times), max(times)))
        if label == "as it runs" and "bubblewrap" not in rows[0][1]:
            break  # no bubblewrap here: the second row would measure the same thing
    table = "| isolation | median | min | max |\n|---|---|---|---|\n" + "".join(
        f"| {iso} | **{med:.2f} s** | {lo:.2f} s | {hi:.2f} s |\n" for _, iso, med, lo, hi in rows)
    body = (f"Wall time of a whole grading, `python -m grader --impl solutions --checkpoint {_shown(checkpoint)}` (the five "
            f"units and the final check, {TOTAL} points), {repeats} runs each:\n\n{table}\nThe final check reported: "
            f"{note}\n<!-- whole_s: {rows[0][2]:.2f} -->")
    write_section("whole", body, f"python -m grader.bench --only whole --checkpoint {_shown(checkpoint)}")
    return rows


def bench_pythons(pythons):
    """The kit on other interpreters (each with the requirements installed): a grading and the quick tests."""
    if not pythons:
        print("  skipped: give --pythons PATH ... (interpreters with requirements.txt installed)")
        return None
    import getpass
    import shutil
    import zipfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-pythons-"))
    rows = []
    try:
        bundle = tmp / "gradescope.zip"  # built by its command (the grader does not import the classroom layer)
        subprocess.run([sys.executable, "-m", "classroom.gradescope", "--out", str(bundle), "--seed", "bench"],
                       cwd=KIT, check=True, capture_output=True)
        for py in [sys.executable, *pythons]:
            version = subprocess.run([py, "-c", "import sys, torch; print(sys.version.split()[0], torch.__version__)"],
                                     capture_output=True, text=True).stdout.strip() or "cannot start"
            seconds, _, graded = grading(MODULES, python=py)
            tests = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *QUICK_TESTS], cwd=KIT,
                                   capture_output=True, text=True)
            summary = (tests.stdout.strip().splitlines() or ["no output"])[-1]
            # the Gradescope bundle's run_autograder with this Python, on the solutions
            root = tmp / f"ag-{len(rows)}"
            with zipfile.ZipFile(bundle) as z:
                z.extractall(root / "source")
            (root / "submission").mkdir()
            for f in (KIT / "solutions").glob("*.py"):
                shutil.copy(f, root / "submission" / f.name)
            subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, timeout=900,
                           env={**os.environ, "AUTOGRADER_ROOT": str(root), "KIT_PYTHON": py,
                                "AUTOGRADER_USER": getpass.getuser()})
            try:
                result = json.loads((root / "results" / "results.json").read_text())
                autograder = f"{result['score']:g}/{result['max_score']:g}"
            except (OSError, ValueError, KeyError):
                autograder = "no results.json"
            rows.append((version, _total(graded), seconds, summary, autograder))
            print(f"  {version}: {_total(graded)} in {seconds:.1f} s; tests: {summary}; run_autograder: {autograder}",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = ("| Python, torch | grading the solutions' units | wall time | " + ", ".join(QUICK_TESTS) +
             f" | Gradescope run_autograder (no final.pt: {UNIT_POINTS}/{TOTAL}) |\n|---|---|---|---|---|\n" +
             "".join(f"| {v} | {t} | {s:.1f} s | {r} | {a} |\n" for v, t, s, r, a in rows))
    body = ("The kit on each Python that pyproject.toml claims (requirements.txt installed in a virtual environment "
            f"of each; the first row is the interpreter that ran the bench):\n\n{table}")
    write_section("python-versions", body, "python -m grader.bench --only pythons --pythons " + " ".join(pythons))
    return rows


QUICK_TESTS = ["tests/test_grader_core.py", "tests/test_layout.py", "tests/test_platforms.py",
               "tests/test_bad_input.py"]


def _in_cgroup(limit_mb, checkpoint):
    """Grade inside a fresh memory cgroup (v1); return (seconds, completed process, peak bytes)."""
    group = CGROUP / f"kit-bench-{os.getpid()}-{limit_mb or 'free'}"
    group.mkdir()
    try:
        if limit_mb:
            (group / "memory.limit_in_bytes").write_text(str(limit_mb << 20))
        prefix = ["sh", "-c", f'echo $$ > {group / "cgroup.procs"} && exec "$@"', "sh"]
        seconds, _, graded = grading(checkpoint=checkpoint, prefix=prefix)
        peak = int((group / "memory.max_usage_in_bytes").read_text())
        return seconds, graded, peak
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def bench_memory(checkpoint):
    if not (CGROUP / "memory.limit_in_bytes").exists() or os.geteuid() != 0:
        print("  skipped: needs root and a cgroup v1 memory controller at /sys/fs/cgroup/memory")
        return None
    if not Path(checkpoint).is_file():
        print(f"  skipped: no checkpoint at {checkpoint}")
        return None
    subprocess.run(["sync"])
    rows = []
    for limit in (None, 768, 512):
        seconds, graded, peak = _in_cgroup(limit, checkpoint)
        rows.append((limit, seconds, peak, _total(graded)))
        print(f"  limit {limit or 'none'}: {seconds:.1f} s, peak {peak / 2**20:.0f} MB, {_total(graded)}", flush=True)
    free = rows[0][1]
    table = "| memory limit | wall time | ratio to unlimited | peak in the cgroup | result |\n|---|---|---|---|---|\n" + \
        "".join(f"| {f'{lim} MB' if lim else 'none'} | {s:.1f} s | {s / free:.2f}x | {peak / 2**20:.0f} MB | {res} |\n"
                for lim, s, peak, res in rows)
    body = (f"A whole grading (five units and the final check, {TOTAL} points) in a cgroup v1 memory cgroup: the grader, "
            f"its sandboxed worker and the library pages they touch.\n\n{table}"
            f"\n<!-- peak_mb: {rows[0][2] / 2**20:.0f} -->\n<!-- s_at_512: {rows[2][1]:.1f} -->")
    write_section("memory", body, f"python -m grader.bench --only memory --checkpoint {_shown(checkpoint)}")
    return rows


def bench_batch(n=6, jobs=2):
    from .batch import bench_batch as run
    res = run(n, jobs)
    body = (f"`python -m grader batch` on {res['submissions']} copies of the solutions (units: "
            f"{', '.join(res['units'])}), {res['jobs']} at once on {res['cpus']} cores: {res['seconds']:.1f} s, "
            f"**{res['per_minute']:.1f} submissions per minute** (outcomes: {res['statuses']}). Each submission "
            "runs in its own sandboxed worker, so one that hangs or eats memory costs only its own time limit.")
    write_section("batch", body, f"python -m grader.bench --only batch  (n={n}, jobs={jobs})")
    return res


def main(argv=None):
    p = ArgumentParser(prog="python -m grader.bench", description="Measure and record the grader's speed.")
    p.add_argument("--only", nargs="+", choices=["grader", "whole", "memory", "batch", "pythons"],
                   default=["grader", "whole", "memory", "batch"])
    p.add_argument("--checkpoint", default=str(KIT / "runs" / "final.pt"), help="checkpoint for the final check")
    p.add_argument("--pythons", nargs="+", default=[], metavar="PATH",
                   help="with --only pythons: other interpreters to run the kit on")
    args = p.parse_args(argv)
    bad = [py for py in args.pythons if not (os.path.isfile(py) and os.access(py, os.X_OK))]
    if bad:
        p.error(f"--pythons {bad[0]}: not an interpreter that can be run")
    for name in args.only:
        print(f"bench: {name} ...", flush=True)
        run = {"grader": bench_grader, "whole": lambda: bench_whole(args.checkpoint),
               "memory": lambda: bench_memory(args.checkpoint), "batch": bench_batch,
               "pythons": lambda: bench_pythons(args.pythons)}[name]
        print(f"  {run()}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
