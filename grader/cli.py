"""What every command of the grader checks in its input: one clear line and exit status 2 for bad input."""
import argparse
import os
import tempfile
from pathlib import Path


class UsageError(Exception):
    """Bad input to the command: one line for stderr, exit status 2."""


def positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return v


def writable(option, path):
    """Raise UsageError unless ``path`` can be written as a file (checked before grading: nothing is lost later)."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; give the file to write, e.g. {p / 'results.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {p}: the folder {parent} does not exist")
    try:  # try it: permissions say little to root, and nothing about a read-only or full file system
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{p.name}.", suffix=".probe") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"{option} {p}: cannot write there ({e.strerror or e})") from None
    return p
