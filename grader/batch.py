"""``python -m grader batch``: grade a folder of submissions, each in its own process.

    python -m grader batch SUBMISSIONS_DIR --csv grades.csv [--jobs N] [--timeout S]
                           [--call-timeout S] [--only MODULE ...] [--results DIR] [--fresh]
    python -m grader batch --bench N [--jobs J]       # submissions per minute on this machine

Each subfolder of SUBMISSIONS_DIR is one submission: the five exercise files, and
``final.pt`` for the final check. Each is graded by its own ``python -m grader``
process with a wall-clock limit (``--timeout``, per submission): a submission that
crashes, hangs or eats memory costs its own slot until its limit, never the others'.
Its sandboxed worker dies with it (the worker asks the kernel for that).

The CSV has one row per submission (name, per-module scores, total, status) and is
rewritten atomically after every submission, so an interrupted run leaves a valid
file; each submission's ``results.json`` (Gradescope's format, with every failure's
message) goes to ``--results`` (default: next to the CSV). Running the same command
again resumes: a submission whose files, options and grader are unchanged since it
was graded is not graded again.
"""
import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from lab.files import write_text

from .report import write_json

KIT = Path(__file__).resolve().parent.parent
MODULES = ["residual", "rmsnorm", "attention", "block", "decoder", "final"]
UNITS = MODULES[:-1]
FILES = ["residual.py", "rmsnorm.py", "attention.py", "block.py", "decoder.py"]
CHECKPOINT = "final.pt"
# Statuses a rerun keeps; "timeout" and "crashed" are graded again (a busy machine, say).
FINAL_STATUSES = ("graded", "invalid")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m grader batch",
                                description="Grade every subfolder of a folder of submissions into one CSV.")
    p.add_argument("submissions", nargs="?", help="folder with one subfolder per submission")
    p.add_argument("--csv", metavar="PATH", help="where to write the grades")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="submissions graded at once (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="wall-clock seconds allowed per submission, all checks together (default: %(default)s)")
    p.add_argument("--call-timeout", type=float, default=20.0,
                   help="seconds allowed per call into a submission (default: %(default)s)")
    p.add_argument("--only", nargs="+", choices=MODULES, metavar="MODULE",
                   help="grade only these modules: " + " ".join(MODULES))
    p.add_argument("--results", metavar="DIR", help="per-submission results.json files (default: CSV name + '-results')")
    p.add_argument("--fresh", action="store_true", help="grade everything again, ignoring earlier results")
    p.add_argument("--user", metavar="NAME", help="run the submitted code as this OS user (needs root)")
    p.add_argument("--bench", type=int, metavar="N", help="time N copies of the solutions and print submissions/minute")
    args = p.parse_args(argv)
    if args.bench is None and (not args.submissions or not args.csv):
        p.error("give SUBMISSIONS_DIR and --csv PATH (or --bench N)")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


# -- one submission -----------------------------------------------------------------------------

