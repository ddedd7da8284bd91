"""``python -m grader batch``: grade a folder of submissions, each in its own process.

    python -m grader batch SUBMISSIONS_DIR --csv grades.csv [--jobs N] [--timeout S]
                           [--call-timeout S] [--only UNIT ...] [--results DIR] [--fresh] [--user NAME]
    python -m grader batch --bench N [--jobs J]       # submissions per minute on this machine

Each subfolder of SUBMISSIONS_DIR is one submission: the five exercise files, and ``final.pt`` for
the final check. Each is graded by its own ``python -m grader --untrusted`` process
(grader/runner.py) with a wall-clock limit (``--timeout``, per submission): a submission that
crashes, hangs or eats memory costs its own slot until its limit, never the others'.

The CSV has one row per submission (name, per-unit scores, total, status, message) and is rewritten
atomically after every submission, so an interrupted run leaves a valid file; each submission's
results.json (Gradescope's format, with every failure's message) and the grader's output go to
``--results`` (default: next to the CSV). Running the same command again resumes: a submission whose
files, options and grader are unchanged since it was graded is not graded again.
"""
import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from kit import syllabus
from kit.cli import ArgumentParser, UsageError, positive, writable
from kit.files import remove_tree, write_text
from kit.outcome import render

from . import runner
from .policy import enabled
from .report import csv_row, gradescope, write_json

KIT = Path(__file__).resolve().parent.parent
CHECKPOINT = "final.pt"
# Statuses a rerun keeps; the others ("timeout", "crashed", "grader-error", "refused") are graded again.
FINAL_STATUSES = ("graded", "invalid")


def parse(argv):
    p = ArgumentParser(prog="python -m grader batch",
                                description="Grade every subfolder of a folder of submissions into one CSV.")
    p.add_argument("submissions", nargs="?", help="folder with one subfolder per submission")
    p.add_argument("--csv", metavar="PATH", help="where to write the grades")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="submissions graded at once (default: %(default)s)")
    p.add_argument("--timeout", type=positive, default=900.0,
                   help="wall-clock seconds allowed per submission, all checks together (default: %(default)s)")
    p.add_argument("--call-timeout", type=positive, default=20.0,
                   help="seconds allowed per call into a submission (default: %(default)s)")
    p.add_argument("--only", nargs="+", choices=syllabus.NAMES, metavar="UNIT",
                   help="grade only these: " + " ".join(syllabus.NAMES))
    p.add_argument("--results", metavar="DIR", help="per-submission results (default: CSV name + '-results')")
    p.add_argument("--fresh", action="store_true", help="grade everything again, ignoring earlier results")
    p.add_argument("--user", metavar="NAME", help="run the submitted code as this OS user (needs root)")
    p.add_argument("--seed", default=os.environ.get("GRADER_SEED", ""),
                   help="the course's grading seed (default: $GRADER_SEED, else the one kept beside the CSV, "
                        "made on the first run)")
    p.add_argument("--allow-weak-sandbox", action="store_true",
                   help="grade even where no real sandbox can start (bubblewrap or --user)")
    p.add_argument("--policy", choices=("on", "off"),
                   help="the course's rules on library shortcuts, grader/policy.py (default: $KIT_POLICY, else on)")
    p.add_argument("--bench", type=int, metavar="N", help="time N copies of the solutions and print submissions/minute")
    args = p.parse_args(argv)
    if args.bench is None and (not args.submissions or not args.csv):
        p.error("give SUBMISSIONS_DIR and --csv PATH (or --bench N)")
    if args.jobs < 1:
        p.error(f"argument --jobs: must be at least 1, not {args.jobs}")
    return args


# -- one submission -----------------------------------------------------------------------------

