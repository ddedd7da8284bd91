"""Plain data with tensors in it, as bytes that cannot inflate and cannot run code.

One format serves the grader's messages to and from its worker and the kit's checkpoints:
a safetensors container (raw tensor bytes behind a JSON header: no compression, no pickle)
whose metadata holds the structure as JSON, tensors standing in it as ``{"$t": "3"}``. Reading
is bounded before a byte of tensor data is touched: the container's size, its header's size,
each tensor's dtype, shape and byte range, the structure's depth and length. Memory used while
reading is at most the size of the bytes read, which callers cap (``MAX_FRAME`` for the
worker's answers, ``kit.checkpoint.MAX_BYTES`` for checkpoints).

A tensor's layout travels too, so that a non-contiguous input reaches the student's code
non-contiguous (``x.view(...)`` on a transposed activation must fail there as it would in
training): a tensor that is not contiguous, or starts past the beginning of its storage, is
sent as the span of storage it covers (a 1-D tensor) and a view of it,
``{"$t": "3", "$v": [shape, strides, offset]}``. The reader checks that view against the span
before making it (non-negative strides and offset, every element inside the span, no element
reached twice, no more elements than the span holds), so a crafted view can neither read out of
bounds nor inflate.

This file imports nothing of the kit: the worker loads it by path.
"""
import json
import struct

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER = 8 << 20  # bytes of JSON header: tens of thousands of tensors, far more than any message holds
MAX_DEPTH = 32
TREE = "tree"
SPAN = 4  # a view is sent with its layout when its storage span is at most SPAN times its size (else compacted)


def T(template, **params):
    """``kit.outcome.T``'s words without the kit (this file imports none of it): the template and its parameters,
    which a ``PackError`` keeps for the kit's side to word (``said``); ``make locale`` extracts the template as it
    does every ``T()``."""
    return template, params


class PackError(ValueError):
    """The bytes are not a well-formed pack within the limits: raised with ``T(...)``; ``str()`` says which, in
    English, and ``template``/``params`` keep its words for ``said``."""

    def __init__(self, words):
        self.template, self.params = words
        super().__init__(self.template.format(**self.params))


def said(error):
    """A ``PackError``'s words as a ``kit.outcome.Text`` (imported here only when asked, never in the worker)."""
    from kit.outcome import text
    return text(error.template, error.params)


