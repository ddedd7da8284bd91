"""The grader's speed and memory, written into BENCHMARKS.md (kit/benchmarks.py).

    python -m grader.bench [--only grader whole memory batch] [--checkpoint runs/final.pt]

- grader: wall time of grading the solutions' five units (the worker's start included)
- whole:  wall time of a whole grading, the final check on a trained checkpoint included
- memory: peak memory of a whole grading in a memory cgroup (grader, worker and the library pages they
          touch), and the same grading inside a 768 MB and a 512 MB limit (cgroup v1, as root)
- batch:  submissions graded per minute by `python -m grader batch`
- final:  the final check at Gradescope's 0.5 CPU (a cgroup v1 CPU quota, as root): the check alone and a whole
          grading with a checkpoint, in float32 (GRADER_BF16=0, as on CPUs without native bf16) and bf16,
          the full measurement's 782 windows, and batch grading of submissions that carry checkpoints
- pythons: the kit on other interpreters (--pythons PATH ...): a grading of the units and the quick tests
"""
import json
import math
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

from .cgroup import rmdir
from .report import num

KIT = Path(__file__).resolve().parent.parent
CGROUP = Path("/sys/fs/cgroup/memory")
UNIT_POINTS = TOTAL - POINTS["final"]


def grading(units=None, checkpoint=None, prefix=(), python=sys.executable, env=None, corpus=None, kit=KIT):
    """``(seconds, completed process, the grading as the grader recorded it, or None)``."""
    from grader.run import Grading
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        record = Path(tmp) / "record.json"
        cmd = [*prefix, python, "-m", "grader", "--impl", "solutions", "--no-color", "--record", str(record)]
        if units:
            cmd += ["--only", *units]
        if checkpoint:
            cmd += ["--checkpoint", str(checkpoint)]
        if corpus:
            cmd += ["--corpus", str(corpus)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=kit, capture_output=True, text=True, env={**os.environ, **(env or {})})
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
        rmdir(group)


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


CPU_GROUPS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpuacct"))
EARLIER = "earlier kit"
QUOTA = 0.5  # CPUs: Gradescope's default
SHARES = 16384  # the bench's group against its neighbours (1024 each): the quota, not the machine's load, bounds it


class CpuGroup:
    """A fresh cgroup v1 CPU group (and cpuacct group, for the CPU seconds its processes use): ``prefix`` runs a
    command inside it. ``cpus`` sets a CFS quota (None: no quota); its shares are raised, so that on a loaded
    machine the quota, not the neighbours, is what bounds the command (the load is reported beside it)."""

    def __init__(self, cpus, label):
        self.folders = []
        for root in CPU_GROUPS:
            if root.is_dir() and not any(f.resolve() == root.resolve() for f in [g.parent for g in self.folders]):
                folder = root / f"kit-bench-{os.getpid()}-{label}"
                folder.mkdir()
                self.folders.append(folder)
        cpu = self.folders[0]
        (cpu / "cpu.shares").write_text(str(SHARES))
        if cpus:
            (cpu / "cpu.cfs_period_us").write_text("100000")
            (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))
        procs = " ".join(str(f / "cgroup.procs") for f in self.folders)
        self.prefix = ["sh", "-c", f'for f in {procs}; do echo $$ > "$f"; done && exec "$@"', "sh"]

    def cpu_seconds(self):
        for f in self.folders:
            if (f / "cpuacct.usage").is_file():
                return int((f / "cpuacct.usage").read_text()) / 1e9
        return math.nan

    def run(self, fn, *args, **kwargs):
        """``(fn's result, CPU seconds the group used meanwhile)``."""
        before = self.cpu_seconds()
        out = fn(*args, prefix=self.prefix, **kwargs)
        return out, self.cpu_seconds() - before

    def close(self):
        for f in self.folders:
            rmdir(f)


def _cpu_groups_usable():
    return os.geteuid() == 0 and (CPU_GROUPS[0] / "cpu.cfs_quota_us").is_file()