def _grader_digest():
    """Changes whenever the grader, its checks or the reference change, so a rerun never reuses a stale grade."""
    h = hashlib.sha256()
    for root in (KIT / "grader", KIT / "solutions", KIT / "kit"):
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(KIT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint(folder, options):
    """What a rerun compares: the options and the submission's files, each read no further than the grader reads
    it (a file over that limit is fingerprinted by its size and time, never read: a 6 GiB sparse final.pt costs
    nothing here, and the grading refuses it)."""
    from kit.checkpoint import MAX_BYTES

    from .sandbox import MAX_SOURCE
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for name in [*syllabus.FILES, CHECKPOINT]:
        f = Path(folder) / name
        h.update(name.encode())
        limit = MAX_BYTES if name == CHECKPOINT else MAX_SOURCE
        try:
            st = f.stat()
            if not f.is_file():
                raise FileNotFoundError
            if st.st_size > limit:
                h.update(f"<{st.st_size} bytes, {st.st_mtime_ns}>".encode())
                continue
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            h.update(b"<missing>")
    return h.hexdigest()


def memory_per_job(jobs):
    """MB for each grading's worker when ``jobs`` run at once: their sum, with each grader's own, fits this machine
    (its memory cgroup where it has one), so a submission that hogs memory reaches its own limit first."""
    from kit.machine import memory_limit_mb
    share = memory_limit_mb() // jobs - runner.GRADER_MB
    return max(512, min(4096, share))


def write_csv(path, rows, units):
    buf = io.StringIO()
    # every cell quoted, and each submitted text escaped by csv_row (a leading = + - @ made harmless to spreadsheets)
    w = csv.DictWriter(buf, fieldnames=["submission", *units, "total", "max_score", "status", "seconds", "message"],
                       quoting=csv.QUOTE_ALL)
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["submission"]):
        w.writerow(r)
    write_text(path, buf.getvalue())


def symlinks(folder):
    """The submission's files that are symbolic links (to another student's work, or the kit's)."""
    return [f for f in [*syllabus.FILES, CHECKPOINT] if (Path(folder) / f).is_symlink()]


def batch_seed(csv_path):
    """The seed kept beside the CSV (``grades-seed.txt``, readable by its owner only), made on the first run.

    Never the published seed: its inputs, and the reference's answers to them, ship with the student
    release, and a submission that replays them would pass every check it can recognise. Kept, so
    that a resumed or repeated batch grades on the same inputs."""
    path = Path(csv_path).with_name(Path(csv_path).stem + "-seed.txt")
    try:
        seed = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        seed = ""
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the batch's grading seed ({e.__class__.__name__}); give --seed") from None
    if seed:
        return seed, path, False
    seed = secrets.token_hex(16)
    try:
        write_text(path, seed + "\n")
        os.chmod(path, 0o600)
    except OSError as e:
        raise UsageError(f"{path}: cannot keep the batch's grading seed there ({e.strerror or e})") from None
    return seed, path, True


def run_batch(submissions, csv_path, jobs=1, timeout=900.0, call_timeout=20.0, units=None, results_dir=None,
              fresh=False, progress=True, user=None, seed="", allow_weak=False, policy=None):
    """Grade every subfolder of ``submissions``; return the CSV rows (dicts). See the module docstring."""
    from tqdm import tqdm
    units = syllabus.in_order(units or syllabus.NAMES)
    root = Path(submissions)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    csv_path = Path(csv_path)
    results_dir = Path(results_dir) if results_dir else csv_path.with_name(csv_path.stem + "-results")
    results_dir.mkdir(parents=True, exist_ok=True)
    options = {"units": units, "timeout": timeout, "call_timeout": call_timeout, "grader": _grader_digest(),
               "seed": hashlib.sha256(seed.encode()).hexdigest(), "policy": enabled(policy)}

    rows, todo = {}, []
    for f in folders:
        links = ["the folder itself"] if f.is_symlink() else symlinks(f)
        if links:
            rows[f.name] = csv_row(f.name, units, None, "invalid", "symbolic link, not graded: " + ", ".join(links), 0)
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
    write_csv(csv_path, rows.values(), units)

    registry = runner.Processes()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    memory_mb = int(os.environ.get("GRADER_MEMORY_MB") or 0) or memory_per_job(jobs)
    work_root = Path(tempfile.mkdtemp(prefix="grader-batch-"))
    bar = tqdm(total=len(folders), initial=len(rows), unit="submission", desc="grading", disable=not progress,
               file=sys.stderr)

    def one(folder, key):
        work = work_root / folder.name
        work.mkdir()
        out = runner.run(folder, work, units, timeout, call_timeout, checkpoint=folder / CHECKPOINT,
                         checkpoint_shown=f"{folder.name}/{CHECKPOINT}", user=user,
                         seed=seed, untrusted=True, allow_weak=allow_weak, threads=threads, registry=registry,
                         memory_mb=memory_mb, policy=policy)
        # the CSV is the course staff's: its message is English whatever the language in force (a Text worded in
        # English explicitly), so that the pieces below may be joined as plain strings
        status, message = out.status, render(out.message, "en")
        if out.grader_errors or out.starved:  # flagged for the staff: not a verdict on the code
            status = "grader-error" if out.grader_errors else "starved"
            message = (f"{len(out.grader_errors)} check(s) hit a grader error" if out.grader_errors else
                       f"{len(out.starved)} check(s) stopped: the grading machine ran short of memory or time") + \
                f"; see {folder.name}.txt" + (f"; {message}" if message else "")
        row = csv_row(folder.name, units, out.grading, status, message, out.seconds)
        if out.grading is not None:
            write_json(results_dir / f"{folder.name}.json", gradescope(out.grading))
        if out.status != "interrupted":
            write_json(results_dir / f"{folder.name}.row.json", {"key": key, "row": row})
        write_text(results_dir / f"{folder.name}.txt", out.output)
        remove_tree(work)  # the grading's temporary folders, whatever its worker did to them
        return folder.name, row

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(one, f, key) for f, key in todo]
        for fut in as_completed(futures):
            name, row = fut.result()  # by folder: the row's submission cell is the name escaped for spreadsheets
            if row["status"] != "interrupted":
                rows[name] = row
                write_csv(csv_path, rows.values(), units)
            bar.update(1)
            bar.set_postfix_str(f"{row['submission']}: {row['status']} {row['total']}")
    except BaseException:
        registry.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        write_csv(csv_path, rows.values(), units)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        remove_tree(work_root)
    return sorted(rows.values(), key=lambda r: r["submission"])


