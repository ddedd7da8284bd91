"""What travels between the grader and an implementation: requests, and the answers they must get.

A request asks one implementation to build a module and run it:

    {"module": "block", "target": "TransformerBlock",
     "standins": ["rmsnorm", "attention"],   # modules of the implementation replaced by the grader's stand-ins
     "patch": ["FeedForward"],                # names in the tested module bound to the stand-in of that name
     "init": {"args": [...], "kwargs": {...}}, "load": state_dict, "dtype": "bfloat16", "train": False,
     "want": ["params", "structure"], "attrs": ["eps"], "threads": 1,
     "calls": [{"args": [...], "kwargs": {...}, "grad": dy, "method": None, "same_as": None}]}

Arguments may be tensors, plain values, or modules built in the worker
(``{"__obj__": "torch.nn.Linear"}``, ``{"__obj__": "standin:sublayers.Shift"}``).

The answer is ``{"error": E}`` (the code raised before any call; ``keys`` may come with it) or

    {"keys": {name: [shape, dtype]},          # exactly when the request has "init"
     "params": {...}, "structure": {...},    # exactly when asked for in "want"; a structure lists modules,
                                             # parameters and every other tensor held (buffer or plain attribute)
     "attrs": {name: value},                  # exactly the names asked for
     "results": [R, ...]}                     # exactly one per call

with each ``R`` either ``{"error": E}`` or ``{"output": V, "inputs_after": [...]}`` (one entry per
argument) and, for a call with ``grad``, ``input_grads`` and ``param_grads`` (a tensor, None when no
gradient reached the parameter, or ``FROZEN`` when it does not require one) or a ``grad_error``.

``validate`` holds every answer from the worker to this, and to size limits, before any check
reads it: an answer that is missing, extra, malformed or oversized raises ``Malformed``, which
fails the check that asked (never passes it). Every string in an answer is made safe to print
(``kit.text``).
"""
from dataclasses import dataclass, field

from kit.outcome import T
from kit.text import clean, one_line

FROZEN = "frozen"  # a parameter's gradient entry when it does not require one (requires_grad=False)
MAX_FRAME = 64 << 20  # bytes of one answer: the largest legitimate one (logits of a batch of windows) is a few MB
MAX_ELEMENTS = 8 << 20  # tensor elements in one answer
DTYPES = ("float32", "float64", "bfloat16", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
STAGES = ("import", "init", "load")
ENTRIES = {"keys": T("the parameter names"), "params": T("the parameters"), "structure": T("the module structure"),
           "attrs": T("the attributes"), "results": T("the results of the calls"), "error": T("an error report")}
# torch is imported only when an answer is read: the sandbox starts its worker first, so both import it at once


class Malformed(Exception):
    """An answer that does not fit its request: raised with a ``Text`` saying what (``kit.outcome.said``); ``str()`` is
    its English."""


def call(*args, grad=None, method=None, same_as=None, input_grad=True, capture=False, **kwargs):
    """One call in a request: ``obj(*args, **kwargs)`` (or ``obj.method(...)``), backward with ``grad`` if given.

    ``same_as=i`` passes the very tensors of call ``i`` again instead of fresh copies, so a change made
    in place by call ``i`` shows in this one's output; ``input_grad=False`` backpropagates to the
    parameters only (the inputs do not require a gradient); ``capture=True`` also sends back the
    attention probabilities the call computed last (``attention``: a (maps, T, T) tensor, or None).
    """
    return {"args": list(args), "kwargs": kwargs, "grad": grad, "method": method, "same_as": same_as,
            "input_grad": input_grad, **({"capture": True} if capture else {})}


@dataclass
class Request:
    module: str
    target: str
    init: tuple = None  # (args, kwargs)
    load: dict = None
    calls: list = field(default_factory=list)
    standins: tuple = ()
    patch: tuple = ()
    dtype: str = None
    want: tuple = ()
    attrs: tuple = ()
    train: bool = False
    folder: str = None  # a folder inside the sandbox's own (the kit's tests grade many from one worker)
    # the worker's compute threads (at most the sandbox's): one for the checks' small tensors, where a second thread
    # only spins against the grader's on two cores (BENCHMARKS.md, grader); more for a model on many windows
    threads: int = 1

    def wire(self):
        """The request as the worker reads it."""
        return {**self.key(), "threads": self.threads}

    def key(self):
        """What the answer depends on: the request without its thread count (the snapshot's key)."""
        return {"module": self.module, "target": self.target, "standins": list(self.standins), "folder": self.folder,
                "patch": list(self.patch),
                "init": None if self.init is None else {"args": list(self.init[0]), "kwargs": dict(self.init[1])},
                "load": self.load, "dtype": self.dtype, "train": self.train, "want": list(self.want),
                "attrs": list(self.attrs), "calls": list(self.calls)}


# --- validation -------------------------------------------------------------------------------

class _Budget:
    def __init__(self):
        self.elements = 0

    def tensor(self, t, what):
        if str(t.dtype).removeprefix("torch.") not in DTYPES:
            raise Malformed(T("{what} is a tensor of dtype {dtype}", what=what, dtype=str(t.dtype)))
        self.elements += t.numel()
        if self.elements > MAX_ELEMENTS:
            raise Malformed(T("the answer holds more than {n:,} numbers", n=MAX_ELEMENTS))
        return t


def _listed(names):
    """The entries ``names`` of an answer, in words: one ``Text`` (``T("{first}, {rest}")`` joins them)."""
    words = [ENTRIES.get(n, T("something else")) for n in names]
    listed = words[-1]
    for w in reversed(words[:-1]):
        listed = T("{first}, {rest}", first=w, rest=listed)
    return listed


def _value(v, budget, what, depth=0):
    """An output value: tensors, plain values, lists and string-keyed dicts of them."""
    import torch
    if depth > 8:
        raise Malformed(T("{what} is nested too deeply", what=what))
    if isinstance(v, torch.Tensor):
        return budget.tensor(v, what)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        if len(v) > 4096:
            raise Malformed(T("{what} is a list of {n:,} items", what=what, n=len(v)))
        return [_value(x, budget, what, depth + 1) for x in v]
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v) or len(v) > 4096:
            raise Malformed(T("{what} is not a mapping of names", what=what))
        return {k: _value(x, budget, what, depth + 1) for k, x in v.items()}
    raise Malformed(T("{what} holds a {type_code}", what=what, type_code=type(v).__name__))


