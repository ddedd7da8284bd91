"""``python -m lab.data [--src PATH] [--dest PATH]``: check, or fetch again, the TinyShakespeare corpus.

The repository ships ``data/tinyshakespeare.txt``; this command verifies it by its SHA-256
and, when it is missing or damaged, installs a fresh copy: from ``--src``, else from the path
in ``$TINYSHAKESPEARE``, else downloaded from the char-rnn URL. A wrong or partial file is
never moved into place (kit/corpus.py).
"""
import sys

from kit.cli import ArgumentParser
from kit.corpus import DEFAULT_PATH, DataError, fetch
from kit.i18n import _
from kit.outcome import render, said


def main(argv=None):
    p = ArgumentParser(prog="python -m lab.data", description=__doc__.splitlines()[0])
    p.add_argument("--src", help="a local copy of input.txt to verify and install")
    p.add_argument("--dest", default=str(DEFAULT_PATH), help="where the verified copy goes (default: %(default)s)")
    p.add_lang()
    args = p.parse_args(argv)
    try:
        path = fetch(args.dest, src=args.src)
    except DataError as e:
        print(_("error: {message}").format(message=render(said(e))), file=sys.stderr)
        return 1
    print(_("ok: {path} ({size:,} bytes, sha256 verified)").format(path=path, size=path.stat().st_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