def bench_batch(n_submissions, jobs, units=syllabus.MODULES, timeout=900.0):
    """Grade ``n_submissions`` copies of the solutions with ``jobs`` at once; return the throughput."""
    tmp = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    try:
        for i in range(n_submissions):
            d = tmp / "submissions" / f"s{i:03d}"
            d.mkdir(parents=True)
            for f in syllabus.FILES:
                shutil.copy(KIT / "solutions" / f, d / f)
        t0 = time.monotonic()
        rows = run_batch(tmp / "submissions", tmp / "grades.csv", jobs=jobs, timeout=timeout, units=units,
                         progress=False, allow_weak=True)
        seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"submissions": n_submissions, "jobs": jobs, "units": list(units), "seconds": round(seconds, 2),
            "per_minute": round(n_submissions * 60.0 / seconds, 2), "statuses": statuses, "cpus": os.cpu_count()}


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.bench is not None:
        print(json.dumps(bench_batch(args.bench, args.jobs)))
        return 0
    from .sandbox import Sandbox, SandboxRefused, user_problem
    root = Path(args.submissions)
    problems = [f"{root}: no such folder (give the folder with one subfolder per submission)"] if not root.is_dir() \
        else [f"{root} has no submission subfolders"] if not any(
            p.is_dir() and not p.name.startswith(".") for p in root.iterdir()) else []
    try:
        writable("--csv", args.csv, "grades.csv")
        if args.results and Path(args.results).exists() and not Path(args.results).is_dir():
            raise UsageError(f"--results {args.results}: not a folder")
    except UsageError as e:
        problems.append(str(e))
    seed = args.seed
    if not problems and not seed:
        try:
            seed, seed_path, made = batch_seed(args.csv)
            if made:
                print(f"grading seed: new, kept in {seed_path} (keep it private: a rerun reuses it)", file=sys.stderr)
        except UsageError as e:
            problems.append(str(e))
    if args.user and not problems:
        problem = user_problem(args.user)
        if problem:
            problems.append(problem)
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return runner.EXIT_USAGE
    try:  # the same refusal as each grading's, said once before any is started
        Sandbox(root, user=args.user, untrusted=True, allow_weak=args.allow_weak_sandbox)
    except SandboxRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return runner.EXIT_REFUSED
    try:
        rows = run_batch(root, args.csv, jobs=args.jobs, timeout=args.timeout, call_timeout=args.call_timeout,
                         units=args.only, results_dir=args.results, fresh=args.fresh, user=args.user, seed=seed,
                         allow_weak=args.allow_weak_sandbox, policy=args.policy)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the grades so far are in {args.csv}; run the same command again to resume",
              file=sys.stderr)
        return 130
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(rows)} submissions graded into {args.csv}: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    from .similarity import beside  # the instructor's similarity report, next to the CSV (never in --results)
    beside(args.csv, root)
    return 0 if all(r["status"] == "graded" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
