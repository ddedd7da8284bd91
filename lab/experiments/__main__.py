"""``python -m lab.experiments``: run the curriculum's experiments on an implementation folder.

    python -m lab.experiments --impl DIR [--only NAME ...] [--out runs/experiments] [--budget tiny|full]

Writes ``<out>/<name>.png``, ``<name>.csv`` and ``<name>.md`` per experiment. Finished training
runs are cached in ``<out>/cache/``: after Ctrl-C, the same command resumes; ``--fresh`` retrains.
"""
import sys
import time
import traceback
from pathlib import Path

from kit import i18n
from kit.cli import ArgumentParser
from kit.i18n import _
from kit.outcome import render, said
from kit.syllabus import FILES

from . import NAMES, get


def parse(argv):
    p = ArgumentParser(prog="python -m lab.experiments",
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
    p.add_lang()
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
    what = str(exc) or (spot[2] if spot else _("a function"))
    file = spot[0] if spot else _("your implementation")
    module = file[:-3] if file.endswith(".py") else None
    then = _(" (`make check ONLY={module}` tells you when it is right)").format(module=module) if module else ""
    return _("error: {what} in {path} is not implemented yet: implement it first{then}, then run the experiments "
             "again").format(what=what, path=Path(folder) / file, then=then)


def guide():
    """The page that explains the experiments, in the language in force where the kit has it (docs/<ll-CC>/)."""
    suffix = {"zh": "zh-CN"}.get(i18n.language())
    if suffix and (i18n.KIT / "docs" / suffix / "experiments.md").is_file():
        return f"docs/{suffix}/experiments.md"
    return "docs/experiments.md"


def write(result, out, impl, budget, seed):
    from .common import csv_text, markdown_table, save_figure, write_text
    out.mkdir(parents=True, exist_ok=True)
    save_figure(result.figure, out / f"{result.name}.png")
    write_text(out / f"{result.name}.csv", csv_text(result.series))
    md = [f"# {result.title}", "",
          _("Implementation `{impl}`, budget `{budget}`, seed {seed}, {seconds:.0f} s{note}.").format(
              impl=impl, budget=budget, seed=seed, seconds=result.seconds, note=result.note), ""]
    if result.claim:
        md += [_("**The claim.** {claim}").format(claim=result.claim), ""]
    md += [_("**Measured.**"), ""] + [f"- {f}" for f in result.findings] + [""]
    if result.verdict:
        md += [_("**Does it hold, and when.**"), ""] + [f"- {v}" for v in result.verdict] + [""]
    md += [markdown_table(result.table), "", f"![{result.name}]({result.name}.png)", "",
           _("Data behind the plot: `{name}.csv`. How to read it: {doc}, section \"{name}\".").format(
               name=result.name, doc=guide()), ""]
    write_text(out / f"{result.name}.md", "\n".join(md))
    return [out / f"{result.name}.{ext}" for ext in ("png", "csv", "md")]


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    folder = Path(args.impl)
    if not folder.is_dir():
        print(_("error: {message}").format(message=_("{folder}: no such folder (give the folder that holds {files})")
                                           .format(folder=folder, files=", ".join(FILES))), file=sys.stderr)
        return 2
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        print(_("error: {folder} lacks {files} (the experiments need all five files)").format(
            folder=folder, files=", ".join(missing)), file=sys.stderr)
        return 2
    if args.threads < 1:
        print(_("error: --threads must be at least 1"), file=sys.stderr)
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
            print(f"[{i}/{len(names)}] {name}: {_(get(name).TITLE)}", flush=True)
            t0, cached, trained = time.time(), lab.runs_cached, lab.runs_trained
            result = get(name).run(lab)
            result.seconds = time.time() - t0
            cached, trained = lab.runs_cached - cached, lab.runs_trained - trained
            if cached:
                result.note = _(" ({cached} of {total} training runs taken from {path})").format(
                    cached=cached, total=cached + trained, path=out / "cache")
            paths = write(result, out, folder, args.budget, args.seed)
            for f in result.findings + result.verdict:
                print(f"    {f}")
            print("    " + _("{seconds:.0f} s{note}; wrote {paths}").format(
                seconds=result.seconds, note=result.note, paths=", ".join(str(p) for p in paths)), flush=True)
    except DataError as e:
        print(_("error: {message}").format(message=render(said(e))), file=sys.stderr)
        return 2
    except NotImplementedError as e:
        if args.traceback:
            traceback.print_exc()
        print(not_implemented_line(folder, e), file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\n" + _("interrupted: finished runs are kept in {path}; the same command resumes from them").format(
            path=out / "cache"), file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in the implementation under test, said in one line
        spot = where_in(folder, e)
        if args.traceback or spot is None:
            traceback.print_exc()
        if spot is None:
            return 1
        print(_("error: your implementation failed at {path}:{line} in {function}: {error} (run `make check` to find "
                "out what is wrong; --traceback shows the trace)").format(
            path=folder / spot[0], line=spot[1], function=spot[2], error=f"{type(e).__name__}: {e}"), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