def _encode(obj, tensors, depth=0, layout=True):
    import torch
    if depth > MAX_DEPTH:
        raise PackError(T("nested too deeply"))
    if isinstance(obj, torch.Tensor):
        name = str(len(tensors))
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        view = _layout(t) if layout else None
        if view is None:
            tensors[name] = t.contiguous()
            return {"$t": name}
        shape, strides, offset, span = view
        # the storage from `start` to the view's last element, as a tensor of its own
        start = t.storage_offset() - offset
        tensors[name] = t.as_strided((span,), (1,), start).clone()
        return {"$t": name, "$v": [shape, strides, offset]}
    if isinstance(obj, dict):
        return {"$d": [[_encode(k, tensors, depth + 1, layout), _encode(v, tensors, depth + 1, layout)]
                       for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, tensors, depth + 1, layout) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise PackError(T("cannot pack a {type_code}", type_code=type(obj).__name__))


def _layout(t):
    """``(shape, strides, offset, span)`` to send ``t`` as a view, or None to send it compacted.

    Only views worth the bytes keep their layout: not contiguous or not at the start of their storage,
    no element reached twice (an expanded tensor is compacted), and a span at most ``SPAN`` times the size.
    """
    if t.numel() == 0 or (t.is_contiguous() and t.storage_offset() == 0):
        return None
    shape, strides = list(t.shape), list(t.stride())
    if not _distinct(shape, strides):
        return None
    last = sum((n - 1) * s for n, s in zip(shape, strides))  # the last element's distance from the first
    offset = t.storage_offset() if t.storage_offset() + last + 1 <= SPAN * t.numel() else 0
    span = offset + last + 1
    if span > SPAN * t.numel():
        return None
    return shape, strides, offset, span


def _distinct(shape, strides):
    """Whether no two indices of a view reach the same element: sorted by stride, each dimension's stride
    passes the farthest reach of the smaller ones (what every permutation or slicing of a dense tensor has)."""
    reach = 0
    for n, s in sorted(((n, s) for n, s in zip(shape, strides) if n > 1), key=lambda d: d[1]):
        if s <= reach:
            return False
        reach += (n - 1) * s
    return True


def pack(obj, layout=True):
    """``obj`` (dicts, lists, tuples, str, int, float, bool, None, tensors) as bytes; ``layout=False`` sends every
    tensor compacted (a checkpoint, whose readers take each tensor's bytes as they are: kit/checkpoint.py)."""
    from safetensors.torch import save
    tensors = {}
    tree = _encode(obj, tensors, layout=layout)
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
        raise PackError(T("{size:,} bytes, more than the limit of {limit:,}", size=len(data), limit=max_bytes))
    return parse_header(data, len(data))


def parse_header(head, total):
    """Like ``header``, from the first bytes of a container (``head``, at least the header) whose length is ``total``."""
    if total < 8 or len(head) < 8:
        raise PackError(T("truncated"))
    (n,) = struct.unpack("<Q", head[:8])
    if n > min(MAX_HEADER, total - 8) or len(head) < 8 + n:
        raise PackError(T("header larger than the data or the limit"))
    try:
        head = json.loads(bytes(head[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PackError(T("unreadable header")) from None
    if not isinstance(head, dict):
        raise PackError(T("header is not a mapping"))
    meta = head.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PackError(T("malformed metadata"))
    body = total - 8 - n
    entries, spans = {}, []
    for name, info in head.items():
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in ITEMSIZE:
            raise PackError(T("tensor {name_code}: unsupported dtype", name_code=repr(name[:40])))
        shape, offs = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(s, int) and 0 <= s < 1 << 40 for s in shape)
                and isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
            raise PackError(T("tensor {name_code}: malformed shape or offsets", name_code=repr(name[:40])))
        numel = 1
        for s in shape:
            numel *= s
        begin, end = offs
        if not (0 <= begin <= end <= body) or end - begin != numel * ITEMSIZE[info["dtype"]]:
            raise PackError(T("tensor {name_code}: its bytes do not fit its shape", name_code=repr(name[:40])))
        entries[name] = (info["dtype"], tuple(shape), (begin, end))
        spans.append((begin, end))
    spans.sort()
    if any(b < a_end for (_, a_end), (b, _) in zip(spans, spans[1:])):
        raise PackError(T("overlapping tensors"))
    return entries, meta


def _decode(node, tensors, used, depth=0):
    if depth > MAX_DEPTH:
        raise PackError(T("nested too deeply"))
    if isinstance(node, list):
        return [_decode(v, tensors, used, depth + 1) for v in node]
    if isinstance(node, dict):
        if set(node) in ({"$t"}, {"$t", "$v"}):
            name = node["$t"]
            if not isinstance(name, str) or name not in tensors:
                raise PackError(T("reference to a missing tensor"))
            if name in used:  # one span, one tensor: a view never shares its storage with another
                raise PackError(T("a tensor used twice"))
            used.add(name)
            return tensors[name] if "$v" not in node else _view(tensors[name], node["$v"])
        if set(node) == {"$d"} and isinstance(node["$d"], list):
            out = {}
            for pair in node["$d"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise PackError(T("malformed mapping"))
                k = _decode(pair[0], tensors, used, depth + 1)
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise PackError(T("a mapping key that is not a string or an integer"))
                out[k] = _decode(pair[1], tensors, used, depth + 1)
            return out
        raise PackError(T("malformed node"))
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise PackError(T("malformed node"))


def _view(span, layout):
    """``span`` (1-D) seen as ``layout`` = [shape, strides, offset], once the view is known to stay inside it."""
    if not (isinstance(layout, list) and len(layout) == 3 and isinstance(layout[0], list)
            and isinstance(layout[1], list) and len(layout[0]) == len(layout[1]) <= MAX_DEPTH):
        raise PackError(T("malformed view"))
    shape, strides, offset = layout
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in (*shape, *strides, offset)):
        raise PackError(T("malformed view"))
    if span.dim() != 1:
        raise PackError(T("a view of a tensor that is not a span"))
    numel = 1
    for n in shape:
        numel *= n
    if numel == 0 or numel > span.numel() or not _distinct(shape, strides):
        raise PackError(T("a view that reaches an element twice or holds more elements than its span"))
    if offset + sum((n - 1) * s for n, s in zip(shape, strides)) >= span.numel():
        raise PackError(T("a view that reaches past its span"))
    return span.as_strided(shape, strides, offset)


def unpack(data, max_bytes):
    """The object packed in ``data``; ``PackError`` when it is malformed or over ``max_bytes``."""
    from safetensors.torch import load
    entries, meta = header(data, max_bytes)
    if TREE not in meta:
        raise PackError(T("no structure in the metadata"))
    try:
        tree = json.loads(meta[TREE])
    except (ValueError, RecursionError):
        raise PackError(T("unreadable structure")) from None
    try:
        tensors = load(bytes(data)) if entries else {}
    except Exception as e:  # the library's own validation
        raise PackError(T("unreadable tensors ({type_code})", type_code=type(e).__name__)) from None
    used = set()
    obj = _decode(tree, tensors, used)
    if used != set(tensors):  # bytes the structure does not account for: an answer with extra parts
        raise PackError(T("{n} tensors the structure does not use", n=len(set(tensors) - used)))
    return obj
