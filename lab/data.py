"""TinyShakespeare: fetch, verify, tokenize, split.

``python -m lab.data [--src PATH]`` puts a verified copy at ``data/tinyshakespeare.txt``:
from ``--src``, else from the path in ``$TINYSHAKESPEARE``, else downloaded from the
canonical char-rnn URL. The SHA-256 is checked before the file is moved into place,
so a wrong or partial file never lands.
"""
import argparse
import hashlib
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import torch

from .files import atomic_write

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SIZE = 1_115_394
ENV_VAR = "TINYSHAKESPEARE"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "data" / "tinyshakespeare.txt"
HOW_TO_GET = (f"run `make data` (downloads {URL}), or `make data SRC=/path/to/input.txt`, "
              f"or set {ENV_VAR}=/path/to/input.txt")


class DataError(Exception):
    """A problem with the data file, worded as one line for the user."""


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path, sha256=SHA256):
    """Raise DataError unless ``path`` exists and has the expected hash."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; {HOW_TO_GET}")
    digest = sha256_of(path)
    if digest != sha256:
        raise DataError(f"{path}: sha256 is {digest[:16]}..., expected {sha256[:16]}... "
                        f"(not the char-rnn tinyshakespeare input.txt); {HOW_TO_GET}")
    return path


def _install(fill, dest, sha256):
    """Write via ``fill(tmp_path)`` into a temp file beside ``dest``; verify; then rename into place."""
    def write(tmp):
        fill(tmp)
        verify(tmp, sha256)
    return atomic_write(dest, write)


def fetch(dest=DEFAULT_PATH, src=None, url=URL, sha256=SHA256, timeout=60):
    """Make sure ``dest`` holds the verified corpus; return its path.

    Source order: an already verified ``dest``; ``src``; ``$TINYSHAKESPEARE``; ``url``.
    """
    dest = Path(dest)
    src = src or os.environ.get(ENV_VAR)
    if src:
        src = Path(src)
        verify(src, sha256)  # a bad source fails before dest is touched
        if dest.exists() and dest.resolve() == src.resolve():
            return dest
        return _install(lambda tmp: shutil.copyfile(src, tmp), dest, sha256)
    if dest.is_file():
        try:
            return verify(dest, sha256)
        except DataError:
            pass  # a stale or damaged copy: fetch a fresh one, replacing it only once verified
    def download(tmp):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise DataError(f"could not download {url} ({e}); get the file another way and "
                            f"run `make data SRC=/path/to/input.txt` or set {ENV_VAR}") from None
    return _install(download, dest, sha256)


def find(path=None):
    """Path of a verified corpus: ``path``, else ``$TINYSHAKESPEARE``, else data/tinyshakespeare.txt."""
    return verify(path or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def read_text(path=None):
    return find(path).read_text(encoding="utf-8")


class CharTokenizer:
    """One token per character: the sorted set of the corpus's characters (65 for TinyShakespeare)."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)

    def state_dict(self):
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_state_dict(cls, state):
        return cls(state["chars"])


def split(ids, train_fraction=0.9):
    """First 90% for training, the rest for validation (as nanoGPT's shakespeare_char)."""
    n = int(len(ids) * train_fraction)
    return ids[:n], ids[n:]


def load_splits(path=None):
    """``(tokenizer, train_ids, val_ids)`` with ids as int64 tensors."""
    text = read_text(path)
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = split(ids)
    return tok, train, val


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lab.data", description=__doc__.splitlines()[0])
    p.add_argument("--src", help="a local copy of input.txt to verify and install")
    p.add_argument("--dest", default=str(DEFAULT_PATH), help="where the verified copy goes (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        path = fetch(args.dest, src=args.src)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"ok: {path} ({path.stat().st_size:,} bytes, sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
