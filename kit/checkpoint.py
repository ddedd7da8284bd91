"""Checkpoints: written atomically, read back within stated limits, with one clear line when unusable.

A checkpoint is one ``kit.tensorpack`` file (safetensors: raw tensors behind a JSON header, no
pickle, no compression), so opening an untrusted upload can neither run code nor inflate.
``read_model`` (what the grader uses) reads the header (at most ``tensorpack.MAX_HEADER`` bytes),
checks every weight's name, dtype and shape against the model it expects, and only then reads
those weights' bytes and nothing else: the grader's memory for a checkpoint is the expected
model's size (~13 MB for the curriculum's), whatever the file claims. ``load`` (the trainer's own
files, with their optimizer state) reads at most ``MAX_BYTES``.

Files the kit wrote before this format (``torch.save`` zips) are read only where they are the
user's own (``legacy=True``: resuming, sampling); the grader refuses them with the command that
converts one.
"""
import json
import struct
from pathlib import Path

from .files import atomic_write
from .outcome import T, said
from .tensorpack import MAX_HEADER, PackError, pack, parse_header, unpack
from .tensorpack import said as pack_said

FORMAT = "transformer-kit/lm-checkpoint/2"
LEGACY = "transformer-kit/lm-checkpoint/1"
REQUIRED = ("format", "model", "config", "vocab", "step")
MAX_BYTES = 256 << 20  # a whole checkpoint: the curriculum's model with its optimizer state is ~40 MB
UPGRADE = "python -m lab.train --upgrade"


class CheckpointError(Exception):
    """A checkpoint that cannot be used, worded as one line for the user: raised with a ``T(...)`` (its English is
    ``str(e)``; ``kit.outcome.said(e)`` gives the Text, which an edge words in the language in force)."""


def save(state, path):
    """Write ``state`` (plain types and tensors) to ``path`` atomically: a crash never leaves half a file."""
    data = pack({"format": FORMAT, **state}, layout=False)  # read_model takes each tensor's bytes as they are
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _open(path, shown=None):
    path = Path(path)
    name = shown or path
    if path.is_dir():
        raise CheckpointError(T("{path} is a folder, not a checkpoint file", path=str(name)))
    if not path.is_file():
        raise CheckpointError(T("{path}: no such checkpoint", path=str(name)))
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(_unreadable(name, e)) from None


def _unreadable(path, e):
    """The file's ``OSError`` as one line: the system's own words for it (as they are)."""
    return T("{path}: cannot be read ({error})", path=str(path), error=str(e.strerror or e))


def _older(path):
    return T("{path}: written in the kit's older format; convert it with `{command}`", path=str(path),
             command=f"{UPGRADE} {path}")


def _not_readable(path, error):
    """Not a checkpoint the parser (or torch, or safetensors) can read: ``error`` is its own word for why (a ``Text``
    where it was raised with one)."""
    return T("{path}: not a readable checkpoint ({error})", path=str(path), error=error)


def _validated(state, path):
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, LEGACY):
        raise CheckpointError(T("{path}: not a checkpoint of this kit (expected format {format})", path=str(path),
                                format=repr(FORMAT)))
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(T("{path}: incomplete checkpoint, missing {names}", path=str(path),
                                names=", ".join(missing)))
    if not isinstance(state["model"], dict):
        raise CheckpointError(T("{path}: its model is not a set of named weights", path=str(path)))
    return state


def load(path, max_bytes=MAX_BYTES, legacy=False):
    """Read and validate a whole checkpoint (the trainer's, with its optimizer state)."""
    with _open(path) as f:
        try:
            size = Path(path).stat().st_size
            if size > max_bytes:
                raise CheckpointError(T("{path}: {size:.0f} MB, more than the {most} MB a checkpoint may have",
                                        path=str(path), size=size / 2**20, most=max_bytes >> 20))
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise CheckpointError(_unreadable(path, e)) from None
    if data[:4] == b"PK\x03\x04":  # a torch.save zip
        if not legacy:
            raise CheckpointError(_older(path))
        import torch
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, or not a torch file
            raise CheckpointError(_not_readable(path, type(e).__name__)) from None
        return _validated(state, path)
    try:
        state = unpack(data, max_bytes)
    except PackError as e:
        raise CheckpointError(_not_readable(path, pack_said(e))) from None
    return _validated(state, path)


