"""What every command of the kit does with bad input: one clear line on stderr, a non-zero exit, nothing lost.

``ArgumentParser`` is argparse with its usage errors on one line (exit status 2); ``number`` and
``positive`` parse option values with their bounds; ``writable`` tries, before any work, to write
where a command will write its result at the end (a training run or a grading is never lost to a
read-only or full disk, or to a folder given for a file).
"""
import argparse
import math
import os
import tempfile
from pathlib import Path


class UsageError(Exception):
    """Bad input to a command: one line for stderr, exit status 2, before anything is done."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line instead of the usage block and the error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def number(kind, low=None, low_ok=True, high=None, unit=""):
    """An option type: ``kind`` (int or float), finite, within ``[low, high]`` (``low_ok=False``: above low)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if low is not None and (v < low or (v == low and not low_ok)):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if low_ok else 'more than'} {low:g}{unit}, not {text}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}{unit}, not {text}")
        return v
    return parse


positive = number(float, 0, low_ok=False, unit=" seconds")  # a time limit


def writable(option, path, example="results.json", probe_bytes=4096):
    """``path`` as a Path once a file of ``probe_bytes`` could be written beside it; else UsageError.

    Tried, not inferred: permissions say little to root, and nothing about a read-only or full file system.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; give the file to write, e.g. {p / example}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {p}: the folder {parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{p.name}.", suffix=".probe") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"{option} {p}: cannot write there ({e.strerror or e})") from None
    return p
