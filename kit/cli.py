"""What every command of the kit does with bad input: one clear line on stderr, a non-zero exit, nothing lost.

``ArgumentParser`` is argparse with its usage errors on one line (exit status 2); ``number`` and
``positive`` parse option values with their bounds; ``writable`` tries, before any work, to write
where a command will write its result at the end (a training run or a grading is never lost to a
read-only or full disk, or to a folder given for a file). The lines are worded in the language in force
(kit/i18n.py); a command with ``--lang`` (``add_lang``) reads it before anything else, so that its own usage
errors speak it too.
"""
import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from kit import i18n
from kit.i18n import N_, _


class UsageError(Exception):
    """Bad input to a command: one line for stderr, exit status 2, before anything is done."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line instead of the usage block and the error."""

    def error(self, message):
        self.exit(2, _("error: {message} (see {prog} --help)").format(message=message, prog=self.prog) + "\n")

    def add_lang(self):
        """The ``--lang`` option: the language of what the command prints (kit/i18n.py)."""
        self.speaks = True
        self.add_argument("--lang", type=lambda v: i18n.normalise(v) or v, choices=sorted(i18n.LANGUAGES),
                          help="the language of what the command prints: en (English, the default) or zh "
                               "(简体中文); also $KIT_LANG, or a zh_* locale")

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "speaks", False):  # --lang first, so that a usage error speaks the language asked for
            argv = sys.argv[1:] if args is None else list(args)
            for i, a in enumerate(argv):
                value = argv[i + 1] if a == "--lang" and i + 1 < len(argv) else a[7:] if a.startswith("--lang=") \
                    else None
                if i18n.normalise(value):
                    i18n.use(value)
        return super().parse_known_args(args, namespace)


def number(kind, low=None, low_ok=True, high=None, unit=""):
    """An option type: ``kind`` (int or float), finite, within ``[low, high]`` (``low_ok=False``: above low)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            message = _("not an integer: {text!r}") if kind is int else _("not a number: {text!r}")
            raise argparse.ArgumentTypeError(message.format(text=text)) from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(_("must be a finite number, not {text}").format(text=text))
        if low is not None and (v < low or (v == low and not low_ok)):
            message = _("must be at least {low}{unit}, not {text}") if low_ok else \
                _("must be more than {low}{unit}, not {text}")
            raise argparse.ArgumentTypeError(message.format(low=f"{low:g}", unit=_(unit) if unit else "", text=text))
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(_("must be at most {high}{unit}, not {text}").format(
                high=f"{high:g}", unit=_(unit) if unit else "", text=text))
        return v
    return parse


positive = number(float, 0, low_ok=False, unit=N_(" seconds"))  # a time limit


def writable(option, path, example="results.json", probe_bytes=4096):
    """``path`` as a Path once a file of ``probe_bytes`` could be written beside it; else UsageError.

    Tried, not inferred: permissions say little to root, and nothing about a read-only or full file system.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(_("{option} {path}: is a folder; give the file to write, e.g. {example}").format(
            option=option, path=p, example=p / example))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(_("{option} {path}: the folder {parent} does not exist").format(option=option, path=p,
                                                                                       parent=parent))
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{p.name}.", suffix=".probe") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(_("{option} {path}: cannot write there ({reason})").format(option=option, path=p,
                                                                                  reason=e.strerror or e)) from None
    return p
