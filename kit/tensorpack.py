"""Plain data with tensors in it, as bytes that cannot inflate and cannot run code.

One format serves the grader's messages to and from its worker and the kit's checkpoints:
a safetensors container (raw tensor bytes behind a JSON header: no compression, no pickle)
whose metadata holds the structure as JSON, tensors standing in it as ``{"$t": "3"}``. Reading
is bounded before a byte of tensor data is touched: the container's size, its header's size,
each tensor's dtype, shape and byte range, the structure's depth and length. Memory used while
reading is at most the size of the bytes read, which callers cap (``MAX_FRAME`` for the
worker's answers, ``kit.checkpoint.MAX_BYTES`` for checkpoints).

This file imports nothing of the kit: the worker loads it by path.
"""
import json
import struct

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER = 8 << 20  # bytes of JSON header: tens of thousands of tensors, far more than any message holds
MAX_DEPTH = 32
TREE = "tree"


class PackError(ValueError):
    """The bytes are not a well-formed pack within the limits (the message says which)."""


def _encode(obj, tensors, depth=0):
    import torch
    if depth > MAX_DEPTH:
        raise PackError("nested too deeply")
    if isinstance(obj, torch.Tensor):
        name = str(len(tensors))
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        tensors[name] = t.contiguous()
        return {"$t": name}
    if isinstance(obj, dict):
        return {"$d": [[_encode(k, tensors, depth + 1), _encode(v, tensors, depth + 1)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, tensors, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise PackError(f"cannot pack a {type(obj).__name__}")


def pack(obj):
    """``obj`` (dicts, lists, tuples, str, int, float, bool, None, tensors) as bytes."""
    from safetensors.torch import save
    tensors = {}
    tree = _encode(obj, tensors)
    # safetensors refuses tensors that share memory (tied weights, views): give each its own
    seen, out = set(), {}
    for name, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and (ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return save(out, metadata={TREE: json.dumps(tree, separators=(",", ":"))})


def header(data, max_bytes):
    """The validated safetensors header of ``data``: ``{name: (dtype, shape, (begin, end))}`` and its metadata."""
    if len(data) > max_bytes:
        raise PackError(f"{len(data):,} bytes, more than the limit of {max_bytes:,}")
    return parse_header(data, len(data))


def parse_header(head, total):
    """Like ``header``, from the first bytes of a container (``head``, at least the header) whose length is ``total``."""
    if total < 8 or len(head) < 8:
        raise PackError("truncated")
    (n,) = struct.unpack("<Q", head[:8])
    if n > min(MAX_HEADER, total - 8) or len(head) < 8 + n:
        raise PackError("header larger than the data or the limit")
    try:
        head = json.loads(bytes(head[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PackError("unreadable header") from None
    if not isinstance(head, dict):
        raise PackError("header is not a mapping")
    meta = head.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PackError("malformed metadata")
    body = total - 8 - n
    entries, spans = {}, []
    for name, info in head.items():
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in ITEMSIZE:
            raise PackError(f"tensor {name[:40]!r}: unsupported dtype")
        shape, offs = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(s, int) and 0 <= s < 1 << 40 for s in shape)
                and isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
            raise PackError(f"tensor {name[:40]!r}: malformed shape or offsets")
        numel = 1
        for s in shape:
            numel *= s
        begin, end = offs
        if not (0 <= begin <= end <= body) or end - begin != numel * ITEMSIZE[info["dtype"]]:
            raise PackError(f"tensor {name[:40]!r}: its bytes do not fit its shape")
        entries[name] = (info["dtype"], tuple(shape), (begin, end))
        spans.append((begin, end))
    spans.sort()
    if any(b < a_end for (_, a_end), (b, _) in zip(spans, spans[1:])):
        raise PackError("overlapping tensors")
    return entries, meta


def _decode(node, tensors, used, depth=0):
    if depth > MAX_DEPTH:
        raise PackError("nested too deeply")
    if isinstance(node, list):
        return [_decode(v, tensors, used, depth + 1) for v in node]
    if isinstance(node, dict):
        if set(node) == {"$t"}:
            name = node["$t"]
            if not isinstance(name, str) or name not in tensors:
                raise PackError("reference to a missing tensor")
            used.add(name)
            return tensors[name]
        if set(node) == {"$d"} and isinstance(node["$d"], list):
            out = {}
            for pair in node["$d"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise PackError("malformed mapping")
                k = _decode(pair[0], tensors, used, depth + 1)
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise PackError("a mapping key that is not a string or an integer")
                out[k] = _decode(pair[1], tensors, used, depth + 1)
            return out
        raise PackError("malformed node")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise PackError("malformed node")


def unpack(data, max_bytes):
    """The object packed in ``data``; ``PackError`` when it is malformed or over ``max_bytes``."""
    from safetensors.torch import load
    entries, meta = header(data, max_bytes)
    if TREE not in meta:
        raise PackError("no structure in the metadata")
    try:
        tree = json.loads(meta[TREE])
    except (ValueError, RecursionError):
        raise PackError("unreadable structure") from None
    try:
        tensors = load(bytes(data)) if entries else {}
    except Exception as e:  # the library's own validation
        raise PackError(f"unreadable tensors ({type(e).__name__})") from None
    used = set()
    obj = _decode(tree, tensors, used)
    if used != set(tensors):  # bytes the structure does not account for: an answer with extra parts
        raise PackError(f"{len(set(tensors) - used)} tensors the structure does not use")
    return obj
