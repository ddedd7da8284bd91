"""The generated parts of the docs: ``python -m classroom.docs [--check]``.

Blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` in the files below are
written from their one source (the points table from kit/syllabus.py); ``--check`` exits 1 when a
block is stale (tests/test_layout.py runs it).
"""
import re
import sys
from pathlib import Path

from kit import syllabus
from kit.cli import ArgumentParser
from kit.files import write_text

KIT = Path(__file__).resolve().parent.parent
PLATFORMS = KIT / "classroom" / "templates" / "platforms.md"  # also in the student release's README


def platforms():
    return PLATFORMS.read_text(encoding="utf-8")


BLOCKS = {"points": syllabus.points_table, "platforms": platforms}
FILES = [KIT / "README.md"]


def render(text):
    """``text`` with every generated block written afresh."""
    def fill(m):
        name = m.group(1)
        if name not in BLOCKS:
            raise ValueError(f"unknown generated block {name!r}")
        return f"<!-- generated:{name} -->\n{BLOCKS[name]()}<!-- /generated:{name} -->"
    return re.sub(r"<!-- generated:(\w+) -->\n.*?<!-- /generated:\1 -->", fill, text, flags=re.S)


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.docs", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report whether the generated blocks are current")
    args = p.parse_args(argv)
    stale = []
    for f in FILES:
        text = f.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(f.name)
            if not args.check:
                write_text(f, new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run `make docs`)", file=sys.stderr)
        return 1
    print("generated blocks " + ("current" if args.check else f"written ({', '.join(stale) or 'no change'})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
