"""Writing files atomically: a reader, or a crash half-way, never sees half a file; removing folders whatever
was done to them."""
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path, write, mode=0o644):
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``.

    If ``write`` raises, ``path`` is left as it was and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp makes it private; these are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path, text):
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_tree(d):
    """Remove ``d`` whatever a worker did to it: a folder it made unreadable (chmod 000) is opened first."""
    shutil.rmtree(d, ignore_errors=True)
    if os.path.lexists(d):
        for root, dirs, _ in os.walk(d, onerror=lambda e: None):
            for name in dirs:  # opened before os.walk lists them (top-down)
                try:
                    os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
        shutil.rmtree(d, ignore_errors=True)
