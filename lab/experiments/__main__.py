"""``python -m lab.experiments``: run the curriculum's experiments on an implementation folder.

    python -m lab.experiments --impl DIR [--only NAME ...] [--out runs/experiments] [--budget tiny|full]

Writes ``<out>/<name>.png``, ``<name>.csv`` and ``<name>.md`` per experiment. Finished training
runs are cached in ``<out>/cache/``: after Ctrl-C, the same command resumes; ``--fresh`` retrains.
"""
import argparse
import sys
import time
import traceback
from pathlib import Path

from kit.syllabus import FILES

from . import NAMES, get


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m lab.experiments",
                                description="Run the curriculum's experiments (plots, CSV and Markdown tables).")
    p.add_argument("--impl", default="exercises", help="folder holding the five files (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=NAMES, help="run only these: " + " ".join(NAMES))
    p.add_argument("--out", default="runs/experiments", help="output folder (default: %(default)s)")
    p.add_argument("--budget", default="full", choices=("tiny", "full"),
                   help="full: the real thing, 1-3 min each on 2 cores; tiny: a smoke run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; these models are small, one thread is usually fastest (default: 1)")
    p.add_argument("--fresh", action="store_true", help="ignore runs cached by earlier commands and train again")
    p.add_argument("--data", metavar="PATH", help="TinyShakespeare file (default: data/tinyshakespeare.txt)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--traceback", action="store_true", help="show the full traceback when the implementation fails")
    return p.parse_args(argv)


def where_in(folder, exc):
    """``(file, line, function)`` of the innermost frame of ``exc`` inside ``folder``, or None."""
    folder = Path(folder).resolve()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if folder in path.parents:
            return path.name, frame.lineno, frame.name
    return None


def not_implemented_line(folder, exc):
    spot = where_in(folder, exc)
    what = str(exc) or (spot[2] if spot else "a function")
    file = spot[0] if spot else "your implementation"
    module = file[:-3] if file.endswith(".py") else None
    then = f" (`make check ONLY={module}` tells you when it is right)" if module else ""
    return (f"error: {what} in {Path(folder) / file} is not implemented yet: implement it first{then}, "
            "then run the experiments again")


def write(result, out, impl, budget, seed):
    from .common import csv_text, markdown_table, save_figure, write_text
    out.mkdir(parents=True, exist_ok=True)
    save_figure(result.figure, out / f"{result.name}.png")
    write_text(out / f"{result.name}.csv", csv_text(result.series))
    md = [f"# {result.title}", "",
          f"Implementation `{impl}`, budget `{budget}`, seed {seed}, {result.seconds:.0f} s{result.note}.", ""]
    if result.claim:
        md += [f"**The claim.** {result.claim}", ""]
    md += ["**Measured.**", ""] + [f"- {f}" for f in result.findings] + [""]
    if result.verdict:
        md += ["**Does it hold, and when.**", ""] + [f"- {v}" for v in result.verdict] + [""]
    md += [markdown_table(result.table), "",
                                                 f"![{result.name}]({result.name}.png)", "",
                                                 f"Data behind the plot: `{result.name}.csv`. How to read it: "
                                                 f"docs/experiments.md, section \"{result.name}\".", ""]
    write_text(out / f"{result.name}.md", "\n".join(md))
    return [out / f"{result.name}.{ext}" for ext in ("png", "csv", "md")]


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    folder = Path(args.impl)
    if not folder.is_dir():
        print(f"error: {folder}: no such folder (give the folder that holds {', '.join(FILES)})", file=sys.stderr)
        return 2
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        print(f"error: {folder} lacks {', '.join(missing)} (the experiments need all five files)", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    import torch

    from kit.corpus import DataError

    from .common import Lab
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    names = [n for n in NAMES if n in (args.only or NAMES)]
    try:
        lab = Lab(folder, budget=args.budget, seed=args.seed, out=out, fresh=args.fresh, progress=not args.quiet,
                  data_path=args.data)
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name}: {get(name).TITLE}", flush=True)
            t0, cached, trained = time.time(), lab.runs_cached, lab.runs_trained
            result = get(name).run(lab)
            result.seconds = time.time() - t0
            cached, trained = lab.runs_cached - cached, lab.runs_trained - trained
            if cached:
                result.note = f" ({cached} of {cached + trained} training runs taken from {out / 'cache'})"
            paths = write(result, out, folder, args.budget, args.seed)
            for f in result.findings + result.verdict:
                print(f"    {f}")
            print(f"    {result.seconds:.0f} s{result.note}; wrote {', '.join(str(p) for p in paths)}", flush=True)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:
        if args.traceback:
            traceback.print_exc()
        print(not_implemented_line(folder, e), file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {out / 'cache'}; the same command resumes from them",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in the implementation under test, said in one line
        spot = where_in(folder, e)
        if args.traceback or spot is None:
            traceback.print_exc()
        if spot is None:
            return 1
        print(f"error: your implementation failed at {folder / spot[0]}:{spot[1]} in {spot[2]}: "
              f"{type(e).__name__}: {e} (run `make check` to find out what is wrong; --traceback shows the trace)",
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
