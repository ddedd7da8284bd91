"""``python -m grader``: grade an implementation folder and print what to fix.

    python -m grader [--impl DIR] [--json PATH] [--only MODULE ...] [--checkpoint PATH]
    python -m grader batch SUBMISSIONS_DIR --csv grades.csv [--jobs N]   (see grader/batch.py)

Exit status 0 only at full marks for the checks that ran.
"""
import argparse
import sys
import time
from pathlib import Path

MODULE_NAMES = ["residual", "rmsnorm", "attention", "block", "decoder", "final"]
FILES = ["residual.py", "rmsnorm.py", "attention.py", "block.py", "decoder.py"]
VISIBILITIES = ["hidden", "after_due_date", "after_published", "visible"]


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m grader", description="Grade the five exercise files in a folder.")
    p.add_argument("--impl", default="exercises", help="folder holding the five files (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument("--only", nargs="+", metavar="MODULE", choices=MODULE_NAMES,
                   help="grade only these modules: " + " ".join(MODULE_NAMES))
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint for the final check (default: runs/final.pt)")
    p.add_argument("--corpus", metavar="PATH", help="corpus for the final check (default: data/tinyshakespeare.txt)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds allowed per call into the submission")
    p.add_argument("--no-color", action="store_true", help="plain output")
    p.add_argument("--user", metavar="NAME",
                   help="run the submitted code as this OS user (needs root; the Gradescope bundle uses it)")
    p.add_argument("--hidden-visibility", default="hidden", choices=VISIBILITIES,
                   help="Gradescope visibility of the hidden checks in --json (default: %(default)s)")
    return p.parse_args(argv)


def user_error(name):
    """Why ``--user name`` cannot work here, or None."""
    import os
    import pwd
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return f"--user {name}: no such user"
    if os.geteuid() not in (0, uid):
        return f"--user {name}: only root can run code as another user"
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["batch"]:
        from .batch import main as batch_main
        return batch_main(argv[1:])
    args = parse(argv)
    folder = Path(args.impl)
    if not folder.is_dir():
        print(f"error: {folder}: no such folder (give the folder that holds {', '.join(FILES)})", file=sys.stderr)
        return 2
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing and len(missing) == len(FILES):
        print(f"error: {folder} holds none of {', '.join(FILES)}", file=sys.stderr)
        return 2
    if args.user and user_error(args.user):
        print(f"error: {user_error(args.user)}", file=sys.stderr)
        return 2
    from .report import gradescope, render, write_json
    from .run import GraderError, grade, summary
    t0 = time.time()
    try:
        results = grade(folder, only=args.only, checkpoint=args.checkpoint, corpus=args.corpus,
                        call_timeout=args.timeout, user=args.user)
    except GraderError as e:
        print(f"grader error: {e}", file=sys.stderr)
        return 3
    got, total = summary(results)
    color = sys.stdout.isatty() and not args.no_color
    title = f"Grading {folder}" + (f" (missing: {', '.join(missing)})" if missing else "")
    print(render(results, title, color=color))
    print(f"({len(results)} checks in {time.time() - t0:.1f} s)")
    if args.json:
        write_json(args.json, gradescope(results, hidden_visibility=args.hidden_visibility))
    return 0 if results and got == total else 1


if __name__ == "__main__":
    sys.exit(main())
