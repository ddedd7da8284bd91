"""Generate the exercise stubs from the solutions' marked regions.

Each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (classroom/regions.py) becomes
``raise NotImplementedError("Class.method")`` at the same indentation; everything else (docstrings,
signatures, given code) is copied.

    python -m classroom.stubs            # write exercises/
    python -m classroom.stubs --check    # exit 1 if exercises/ differs from what would be written
"""
import sys
from pathlib import Path

from kit.cli import ArgumentParser
from kit.syllabus import FILES

from .regions import RegionError, stub

KIT = Path(__file__).resolve().parent.parent
HEADER = "# Generated from solutions/{name} by `make stubs`: edit the solution, not this file's skeleton.\n"


def generate(solutions=KIT / "solutions"):
    """``{file name: stub text}`` for the exercise files."""
    return {f: stub((Path(solutions) / f).read_text(), f) for f in FILES}


def render(solutions=KIT / "solutions"):
    return {f: HEADER.format(name=f) + text for f, text in generate(solutions).items()}


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.stubs", description="Write exercises/ from solutions/.")
    p.add_argument("--check", action="store_true", help="only report whether exercises/ is up to date")
    p.add_argument("--out", default=str(KIT / "exercises"), help="where to write (default: %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        texts = render()
    except RegionError as e:  # markers that do not pair up in solutions/
        print(f"error: {e}", file=sys.stderr)
        return 1
    stale = [f for f, text in texts.items() if not (out / f).is_file() or (out / f).read_text() != text]
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run `make stubs`)", file=sys.stderr)
            return 1
        print("exercises/ matches the solutions")
        return 0
    from kit.files import write_text
    try:
        for f, text in texts.items():
            write_text(out / f, text)
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {len(FILES)} stubs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
