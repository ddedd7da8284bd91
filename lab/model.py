"""The curriculum's model, built from any implementation folder."""
from kit.i18n import _
from kit.loader import load_impl
from kit.syllabus import CURRICULUM


class ImplementationError(Exception):
    """The implementation folder cannot build the model: one line saying where (for the lab's commands)."""


def load(folder):
    """The implementation in ``folder`` (``impl.decoder.TransformerLM``, ...), or ImplementationError in one line."""
    import traceback
    from pathlib import Path

    from kit.syllabus import FILES
    folder = Path(folder)
    if not folder.is_dir():
        raise ImplementationError(_("{folder}: no such folder (give the folder that holds {files})").format(
            folder=folder, files=", ".join(FILES)))
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise ImplementationError(_("{folder} lacks {files}").format(folder=folder, files=", ".join(missing)))
    try:
        return load_impl(folder)
    except SyntaxError as e:
        raise ImplementationError(_("{file} line {line}: syntax error: {error} (run `make check` to see what is "
                                    "wrong)").format(file=Path(e.filename or "?").name, line=e.lineno,
                                                     error=e.msg)) from None
    except Exception as e:  # noqa: BLE001 - an error at import time in the student's code
        where = next((f for f in reversed(traceback.extract_tb(e.__traceback__))
                      if Path(f.filename).resolve().parent == folder.resolve()), None)
        at = _(" ({file} line {line})").format(file=Path(where.filename).name, line=where.lineno) if where else ""
        raise ImplementationError(_("importing {folder} failed{at}: {error}").format(
            folder=folder, at=at, error=f"{type(e).__name__}: {str(e)[:200]}")) from None


def build(impl, vocab_size, config=None):
    """``TransformerLM(vocab_size, **config)`` from ``impl`` (a folder path or a loaded namespace)."""
    if not hasattr(impl, "decoder"):
        impl = load(impl)
    return impl.decoder.TransformerLM(vocab_size, **(config or CURRICULUM))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