def _model_refs(tree):
    """``{weight name: tensor name}`` of the ``model`` entry of a packed checkpoint's structure, or None."""
    if not (isinstance(tree, dict) and isinstance(tree.get("$d"), list)):
        return None
    for pair in tree["$d"]:
        if isinstance(pair, list) and len(pair) == 2 and pair[0] == "model":
            model = pair[1]
            if not (isinstance(model, dict) and isinstance(model.get("$d"), list)):
                return None
            refs = {}
            for kv in model["$d"]:
                if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) and isinstance(kv[1], dict)
                        and isinstance(kv[1].get("$t"), str)):
                    return None
                refs[kv[0]] = kv[1]["$t"]
            return refs
    return None


def _without_tensors(node, depth=0):
    """The structure with every tensor reference replaced by None (for the parts ``read_model`` skips)."""
    if depth > 32:
        raise CheckpointError(T("nested too deeply"))
    if isinstance(node, list):
        return [_without_tensors(v, depth + 1) for v in node]
    if isinstance(node, dict):
        if set(node) == {"$t"}:
            return None
        if set(node) == {"$d"} and isinstance(node["$d"], list):
            out = {}
            for pair in node["$d"]:
                if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int)):
                    out[pair[0]] = _without_tensors(pair[1], depth + 1)
            return out
        return None
    return node


def read_model(path, expected, shown=None):
    """``(the checkpoint's other entries, its weights)`` for a model whose weights must be exactly ``expected``.

    ``expected`` maps each weight's name to its shape. Raises CheckpointError, naming what differs,
    before reading any tensor data when a name, shape or dtype (float32 or bfloat16) is not the
    expected model's. Messages name the file ``shown`` (as the user knows it), else ``path``.
    """
    label = shown or path
    with _open(path, shown) as f:
        try:
            first = f.read(8)
            if first[:4] == b"PK\x03\x04":
                raise CheckpointError(_older(label))
            if len(first) < 8 or struct.unpack("<Q", first)[0] > MAX_HEADER:
                raise CheckpointError(T("{path}: not a readable checkpoint (no valid header)", path=str(label)))
            n = struct.unpack("<Q", first)[0]
            head = first + f.read(n)
            size = Path(path).stat().st_size
        except OSError as e:
            raise CheckpointError(_unreadable(label, e)) from None
    try:
        entries, meta = parse_header(head, size)
        tree = json.loads(meta.get("tree", "null"))
    except (PackError, ValueError, RecursionError) as e:
        raise CheckpointError(_not_readable(label, pack_said(e) if isinstance(e, PackError) else said(e))) from None
    names = _model_refs(tree)
    if names is None:
        raise CheckpointError(T("{path}: not a checkpoint of this kit (no model weights in it)", path=str(label)))
    missing, extra = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
    if missing or extra:
        def listed(weights):  # code: at most five weight names
            return ", ".join(weights[:5]) + (" ..." if len(weights) > 5 else "")
        gone = T("missing {names}", names=listed(missing)) if missing else None
        more = T("unexpected {names}", names=listed(extra)) if extra else None
        differences = T("{missing}; {unexpected}", missing=gone, unexpected=more) if gone and more else gone or more
        raise CheckpointError(T("{path}: its weights are not the curriculum's model ({differences})", path=str(label),
                                differences=differences))
    for name, shape in expected.items():
        if names[name] not in entries:
            raise CheckpointError(T("{path}: not a readable checkpoint (weight {name} has no data)", path=str(label),
                                    name=name))
        dtype, got, _ = entries[names[name]]
        if tuple(got) != tuple(shape):
            raise CheckpointError(T("{path}: {name} has shape {shape}, the curriculum's model has {expected}",
                                    path=str(label), name=name, shape=str(tuple(got)), expected=str(tuple(shape))))
        if dtype not in ("F32", "BF16"):
            raise CheckpointError(T("{path}: {name} is {dtype}, not float32 or bfloat16", path=str(label), name=name,
                                    dtype=str(dtype)))
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as st:
            weights = {name: st.get_tensor(names[name]) for name in expected}
    except Exception as e:  # noqa: BLE001 - the library's own validation of the file
        raise CheckpointError(_not_readable(label, type(e).__name__)) from None
    info = _without_tensors(tree)
    info = _validated({**(info if isinstance(info, dict) else {}), "model": {}}, label)
    info.pop("model")
    return info, weights