def _error(e, what):
    if not isinstance(e, dict) or not {"stage", "type", "message"} <= set(e):
        raise Malformed(T("{what}: a malformed error report", what=what))
    where = e.get("where")
    if where is not None and not (isinstance(where, list) and len(where) == 4 and isinstance(where[1], int)):
        raise Malformed(T("{what}: a malformed error location", what=what))
    stage = e["stage"]
    if not isinstance(stage, str) or not (stage in STAGES or stage.startswith(("call ", "backward "))):
        raise Malformed(T("{what}: an error at an unknown stage", what=what))
    # torch's messages break lines and indent ("...state_dict for X:\n\tsize mismatch ..."): one space each,
    # rather than the escapes one_line would show
    message = " ".join(str(e["message"]).split())
    return {"stage": stage, "type": one_line(e["type"], 80), "message": one_line(message, 600),
            "where": clean(where, 160) if where else None,
            "inside": one_line(e["inside"], 80) if isinstance(e.get("inside"), str) else None,
            "not_implemented": e.get("not_implemented") is True, "refused": e.get("refused") is True,
            # a fence's refusal and SystemExit's code, each checked and worded by grader/harness.py student_error
            "refusal": {k: one_line(v, 500) for k, v in e["refusal"].items() if k in ("action", "subject", "path")
                        and isinstance(v, str)} if isinstance(e.get("refusal"), dict) else None,
            "exit_code": one_line(e["exit_code"], 200) if isinstance(e.get("exit_code"), str) else None,
            "not_module": one_line(e["not_module"], 200) if isinstance(e.get("not_module"), str) else None}


def _keys(k, what):
    if not isinstance(k, dict) or len(k) > 4096:
        raise Malformed(T("{what}: malformed parameter names", what=what))
    out = {}
    for name, v in k.items():
        if not (isinstance(name, str) and isinstance(v, list) and len(v) == 2 and isinstance(v[0], list)
                and all(isinstance(s, int) and s >= 0 for s in v[0]) and isinstance(v[1], str)):
            raise Malformed(T("{what}: malformed parameter names", what=what))
        out[one_line(name, 120)] = [list(v[0]), one_line(v[1], 20)]
    return out


def validate(req, answer):
    """``answer`` checked against ``req`` (a Request); returns it with its strings made safe; raises Malformed."""
    import torch
    if not isinstance(answer, dict):
        raise Malformed(T("the answer is not a mapping"))
    budget = _Budget()
    if "error" in answer:
        if not set(answer) <= {"error", "keys"}:
            raise Malformed(T("an error report with other entries"))
        out = {"error": _error(answer["error"], T("the error report"))}
        if "keys" in answer:
            out["keys"] = _keys(answer["keys"], T("the parameter names"))
        return out
    want = {"results"} | ({"keys"} if req.init is not None else set()) | set(req.want) | (
        {"attrs"} if req.attrs else set())
    if set(answer) != want:
        extra, missing = sorted(set(answer) - want), sorted(want - set(answer))
        lacks = T("lacks {entries}", entries=_listed(missing)) if missing else None
        has = T("has {entries} not asked for", entries=_listed(extra)) if extra else None
        raise Malformed(T("the answer {lacks}; {has}", lacks=lacks, has=has) if lacks and has else
                        T("the answer {part}", part=lacks or has))
    out = {}
    if "keys" in want:
        out["keys"] = _keys(answer["keys"], T("the parameter names"))
    if "params" in want:
        p = answer["params"]
        if not isinstance(p, dict) or set(p) != set(answer["keys"]):
            raise Malformed(T("the parameters sent back are not the module's"))
        if not all(isinstance(v, torch.Tensor) for v in p.values()):
            raise Malformed(T("a parameter sent back is not a tensor"))
        out["params"] = {one_line(k, 120): budget.tensor(v, T("a parameter")) for k, v in p.items()}
    if "structure" in want:
        out["structure"] = _structure(answer["structure"])
    if "attrs" in want:
        a = answer["attrs"]
        if not isinstance(a, dict) or set(a) != set(req.attrs):
            raise Malformed(T("the attributes sent back are not the ones asked for"))
        out["attrs"] = {k: _value(v, budget, T("attribute {name_code}", name_code=k)) for k, v in a.items()}
    results = answer["results"]
    if not isinstance(results, list) or len(results) != len(req.calls):
        raise Malformed(T("the answer has {n} results for {calls} calls", n=len(results), calls=len(req.calls))
                        if isinstance(results, list) else
                        T("the answer has no list of results for {calls} calls", calls=len(req.calls)))
    out["results"] = [_result(c, r, budget, i) for i, (c, r) in enumerate(zip(req.calls, results))]
    return clean(out)