FULL_MEASUREMENT = """
import json, sys, time
import torch
from grader.measure import reference_model, sample
from grader.reference import Live
from kit.machine import usable_threads
from kit.perplexity import LOOKS, windows
from kit.syllabus import CURRICULUM
torch.manual_seed(0)
ref = Live("solutions")
weights = {k: v.clone() for k, v in ref.model(65, dict(CURRICULUM)).state_dict().items()}
model = reference_model(ref, 65, dict(CURRICULUM), weights)
ids = torch.randint(0, 65, (1_000_000,))
starts = windows(len(ids), 256, LOOKS[-1] * 256, 1)
t0, c0 = time.perf_counter(), time.process_time()
est = sample(model, ids, starts, 256, threads=usable_threads(torch.get_num_threads()))
print(json.dumps({"windows": est.windows, "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""


def _full_measurement(prefix, env):
    """The grader's measurement of all 782 windows (what a model within about 2 % of the bar costs), in-process."""
    p = subprocess.run([*prefix, sys.executable, "-c", FULL_MEASUREMENT], cwd=KIT, capture_output=True, text=True,
                       env={**os.environ, **env})
    if p.returncode:
        raise SystemExit(f"bench: the full measurement failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _final_note(graded):
    return next((r.note or (r.failure.got if r.failure else "") for r in graded.results if r.unit == "final"), "") \
        if graded is not None else "no grading"


def _windows_needed(seeds=40):
    """Median windows the sequential test measures for a model 2 %, 4 % and 8 % under the bar (and 8 % over), from
    simulated per-window losses with the spread of trained models (0.18 nats, BENCHMARKS.md)."""
    import random

    from kit.perplexity import LOOKS, Sequential, run
    from kit.syllabus import TARGET_PERPLEXITY as bar
    out = {}
    for f in (0.92, 0.96, 0.98, 1.08):
        counts = []
        for seed in range(seeds):
            rng = random.Random(seed)
            losses = [math.log(bar * f) - 4 * 0.09 + rng.gammavariate(4, 0.09) for _ in range(LOOKS[-1])]
            counts.append(run(Sequential(bar, 256), lambda i, j: losses[i:j], 16)[0].windows)
        out[f] = statistics.median(counts)
    return out


PLAIN = "float32, without the control variate (GRADER_CONTROL=0)"


def bench_final(checkpoint, corpus=None, repeats=3, baseline=None):
    """The final check and a whole grading at 0.5 CPU, float32 and bf16 alternately in one run (and an earlier kit's,
    ``baseline``: a folder holding it, as `git archive` writes it, graded as it decides its own precision)."""
    from kit.machine import cpu_has_bf16
    if not _cpu_groups_usable():
        print("  skipped: needs root and cgroup v1's cpu controller at /sys/fs/cgroup/cpu")
        return None
    if not Path(checkpoint).is_file():
        print(f"  skipped: no checkpoint at {checkpoint} (train one with `make train IMPL=solutions`)")
        return None
    shown = _shown(checkpoint) + (f" --corpus {_shown(corpus)}" if corpus else "")
    checkpoint, corpus = Path(checkpoint).resolve(), Path(corpus).resolve() if corpus else None  # for any kit's cwd
    # the sequential test on its control variate (kit/control.py), and without it (GRADER_CONTROL=0) for the ratio
    precisions = [("float32", {"GRADER_BF16": "0"}), (PLAIN, {"GRADER_BF16": "0", "GRADER_CONTROL": "0"})] + (
        [("bf16", {"GRADER_BF16": "1"})] if cpu_has_bf16() else [])
    kits = {name: KIT for name, _ in precisions}
    if baseline:  # the earlier kit decides its precision itself unless its measure.py reads GRADER_BF16
        for name, env in list(precisions):
            kits[f"{EARLIER}, {name}"] = Path(baseline).resolve()
            precisions.append((f"{EARLIER}, {name}", env))
    load = [os.getloadavg()[0]]
    times, notes, full = {}, {}, {}
    group = CpuGroup(QUOTA, "final")
    try:
        for _ in range(repeats):
            for name, env in precisions:  # alternately: the ratios come from the same minutes of the machine
                for what, units in (("final", ["final"]), ("whole", None)):
                    (seconds, p, graded), cpu = group.run(grading, units, checkpoint, env=env, corpus=corpus,
                                                          kit=kits[name])
                    if graded is None:
                        raise SystemExit(f"bench: no grading:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
                    times.setdefault((name, what), []).append((seconds, cpu))
                    notes[name] = _final_note(graded)
                    print(f"  {name} {what}: {seconds:.1f} s, {cpu:.1f} CPU s, {_total(graded)}", flush=True)
                load.append(os.getloadavg()[0])
        for name, env in precisions:
            if name.startswith(EARLIER) or name == PLAIN:
                continue
            full[name] = _full_measurement(group.prefix, env)
            print(f"  {name} full measurement: {full[name]}", flush=True)
    finally:
        group.close()
    load.append(os.getloadavg()[0])

    def cell(name, what):
        rows = times[(name, what)]
        wall, cpu = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        return wall, cpu, f"**{wall:.1f} s** ({min(r[0] for r in rows):.1f}-{max(r[0] for r in rows):.1f}), " \
                          f"{cpu:.1f} CPU s"

    table = "| precision of the measurement | the final check alone (`--only final`) | whole grading (100 points) | " \
            "the full measurement, 782 windows |\n|---|---|---|---|\n"
    for name, _ in precisions:
        f = full.get(name)
        table += (f"| {name} | {cell(name, 'final')[2]} | {cell(name, 'whole')[2]} | " + (
            f"**{f['seconds']:.1f} s**, {f['cpu']:.1f} CPU s ({1000 * f['seconds'] / f['windows']:.0f} ms a window) |\n"
            if f else "- |\n"))
    need = _windows_needed()
    per_window = {name: f["seconds"] / f["windows"] for name, f in full.items()}
    projected = "; ".join(
        f"{abs(1 - k):.0%} {'under' if k < 1 else 'over'}: {n:g} windows, "
        + " / ".join(f"{n * w:.1f} s in {name}" for name, w in per_window.items())
        for k, n in need.items())
    whole32 = cell("float32", "whole")[0]
    body = (f"Wall time (median of {repeats}, range) and CPU seconds of the grading's processes, each inside a cgroup "
            f"v1 CPU group with a quota of {QUOTA} CPU (cpu.cfs_quota_us={int(QUOTA * 100000)}, "
            "cpu.cfs_period_us=100000; "
            f"its cpu.shares raised to {SHARES} so that the quota, not the neighbours, bounds it), "
            f"`python -m grader --impl solutions --checkpoint {shown}`; float32 is `GRADER_BF16=0` (as every CPU "
            "without native bf16 measures), bf16 `GRADER_BF16=1`, alternately in one run. Load average (1 min) of the "
            f"machine during the run: {', '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} cores.\n\n{table}\n"
            f"The final check reported (float32): {notes.get('float32', '')}\n\n"
            "The sequential test measures as many windows as its verdict needs (kit/perplexity.py), on the regression "
            "estimator with each window's 5-gram loss as its control (kit/control.py; the plain test for comparison: "
            f"{PLAIN}): the median number "
            "for a model at a given distance from the bar, from simulated window losses with the spread of trained "
            f"models, and what those windows cost at {QUOTA} CPU: {projected}. Near the bar (within about 2 %) a model "
            "gets the full measurement."
            + (f"\n\nThe {EARLIER}: {baseline}, the kit before the sequential test (its grader/measure.py reading "
               "GRADER_BF16 by a one-line patch: `MEASURE_BF16 = cpu_has_bf16() and os.environ.get('GRADER_BF16') != "
               "'0'`), graded the same way in the same run; its final check reported (float32): "
               f"{notes.get(EARLIER + ', float32', '')}\n" if baseline else "\n")
            + f"<!-- whole_s_fp32_half_cpu: {whole32:.1f} -->\n"
            f"<!-- full_measurement_s_fp32_half_cpu: {full['float32']['seconds']:.1f} -->")
    write_section("final", body, f"python -m grader.bench --only final --checkpoint {shown}"
                  + (f" --baseline {baseline}" if baseline else ""))
    return times, full


def bench_batch_checkpoints(checkpoints, n=6, jobs=2):
    """``python -m grader batch`` on copies of the solutions that each carry one of ``checkpoints`` as final.pt, each
    checkpoint a batch of its own, with the final check in float32 (``GRADER_BF16=0``, as on a CPU without native
    bf16): how many submissions a minute, by how far the checkpoints' models are from the bar."""
    import csv
    import shutil

    rows_out = []
    for checkpoint in checkpoints:
        if not Path(checkpoint).is_file():
            print(f"  skipped: no checkpoint at {checkpoint}")
            continue
        group = CpuGroup(None, "batch") if _cpu_groups_usable() else None
        tmp = Path(tempfile.mkdtemp(prefix="bench-batch-final-"))
        try:
            for i in range(n):
                sub = tmp / "submissions" / f"student{i:02d}"
                shutil.copytree(KIT / "solutions", sub, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
                shutil.copy(checkpoint, sub / "final.pt")
            load0 = os.getloadavg()[0]
            before = group.cpu_seconds() if group else math.nan
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "grader", "batch", str(tmp / "submissions"), "--csv", str(tmp / "grades.csv"),
                   "--jobs", str(jobs)]
            p = subprocess.run([*(group.prefix if group else []), *cmd], cwd=KIT, capture_output=True, text=True,
                               env={**os.environ, "GRADER_BF16": "0"})
            seconds = time.perf_counter() - t0
            cpu = (group.cpu_seconds() if group else math.nan) - before
            load1 = os.getloadavg()[0]
            rows = list(csv.DictReader((tmp / "grades.csv").open())) if (tmp / "grades.csv").is_file() else []
            # what the final check measures on this checkpoint (the published seed's windows; outside the timing)
            record = tmp / "final.record.json"
            subprocess.run([sys.executable, "-m", "grader", "--impl", "solutions", "--only", "final", "--checkpoint",
                            str(checkpoint), "--record", str(record)], cwd=KIT, capture_output=True,
                           env={**os.environ, "GRADER_BF16": "0"})
            results = json.loads(record.read_text())["results"] if record.is_file() else []
            measured = next((r.get("measured") or {} for r in results if r.get("unit") == "final"), {})
        finally:
            if group:
                group.close()
            shutil.rmtree(tmp, ignore_errors=True)
        if len(rows) != n:
            raise SystemExit(f"bench: batch graded {len(rows)} of {n}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        rows_out.append({"checkpoint": _shown(checkpoint), "seconds": seconds, "per_minute": n / seconds * 60,
                         "cpu": cpu / n, "totals": sorted({r["total"] for r in rows}),
                         "perplexity": f"{measured['perplexity']:.3f}" if "perplexity" in measured else "?",
                         "windows": measured.get("windows", "?"),
                         "load": (load0, load1)})
    if not rows_out:
        return None
    cores = os.cpu_count()
    lines = [f"`python -m grader batch` on {n} copies of the solutions, each with the checkpoint as its final.pt (all "
             f"100 points' checks), {jobs} at once on {cores} cores, the final check in float32 (`GRADER_BF16=0`, as "
             "on every CPU without native bf16), one batch per checkpoint:", "",
             "| final.pt | its perplexity (the final check) | windows measured | totals | wall time | submissions a "
             "minute | CPU s a submission | a minute on idle cores | load (1 min) before, after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows_out:
        lines.append(f"| `{r['checkpoint']}` | {r['perplexity']} | {r['windows']} | {', '.join(r['totals'])} | "
                     f"{r['seconds']:.1f} s | **{r['per_minute']:.1f}** | {r['cpu']:.1f} | "
                     f"{cores * 60 / r['cpu']:.1f} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |")
    write_section("batch-checkpoints", "\n".join(lines),
                  "python -m grader.bench --only batch-checkpoints --batch-checkpoints "
                  f"{' '.join(r['checkpoint'] for r in rows_out)}  (n={n}, jobs={jobs})")
    return [(r["per_minute"], r["cpu"]) for r in rows_out]


def main(argv=None):
    p = ArgumentParser(prog="python -m grader.bench", description="Measure and record the grader's speed.")
    p.add_argument("--only", nargs="+", choices=["grader", "whole", "memory", "batch", "pythons", "final",
                                                 "batch-checkpoints"],
                   default=["grader", "whole", "memory", "batch"])
    p.add_argument("--checkpoint", default=str(KIT / "runs" / "final.pt"), help="checkpoint for the final check")
    p.add_argument("--batch-checkpoints", nargs="+", metavar="PT", help="with --only batch-checkpoints: one batch "
                                                                         "for each (default: --checkpoint)")
    p.add_argument("--corpus", help="with --only final: the corpus the checkpoint was trained on (default: "
                                    "TinyShakespeare)")
    p.add_argument("--baseline", metavar="DIR", help="with --only final: an earlier kit (`git archive REV | tar -x -C "
                                                     "DIR`) graded the same way in the same run")
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
               "pythons": lambda: bench_pythons(args.pythons),
               "final": lambda: bench_final(args.checkpoint, args.corpus, baseline=args.baseline),
               "batch-checkpoints": lambda: bench_batch_checkpoints(args.batch_checkpoints or [args.checkpoint])}[name]
        print(f"  {run()}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
