"""The curriculum's model, built from any implementation folder."""
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
        raise ImplementationError(f"{folder}: no such folder (give the folder that holds {', '.join(FILES)})")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise ImplementationError(f"{folder} lacks {', '.join(missing)}")
    try:
        return load_impl(folder)
    except SyntaxError as e:
        raise ImplementationError(f"{Path(e.filename or '?').name} line {e.lineno}: syntax error: {e.msg} "
                                  "(run `make check` to see what is wrong)") from None
    except Exception as e:  # noqa: BLE001 - an error at import time in the student's code
        where = next((f for f in reversed(traceback.extract_tb(e.__traceback__))
                      if Path(f.filename).resolve().parent == folder.resolve()), None)
        at = f" ({Path(where.filename).name} line {where.lineno})" if where else ""
        raise ImplementationError(f"importing {folder} failed{at}: {type(e).__name__}: {str(e)[:200]}") from None


def build(impl, vocab_size, config=None):
    """``TransformerLM(vocab_size, **config)`` from ``impl`` (a folder path or a loaded namespace)."""
    if not hasattr(impl, "decoder"):
        impl = load(impl)
    return impl.decoder.TransformerLM(vocab_size, **(config or CURRICULUM))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