def _structure(s):
    # "tensors" may be left out: a worker that hides them gains nothing it could not forge as an empty list
    s = {"tensors": [], **s} if isinstance(s, dict) else s
    if not (isinstance(s, dict) and set(s) == {"modules", "params", "tensors"} and isinstance(s["modules"], list)
            and isinstance(s["params"], list) and isinstance(s["tensors"], list) and len(s["modules"]) < 4096
            and len(s["params"]) < 4096 and len(s["tensors"]) < 4096):
        raise Malformed(T("a malformed module structure"))
    for t in s["tensors"]:  # [name, dtype, registered as a buffer]
        if not (isinstance(t, list) and len(t) == 3 and isinstance(t[0], str) and isinstance(t[1], str)
                and isinstance(t[2], bool)):
            raise Malformed(T("a malformed list of buffers"))
    for m in s["modules"]:
        if not (isinstance(m, list) and len(m) == 4 and isinstance(m[0], str) and isinstance(m[1], str)
                and isinstance(m[2], int) and isinstance(m[3], str)):
            raise Malformed(T("a malformed module structure"))
    for p in s["params"]:
        if not (isinstance(p, list) and len(p) == 3 and isinstance(p[0], str) and isinstance(p[1], int)
                and isinstance(p[2], list)):
            raise Malformed(T("a malformed parameter list"))
    return s


def _result(c, r, budget, i):
    import torch
    what = T("the result of call {n}", n=i + 1)
    if not isinstance(r, dict):
        raise Malformed(T("{what} is not a mapping", what=what))
    if "error" in r:
        if set(r) != {"error"}:
            raise Malformed(T("{what}: an error report with other entries", what=what))
        return {"error": _error(r["error"], what)}
    n_args = len(c.get("args", [])) if c.get("same_as") is None else None
    grad = c.get("grad") is not None
    capture = bool(c.get("capture"))
    allowed = {"output", "inputs_after"} | ({"input_grads", "param_grads", "grad_error"} if grad else set()) | (
        {"attention"} if capture else set())
    if not {"output", "inputs_after"} <= set(r) or not set(r) <= allowed or capture != ("attention" in r):
        raise Malformed(T("{what} does not hold what was asked for", what=what))
    if grad and not ({"input_grads", "param_grads"} <= set(r) or ("grad_error" in r and "input_grads" not in r)):
        raise Malformed(T("{what} has no gradients", what=what))
    out = {"output": _value(r["output"], budget, T("the output of call {n}", n=i + 1))}
    after = r["inputs_after"]
    if not isinstance(after, list) or (n_args is not None and len(after) != n_args):
        raise Malformed(T("{what}: its inputs are not sent back", what=what))
    out["inputs_after"] = [budget.tensor(a, T("an input")) if isinstance(a, torch.Tensor) else None for a in after]
    if capture:
        a = r["attention"]
        if a is not None and not (isinstance(a, torch.Tensor) and a.dim() == 3 and a.shape[1] == a.shape[2]
                                  and a.dtype == torch.float32):
            raise Malformed(T("{what}: its attention weights are not (maps, T, T) float32", what=what))
        out["attention"] = None if a is None else budget.tensor(a, T("attention weights"))
    if "grad_error" in r:
        out["grad_error"] = one_line(r["grad_error"], 200)
    if "input_grads" in r:
        ig, pg = r["input_grads"], r["param_grads"]
        if not isinstance(ig, list) or len(ig) != len(after) or not isinstance(pg, dict):
            raise Malformed(T("{what}: malformed gradients", what=what))
        out["input_grads"] = [budget.tensor(g, T("a gradient")) if isinstance(g, torch.Tensor) else None for g in ig]
        out["param_grads"] = {one_line(k, 120): budget.tensor(g, T("a gradient")) if isinstance(g, torch.Tensor) else
                              FROZEN if g == FROZEN else None for k, g in pg.items()}
    return out


def changed(before, after):
    """Whether a call changed its input tensor, judged with the grader's own torch."""
    import torch
    if not isinstance(before, torch.Tensor):
        return False
    if not isinstance(after, torch.Tensor) or after.shape != before.shape or after.dtype != before.dtype:
        return True
    return not torch.equal(before, after)
