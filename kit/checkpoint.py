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
from .tensorpack import MAX_HEADER, PackError, pack, parse_header, unpack

FORMAT = "transformer-kit/lm-checkpoint/2"
LEGACY = "transformer-kit/lm-checkpoint/1"
REQUIRED = ("format", "model", "config", "vocab", "step")
MAX_BYTES = 256 << 20  # a whole checkpoint: the curriculum's model with its optimizer state is ~40 MB
UPGRADE = "python -m lab.train --upgrade"


class CheckpointError(Exception):
    """A checkpoint that cannot be used, worded as one line for the user."""


def save(state, path):
    """Write ``state`` (plain types and tensors) to ``path`` atomically: a crash never leaves half a file."""
    data = pack({"format": FORMAT, **state}, layout=False)  # read_model takes each tensor's bytes as they are
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _open(path, shown=None):
    path = Path(path)
    name = shown or path
    if path.is_dir():
        raise CheckpointError(f"{name} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{name}: no such checkpoint")
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read ({e.strerror or e})") from None


def _validated(state, path):
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, LEGACY):
        raise CheckpointError(f"{path}: not a checkpoint of this kit (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: its model is not a set of named weights")
    return state


def load(path, max_bytes=MAX_BYTES, legacy=False):
    """Read and validate a whole checkpoint (the trainer's, with its optimizer state)."""
    with _open(path) as f:
        try:
            size = Path(path).stat().st_size
            if size > max_bytes:
                raise CheckpointError(f"{path}: {size / 2**20:.0f} MB, more than the {max_bytes >> 20} MB a "
                                      "checkpoint may have")
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if data[:4] == b"PK\x03\x04":  # a torch.save zip
        if not legacy:
            raise CheckpointError(f"{path}: written in the kit's older format; convert it with `{UPGRADE} {path}`")
        import torch
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, or not a torch file
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
        return _validated(state, path)
    try:
        state = unpack(data, max_bytes)
    except PackError as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
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
        raise CheckpointError("nested too deeply")
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
                raise CheckpointError(f"{label}: written in the kit's older format; convert it with "
                                      f"`{UPGRADE} {label}`")
            if len(first) < 8 or struct.unpack("<Q", first)[0] > MAX_HEADER:
                raise CheckpointError(f"{label}: not a readable checkpoint (no valid header)")
            n = struct.unpack("<Q", first)[0]
            head = first + f.read(n)
            size = Path(path).stat().st_size
        except OSError as e:
            raise CheckpointError(f"{label}: cannot be read ({e.strerror or e})") from None
    try:
        entries, meta = parse_header(head, size)
        tree = json.loads(meta.get("tree", "null"))
    except (PackError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{label}: not a readable checkpoint ({e})") from None
    names = _model_refs(tree)
    if names is None:
        raise CheckpointError(f"{label}: not a checkpoint of this kit (no model weights in it)")
    missing, extra = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else "")] if extra else [])
        raise CheckpointError(f"{label}: its weights are not the curriculum's model ({'; '.join(parts)})")
    for name, shape in expected.items():
        if names[name] not in entries:
            raise CheckpointError(f"{label}: not a readable checkpoint (weight {name} has no data)")
        dtype, got, _ = entries[names[name]]
        if tuple(got) != tuple(shape):
            raise CheckpointError(f"{label}: {name} has shape {tuple(got)}, the curriculum's model has {tuple(shape)}")
        if dtype not in ("F32", "BF16"):
            raise CheckpointError(f"{label}: {name} is {dtype}, not float32 or bfloat16")
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as st:
            weights = {name: st.get_tensor(names[name]) for name in expected}
    except Exception as e:  # noqa: BLE001 - the library's own validation of the file
        raise CheckpointError(f"{label}: not a readable checkpoint ({type(e).__name__})") from None
    info = _without_tensors(tree)
    info = _validated({**(info if isinstance(info, dict) else {}), "model": {}}, label)
    info.pop("model")
    return info, weights