def _grader_digest():
    """Changes whenever the grader or its checks change, so a rerun never reuses a stale grade."""
    h = hashlib.sha256()
    for root in (KIT / "grader", KIT / "solutions"):
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(KIT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint(folder, options):
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for name in [*FILES, CHECKPOINT]:
        f = Path(folder) / name
        h.update(name.encode())
        h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()


def scores_by_module(results):
    """{module: points} from a results.json (test names are ``module: what``)."""
    per = {}
    for t in results.get("tests", []):
        module = t["name"].split(":", 1)[0]
        per[module] = per.get(module, 0) + t["score"]
    return per


def _last_line(text):
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


class Runner:
    """Starts grading processes and can kill them all (Ctrl-C)."""

    def __init__(self, threads, user=None):
        self.threads = threads
        self.user = user
        self.procs = set()
        self.lock = threading.Lock()
        self.stopping = False

    def grade(self, folder, work, modules, timeout, call_timeout):
        """Grade one folder in a fresh process; return (status, results dict or None, message, seconds)."""
        out_json = Path(work) / "results.json"
        cmd = [sys.executable, "-m", "grader", "--impl", str(folder), "--json", str(out_json), "--no-color",
               "--timeout", str(call_timeout), "--only", *modules]
        if "final" in modules:
            cmd += ["--checkpoint", str(Path(folder) / CHECKPOINT)]
        if self.user:
            cmd += ["--user", self.user]
        env = dict(os.environ, GRADER_THREADS=str(self.threads), OMP_NUM_THREADS=str(self.threads))
        t0 = time.monotonic()
        with open(Path(work) / "output.txt", "w+") as log:
            with self.lock:
                if self.stopping:
                    return "interrupted", None, "not graded: interrupted", 0.0
                proc = subprocess.Popen(cmd, cwd=KIT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
                self.procs.add(proc)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill(proc)
                return "timeout", None, f"killed after {timeout:g} s (the limit per submission)", time.monotonic() - t0
            finally:
                with self.lock:
                    self.procs.discard(proc)
            seconds = time.monotonic() - t0
            log.seek(0)
            text = log.read()
        if self.stopping and code < 0:
            return "interrupted", None, "not graded: interrupted", seconds
        if code in (0, 1) and out_json.is_file():
            return "graded", json.loads(out_json.read_text()), "", seconds
        if code == 2:  # a bad submission folder: one clear line from the grader
            return "invalid", None, _last_line(text), seconds
        if code == 3:
            return "grader-error", None, _last_line(text), seconds
        return "crashed", None, f"the grading process exited with code {code}: {_last_line(text)}", seconds

    @staticmethod
    def _kill(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the grader; its worker dies with it (PR_SET_PDEATHSIG)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def kill_all(self):
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            self._kill(p)


# -- the batch ------------------------------------------------------------------------------------

def _row(name, modules, status, results, message, seconds):
    row = {"submission": name}
    per = scores_by_module(results) if results else {}
    for m in modules:
        row[m] = _fmt(per.get(m, 0)) if results else ""
    row["total"] = _fmt(results["score"]) if results else "0"
    row["max_score"] = _fmt(results["max_score"]) if results else ""
    row["status"] = status
    row["seconds"] = f"{seconds:.1f}"
    row["message"] = message
    return row


def _fmt(x):
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def write_csv(path, rows, modules):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["submission", *modules, "total", "max_score", "status", "seconds", "message"])
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["submission"]):
        w.writerow(r)
    write_text(path, buf.getvalue())


def symlinks(folder):
    """The submission's files that are symbolic links (to another student's work, or the kit's)."""
    return [f for f in [*FILES, CHECKPOINT] if (Path(folder) / f).is_symlink()]


def run_batch(submissions, csv_path, jobs=1, timeout=900.0, call_timeout=20.0, modules=None, results_dir=None,
              fresh=False, progress=True, user=None):
    """Grade every subfolder of ``submissions``; return the CSV rows (dicts). See the module docstring."""
    from tqdm import tqdm
    modules = [m for m in MODULES if m in (modules or MODULES)]
    root = Path(submissions)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    csv_path = Path(csv_path)
    results_dir = Path(results_dir) if results_dir else csv_path.with_name(csv_path.stem + "-results")
    results_dir.mkdir(parents=True, exist_ok=True)
    options = {"modules": modules, "timeout": timeout, "call_timeout": call_timeout, "grader": _grader_digest()}

    rows, todo = {}, []
    for f in folders:
        links = ["the folder itself"] if f.is_symlink() else symlinks(f)
        if links:
            rows[f.name] = _row(f.name, modules, "invalid", None, "symbolic link, not graded: " + ", ".join(links), 0)
            continue
        key = fingerprint(f, options)
        meta = results_dir / f"{f.name}.row.json"
        if not fresh and meta.is_file():
            try:
                saved = json.loads(meta.read_text())
                if saved.get("key") == key and saved["row"]["status"] in FINAL_STATUSES:
                    rows[f.name] = saved["row"]
                    continue
            except (ValueError, KeyError):
                pass
        todo.append((f, key))
    write_csv(csv_path, rows.values(), modules)

    runner = Runner(threads=max(1, (os.cpu_count() or 1) // jobs), user=user)
    work_root = tempfile.mkdtemp(prefix="grader-batch-")
    bar = tqdm(total=len(folders), initial=len(rows), unit="submission", desc="grading", disable=not progress,
               file=sys.stderr)

    def one(folder, key):
        work = Path(work_root) / folder.name
        work.mkdir()
        status, results, message, seconds = runner.grade(folder, work, modules, timeout, call_timeout)
        row = _row(folder.name, modules, status, results, message, seconds)
        if results is not None:
            write_json(results_dir / f"{folder.name}.json", results)
        if status != "interrupted":
            write_json(results_dir / f"{folder.name}.row.json", {"key": key, "row": row})
        shutil.copy(work / "output.txt", results_dir / f"{folder.name}.txt")
        return row

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(one, f, key) for f, key in todo]
        for fut in as_completed(futures):
            row = fut.result()
            if row["status"] != "interrupted":
                rows[row["submission"]] = row
                write_csv(csv_path, rows.values(), modules)
            bar.update(1)
            bar.set_postfix_str(f"{row['submission']}: {row['status']} {row['total']}")
    except BaseException:
        runner.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        write_csv(csv_path, rows.values(), modules)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        shutil.rmtree(work_root, ignore_errors=True)
    return sorted(rows.values(), key=lambda r: r["submission"])


def bench_batch(n_submissions, jobs, modules=UNITS, timeout=900.0):
    """Grade ``n_submissions`` copies of the solutions with ``jobs`` at once; return the throughput.

    ``{"submissions", "jobs", "modules", "seconds", "per_minute", "statuses", "cpus"}``;
    ``make bench`` reports ``per_minute``.
    """
    tmp = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    try:
        for i in range(n_submissions):
            d = tmp / "submissions" / f"s{i:03d}"
            d.mkdir(parents=True)
            for f in FILES:
                shutil.copy(KIT / "solutions" / f, d / f)
        t0 = time.monotonic()
        rows = run_batch(tmp / "submissions", tmp / "grades.csv", jobs=jobs, timeout=timeout, modules=modules,
                         progress=False)
        seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"submissions": n_submissions, "jobs": jobs, "modules": list(modules), "seconds": round(seconds, 2),
            "per_minute": round(n_submissions * 60.0 / seconds, 2), "statuses": statuses, "cpus": os.cpu_count()}


def landlock_abi():
    """The Landlock ABI a fresh process can enforce here, 0 for none (probed in a throwaway process)."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import worker; "
             "print(worker.landlock([sys.prefix, sys.base_prefix], [], []))")
    try:
        out = subprocess.run([sys.executable, "-I", "-c", probe, str(KIT / "grader")], capture_output=True,
                             text=True, timeout=60)
        return int(out.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError, OSError):
        return 0


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.bench is not None:
        print(json.dumps(bench_batch(args.bench, args.jobs)))
        return 0
    if args.user:
        from .__main__ import user_error
        if user_error(args.user):
            print(f"error: {user_error(args.user)}", file=sys.stderr)
            return 2
    root = Path(args.submissions)
    if not root.is_dir():
        print(f"error: {root}: no such folder (give the folder with one subfolder per submission)", file=sys.stderr)
        return 2
    if not any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        print(f"error: {root} has no submission subfolders", file=sys.stderr)
        return 2
    if not args.user and not landlock_abi():
        print("warning: this kernel offers no Landlock, so the submissions' C code is fenced by nothing but "
              "file permissions: grade untrusted submissions as root with --user NAME, or in a container "
              "(docs/threat-model.md)", file=sys.stderr)
    try:
        rows = run_batch(root, args.csv, jobs=args.jobs, timeout=args.timeout, call_timeout=args.call_timeout,
                         modules=args.only, results_dir=args.results, fresh=args.fresh, user=args.user)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the grades so far are in {args.csv}; run the same command again to resume",
              file=sys.stderr)
        return 130
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(rows)} submissions graded into {args.csv}: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0 if all(r["status"] == "graded" for r in rows) else 1
