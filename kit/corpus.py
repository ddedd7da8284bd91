"""TinyShakespeare: the corpus of the final project, verified by its hash whenever it is used.

The repository carries karpathy's char-rnn copy at ``data/tinyshakespeare.txt`` (public-domain
text, 1,115,394 bytes), so a fresh clone trains and grades with no network. ``python -m lab.data``
re-fetches it (``--src PATH`` for a local copy). Whatever the source, the SHA-256 is checked
before a file is used or moved into place, so a wrong or partial file never counts.
"""
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .files import atomic_write
from .outcome import T

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SIZE = 1_115_394
ENV_VAR = "TINYSHAKESPEARE"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "data" / "tinyshakespeare.txt"
HOW_TO_GET = T("run `make data` (downloads {url}), or `make data SRC=/path/to/input.txt`, or set "
               "{var}=/path/to/input.txt", url=URL, var=ENV_VAR)


class DataError(Exception):
    """A problem with the data file, worded as one line for the user: raised with a ``T(...)`` (its English is
    ``str(e)``; ``kit.outcome.said(e)`` gives the Text, which an edge words in the language in force)."""


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path, sha256=SHA256):
    """Raise DataError unless ``path`` is a readable file with the expected hash; return the path."""
    path = Path(path)
    if path.is_dir():
        raise DataError(T("{path} is a folder, not the corpus file; {how}", path=str(path), how=HOW_TO_GET))
    if not path.is_file():
        raise DataError(T("{path}: no such file; {how}", path=str(path), how=HOW_TO_GET))
    try:
        digest = sha256_of(path)
    except OSError as e:
        raise DataError(T("{path}: cannot be read ({error}); {how}", path=str(path), error=str(e.strerror or e),
                          how=HOW_TO_GET)) from None
    if digest != sha256:
        raise DataError(T("{path}: sha256 is {digest}..., expected {expected}... (not the char-rnn tinyshakespeare "
                          "input.txt); {how}", path=str(path), digest=digest[:16], expected=sha256[:16],
                          how=HOW_TO_GET))
    return path


def _install(fill, dest, sha256):
    """Write via ``fill(tmp_path)`` into a temp file beside ``dest``; verify; then rename into place."""
    def write(tmp):
        fill(tmp)
        verify(tmp, sha256)
    try:
        return atomic_write(dest, write)
    except OSError as e:
        raise DataError(_unwritable(dest, e)) from None


def _unwritable(dest, e):
    """``dest``'s ``OSError`` as one line: the system's own words for it (as they are)."""
    return T("cannot write {path}: {error}", path=str(dest), error=str(e.strerror or e))


def fetch(dest=DEFAULT_PATH, src=None, url=URL, sha256=SHA256, timeout=60):
    """Make sure ``dest`` holds the verified corpus; return its path.

    Source order: ``src``; ``$TINYSHAKESPEARE``; an already verified ``dest``; the copy the repository
    ships (``data/``); ``url``. Where ``dest`` cannot be written is found before any download.
    """
    dest = Path(dest)
    if dest.is_dir():
        raise DataError(T("--dest {path} is a folder: give the file to write, e.g. {example}", path=str(dest),
                          example=str(dest / DEFAULT_PATH.name)))
    src = src or os.environ.get(ENV_VAR)
    if not src and not dest.is_file() and dest.resolve() != DEFAULT_PATH.resolve():
        try:
            src = verify(DEFAULT_PATH, sha256)
        except DataError:
            src = None
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

    try:  # a read-only or full disk says so now, not after the download
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".probe") as f:
            f.write(b"\0" * (1 << 20))
            f.flush()
    except OSError as e:
        raise DataError(_unwritable(dest, e)) from None

    def download(tmp):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise DataError(T("could not download {url} ({error}); get the file another way and run `make data "
                              "SRC=/path/to/input.txt` or set {var}", url=url, error=str(e), var=ENV_VAR)) from None
    return _install(download, dest, sha256)


def find(path=None):
    """Path of a verified corpus: ``path``, else ``$TINYSHAKESPEARE``, else data/tinyshakespeare.txt."""
    return verify(path or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def read_text(path=None):
    """The verified corpus's text."""
    try:
        return find(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(T("{path}: not UTF-8 text", path=str(path))) from None


class CharTokenizer:
    """One token per character: the sorted set of the corpus's characters (65 for TinyShakespeare)."""

    def __init__(self, chars):
        self.chars = list(chars)

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        """The ids of ``text``'s characters, as a list (``ids`` gives the tensor)."""
        return self.ids(text).tolist()

    def ids(self, text):
        """The ids of ``text``'s characters as an int64 tensor, in a few vector operations over its code points (the
        corpus in ~30 ms, not ~0.1 s character by character: the final check and the trainer start with it)."""
        import numpy as np
        import torch
        codes = torch.from_numpy(np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64))
        if not self.chars:
            if text:
                raise ValueError(T("character {char} is not in the vocabulary", char=repr(text[0])))
            return codes
        table = torch.tensor([ord(c) for c in self.chars], dtype=torch.int64)
        order = torch.argsort(table)  # the vocabulary need not be sorted (a checkpoint's)
        pos = torch.searchsorted(table[order], codes).clamp_(max=len(table) - 1)
        found = table[order][pos] == codes
        if not bool(found.all()):
            raise ValueError(T("character {char} is not in the vocabulary",
                               char=repr(text[int((~found).nonzero()[0])])))
        return order[pos]

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


def split(ids, train_fraction=0.9):
    """First 90% for training, the rest for validation (as nanoGPT's shakespeare_char)."""
    n = int(len(ids) * train_fraction)
    return ids[:n], ids[n:]


def load_splits(path=None):
    """``(tokenizer, train_ids, val_ids)`` of the verified corpus, ids as int64 tensors."""
    text = read_text(path)
    tok = CharTokenizer.from_text(text)
    train, val = split(tok.ids(text))
    return tok, train, val
