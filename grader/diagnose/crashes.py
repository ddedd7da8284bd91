"""Crashes with a known cause: an exception whose type and torch message betray a classic mistake.

``with explaining(fn, ...):`` around a check's calls re-raises a failure that names no mistake
yet with the first explanation ``fn(exc)`` returns as ``(likely, hint)``. An explainer reads the
structured report of the student's exception (``exc.error``: its type, its message from torch,
where it was raised), never the grader's own wording. An explainer that fails itself is skipped:
a diagnosis never breaks a check.
"""
import re

from kit.outcome import CheckFailure, Kind, T

from ..harness import StudentError


class explaining:
    def __init__(self, *explainers):
        self.explainers = explainers

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not isinstance(exc, CheckFailure) or exc.failure.likely is not None:
            return False
        for fn in self.explainers:
            try:
                found = fn(exc)
            except Exception:  # noqa: BLE001 - a diagnosis never breaks a check
                found = None
            if found:
                raise CheckFailure.of(exc.failure.diagnosed(*found)) from None
        return False


def _raised(exc):
    """``(exception type, torch's message, function it was raised in)`` when the student's code raised, else None."""
    if not isinstance(exc, StudentError) or exc.error.get("not_implemented") or exc.error["stage"] == "import":
        return None
    where = exc.error.get("where")
    return exc.error["type"], exc.error["message"], where[2] if where else ""


def _broadcast_sizes(text):
    m = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)", text)
    return {int(m.group(1)), int(m.group(2))} if m else None


def noncontiguous_view(exc):
    """``.view(...)`` on a tensor whose strides cannot give that shape: the checks pass a non-contiguous input
    (a transposed tensor, as real activations can be), and ``view`` needs memory laid out for it."""
    raised = _raised(exc)
    if raised and raised[0] == "RuntimeError" and "view size is not compatible with input tensor's size and stride" \
            in raised[1]:
        return (T("a .view(...) of a tensor that is not contiguous in memory: the check passes a transposed input, "
                  "as a real activation can be, and view cannot reshape it without a copy"),
                T("use .reshape(...) (or .flatten), which copies only when it must; or leave the input's shape alone"))
    return None


def attention_crash(H, Hkv=None):
    """Explain the crashes that betray a classic attention mistake, for a module with H heads and Hkv kv heads."""
    Hkv = Hkv or H

    def explain(exc):
        raised = _raised(exc)
        if not raised:
            return None
        _, text, function = raised
        sizes = _broadcast_sizes(text)
        if function == "apply_rope" and sizes and not sizes & {H, Hkv} and max(sizes) - min(sizes) == 1:
            n = min(sizes)
            return (T("the RoPE tables reach apply_rope with one row too few ({rows} rows for {positions} positions): "
                      "they are sliced from row 1 (cos[1:T + 1]), which at T = max_seq_len runs past the end of the "
                      "tables", rows=n, positions=n + 1),
                    T("row t of the tables rotates position t, from 0: pass self.cos[:T] and self.sin[:T]"))
        if function == "apply_rope" and sizes:
            return (T("RoPE is applied to q or k in another layout than (B, H, T, head_dim): the (T, head_dim) "
                      "tables broadcast against the wrong dimensions"),
                    T("split the heads and transpose first: q = q_proj(x).view(B, T, H, D).transpose(1, 2), "
                      "then apply_rope(q, cos[:T], sin[:T])"))
        if Hkv < H and sizes == {H, Hkv}:
            return (T("k/v heads are not repeated for grouped-query attention: q has {heads} heads, k and v have "
                      "{kv_heads}", heads=H, kv_heads=Hkv),
                    T("repeat k and v along the head dimension: k.repeat_interleave(num_heads // num_kv_heads, dim=1) "
                      "(query head i reads kv head i // n_rep)"))
        mismatched = {name + ".weight": (int(r), int(c)) for name, r, c in re.findall(
            r"size mismatch for (\w+)\.weight: copying a param with shape torch\.Size\(\[\d+, \d+\]\) from "
            r"checkpoint, the shape in current model is torch\.Size\(\[(\d+), (\d+)\]\)", text)}
        if mismatched:
            return projection_mistake(mismatched, H, Hkv)
        if Hkv < H and "is invalid for input of size" in text:
            return KV_OUTPUTS, KV_OUTPUTS_HINT
        return noncontiguous_view(exc) or missing_attribute(exc)
    return explain


KV_OUTPUTS = T("k_proj or v_proj has the wrong number of outputs for grouped-query attention")
KV_OUTPUTS_HINT = T("k_proj and v_proj map hidden_size to num_kv_heads * head_dim features, not hidden_size")


def projection_mistake(shapes, H, Hkv=None):
    """``(likely, hint)`` for attention projections of the wrong shapes (``{name: (rows, cols)}``, the wrong ones
    at least), when the shapes single out a mistake: head_dim from num_kv_heads, or k/v not shrunk for GQA."""
    Hkv = Hkv or H
    q, k, v, o = (shapes.get(f"{n}_proj.weight") for n in "qkvo")
    C = next((s[1] for s in (q, k, v) if s), None) or (o[0] if o else None)
    if C is None or C % H:
        return None
    if Hkv < H and q and q[0] == C * H // Hkv and (k is None or k[0] == C):
        return (T("head_dim is computed from num_kv_heads (hidden_size // num_kv_heads), not from num_heads: "
                  "every projection has the wrong size"),
                T("head_dim = hidden_size // num_heads; k_proj and v_proj then have num_kv_heads * head_dim outputs"))
    if Hkv < H and q in (None, (C, C)) and ((k and k[0] == C) or (v and v[0] == C)):
        return KV_OUTPUTS, KV_OUTPUTS_HINT
    return None


# The classes of the API: an AttributeError about one of them is about an attribute the student's code forgot to set.
API_CLASSES = ("Residual", "RMSNorm", "CausalSelfAttention", "FeedForward", "TransformerBlock", "TransformerDecoder",
               "TransformerLM")


def no_attribute(owner, name):
    """``(likely, hint)`` for a module of the API that lacks an attribute its code or the checks read."""
    return (T("{owner} has no attribute {name}: set self.{name} in __init__", owner=owner, name=name),
            T("assign self.{name} in {owner}.__init__, before anything reads it (the docstring lists the attributes "
              "the module keeps)", owner=owner, name=name))


def missing_attribute(exc):
    """An AttributeError saying that a module of the API has no attribute of that name."""
    raised = _raised(exc)
    if not raised or raised[0] != "AttributeError":
        return None
    m = re.search(r"'(\w+)' object has no attribute '(\w+)'", raised[1])
    if m and m.group(1) in API_CLASSES:
        return no_attribute(m.group(1), m.group(2))
    return None


def nondeterministic(sub, module, target, x, **request):
    """An explainer for a wrong output: the same input, passed twice in one request, gives two outputs.

    Then something random runs in forward (dropout that stays on in eval mode, say), and no comparison with the
    reference can pass; say so instead of blaming a step of the computation. Only for wrong values: a crash or a
    time-out is not rerun.
    """
    from ..harness import call, only

    def explain(exc):
        if exc.failure.kind is not Kind.WRONG_VALUE:
            return None
        import torch
        got = only(sub, module, target, T("{target} called twice on the same input", target=target),
                   calls=[call(x), call(x)], **request)
        a, b = (r["output"] for r in got["results"])
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape):
            return None
        if torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6, equal_nan=True):  # rounding is no chance
            return None
        return (T("two calls with the same input gave different outputs: something random runs in {target}'s "
                  "forward, such as dropout that stays on (F.dropout(x, p) drops even in eval mode unless given "
                  "training=self.training)", target=target),
                T("the checks run modules in eval mode and compare exact values: use nn.Dropout modules (they switch "
                  "off in eval mode) or pass training=self.training to F.dropout, or leave dropout out"))
    return explain


# The stand-in file an error was raised in -> the grader's classes it holds (a class name, or words about them).
STANDIN_CLASSES = {"attention.py": "CausalSelfAttention", "rmsnorm.py": "RMSNorm",
                   "block.py": T("TransformerBlock or FeedForward"), "sublayers.py": T("Shift (the test sublayer)")}


def standin_crash(signature):
    """An exception raised inside one of the grader's stand-ins, reached from the student's code.

    The stand-ins are correct for any valid arguments, so the arguments the student's code gave them are not:
    name the student's line (``where``) and the stand-in (``inside``) apart, and the signature to compare with.
    """
    def explain(exc):
        raised = _raised(exc)
        inside = exc.error.get("inside") if raised else None
        if not inside:
            return None
        where = exc.error.get("where")
        if where and where[3]:
            line = T("your {file} line {line} (in {function}: `{code}`)", file=where[0], line=where[1],
                     function=where[2], code=where[3])
        elif where:
            line = T("your {file} line {line} (in {function})", file=where[0], line=where[1], function=where[2])
        else:
            line = T("your code")
        standin = STANDIN_CLASSES.get(inside, T("component"))
        return (T("the {exception} was raised inside the grader's stand-in {standin} (the grader's file {inside}, "
                  "not yours), called from {line}: the stand-in got arguments from your code that it cannot work "
                  "with, often arguments passed by position in another order than the signature",
                  exception=raised[0], standin=standin, inside=inside, line=line),
                T("compare what your __init__ passes with the signature {signature}, or pass each argument by "
                  "keyword", signature=signature))
    return explain


def not_passed_on(exc):
    """Weights of a stand-in component that do not load: the assembly did not pass an argument on to it.

    The stand-ins build their parameters from their arguments exactly as the API says, so a shape mismatch
    inside one (k_proj with num_heads outputs instead of num_kv_heads, say) means an argument did not reach it.
    """
    raised = _raised(exc)
    if not raised or exc.error["stage"] != "load":
        return None
    m = re.search(r"size mismatch for ((?:\w+\.)*?)(self_attn\.[kv]_proj|mlp\.(?:gate|up|down)_proj)\.weight",
                  raised[1])
    if not m:
        return None
    argument, component, built = (
        ("num_kv_heads", "CausalSelfAttention",
         "CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)")
        if m.group(2).startswith("self_attn") else
        ("intermediate_size", "FeedForward", "FeedForward(hidden_size, intermediate_size)"))
    path = m.group(1) + m.group(2) + ".weight"
    chain = {"decoder.": "TransformerLM -> TransformerDecoder -> TransformerBlock", "blocks.":
             "TransformerDecoder -> TransformerBlock"}.get(m.group(1).split(".")[0] + "." if m.group(1) else "",
                                                           "TransformerBlock")
    return (T("{argument} does not reach the {component}: {path} has another shape than the reference's, and the "
              "grader's stand-ins shape it from the {argument} they are given",
              argument=argument, component=component, path=path),
            T("pass {argument} on at every level ({chain} -> {built}): by position in the signature's order, or by "
              "keyword", argument=argument, chain=chain, built=built))


def _parts(names):
    """Parameter names grouped by the part that holds them: ``blocks.3`` for a whole block, else the module."""
    out = []
    for n in names:
        m = re.match(r"((?:\w+\.)*?blocks\.\d+)\.", n)
        part = m.group(1) if m else n.rsplit(".", 1)[0] if "." in n else n
        if part not in out:
            out.append(part)
    return out


def parameter_set(exc):
    """The reference's weights do not load because the model holds other parameters than the API's: parts of its
    own (Missing keys: the model has them, the reference's weights do not) or parts it lacks (Unexpected keys)."""
    raised = _raised(exc)
    if not raised or exc.error["stage"] != "load":
        return None
    extra = re.search(r"Missing key\(s\) in state_dict: ((?:\"[^\"]+\",? ?)+)", raised[1])
    lacking = re.search(r"Unexpected key\(s\) in state_dict: ((?:\"[^\"]+\",? ?)+)", raised[1])
    if not (extra or lacking):
        return None
    def listed(found):  # the parts' names (code), the first six
        parts = _parts(re.findall(r'"([^"]+)"', found.group(1)))
        return ", ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")

    if extra and lacking:
        likely = T("your model's parameters are not the API's: it holds parts the API does not have: {extra}; and "
                   "no {lacking}", extra=listed(extra), lacking=listed(lacking))
    elif extra:
        likely = T("your model's parameters are not the API's: it holds parts the API does not have: {extra}",
                   extra=listed(extra))
    else:
        likely = T("your model's parameters are not the API's: it holds no {lacking}", lacking=listed(lacking))
    return (likely,
            T("build exactly the parts the API names (num_layers blocks: range(num_layers); no positional embedding, "
              "RoPE encodes positions), under the API's attribute names"))


def forward_variant(sub, module, target, x, variants, tol, **request):
    """An explainer for a wrong gradient: the forward pass on the same input, matched against the known mistakes.

    ``variants`` are the check's own (``ref.variants(...)`` on ``x``, asked when the check starts, so a snapshot
    holds them); a forward output that matches one names the mistake behind the gradient.
    """
    from ..compare import match_variant
    from ..harness import call, only

    def explain(exc):
        if exc.failure.kind is not Kind.WRONG_VALUE or not variants:
            return None
        got = only(sub, module, target, f"{target}(x)", calls=[call(x)], **request)
        y = got["results"][0]["output"]
        import torch
        return match_variant(y, variants, tol) if isinstance(y, torch.Tensor) else None
    return explain


def embedding_rows(got, exp, name="embed_tokens.weight"):
    """An explainer for a wrong gradient of the embedding that differs in a few rows only (the others match): those
    token ids get no gradient through the embedding, which ``padding_idx`` does (the tied head's part still comes)."""
    def explain(exc):
        import torch

        from ..compare import GRAD
        g, e = (got.get("param_grads") or {}).get(name), (exp.get("param_grads") or {}).get(name)
        if not (isinstance(g, torch.Tensor) and isinstance(e, torch.Tensor) and g.shape == e.shape and g.dim() == 2):
            return None
        off = ((g.double() - e.double()).abs() > GRAD.bound(e)).any(dim=1).nonzero().flatten().tolist()
        if not off or len(off) > 2:
            return None
        rows = off[0] if len(off) == 1 else T("{first} and {second}", first=off[0], second=off[1])
        return (T("the gradient of {name} differs only in row {rows} (token id {rows}), the other rows match: no "
                  "gradient reaches that row through the embedding, as nn.Embedding(..., padding_idx=...) does",
                  name=name, rows=rows),
                T("leave padding_idx out: the kit's tokens have no padding, and every id must learn"))
    return explain


def inplace_crash(hint):
    """An autograd error that says the input (or a tensor backward needs) was changed in place."""
    def explain(exc):
        raised = _raised(exc)
        if raised and ("in-place operation" in raised[1] or "modified by an inplace operation" in raised[1]):
            return (T("the input is changed in place (x += ..., or an in-place op such as mul_), which autograd "
                      "cannot differentiate through"), hint)
        return None
    return explain


def ffn_crash(hidden):
    """Weights of the reference's default width that do not load: the default intermediate_size is another."""
    def explain(exc):
        raised = _raised(exc)
        m = re.search(r"size mismatch for (gate|up|down)_proj\.weight", raised[1]) if raised else None
        if m and exc.error["stage"] == "load":
            return (T("the default intermediate_size is not 64 * math.ceil(8 * hidden_size / 3 / 64) "
                      "({width} for hidden_size {hidden})", width=64 * -(-8 * hidden // 3 // 64), hidden=hidden),
                    T("intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64): 8/3 of the width, rounded up to "
                      "a multiple of 64"))
        return None
    return explain


def untied_head(sub, init, standins, patch):
    """A wrong gradient of the tied embedding, explained by a head that owns a matrix of its own."""
    from ..harness import only

    def explain(exc):
        got = only(sub, "decoder", "TransformerLM", T("the structure of {target}", target="TransformerLM"), init=init,
                   standins=standins, patch=patch, want=["structure"])
        ptr = {name: p for name, p, _ in got["structure"]["params"]}
        if "lm_head.weight" in ptr and ptr["lm_head.weight"] != ptr.get("embed_tokens.weight"):
            return (T("lm_head has a matrix of its own: the head is not tied to the embedding"),
                    T("after building both: self.lm_head.weight = self.embed_tokens.weight"))
        return None
    return explain


def rmsnorm_crash(exc):
    raised = _raised(exc)
    if raised and _broadcast_sizes(raised[1]) and raised[2] == "forward":
        return (T("the statistic lost its last dimension (keepdim=True is missing), so it cannot broadcast "
                  "against x"),
                T("mean(-1, keepdim=True) gives shape (..., 1), which divides every feature of a vector"))
    return noncontiguous_view(exc) or missing_attribute(exc)


def lm_crash(V, C):
    """A head that multiplies by the (V, C) embedding matrix without transposing it."""
    def explain(exc):
        raised = _raised(exc)
        m = re.search(r"cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)", raised[1]) if raised else None
        if m and (int(m.group(2)), int(m.group(3)), int(m.group(4))) == (C, V, C):
            return (T("the output head multiplies by embed_tokens.weight (vocab_size, hidden_size) without "
                      "transposing it"),
                    T("use self.lm_head(x): nn.Linear computes x @ weight.T, and lm_head.weight is the tied (V, C) "
                      "embedding matrix"))
        return None
    return explain


# Where each assembly's stand-ins must sit: submodule name -> the stand-in class expected there.
STANDIN_SLOTS = {
    "TransformerBlock": {"input_layernorm": "RMSNorm", "self_attn": "CausalSelfAttention",
                         "post_attention_layernorm": "RMSNorm", "mlp": "FeedForward"},
    "TransformerDecoder": {"blocks.0": "TransformerBlock", "norm": "RMSNorm"},
    "TransformerLM": {"decoder.blocks.0": "TransformerBlock", "decoder.norm": "RMSNorm"},
}


def bypassed(sub, module, target, init, standins, patch):
    """An explainer: the assembly built a component of its own where the grader put a stand-in.

    Then its checks cannot judge the wiring alone; say exactly what was bypassed and how to let the
    grader swap it, instead of blaming the wiring.
    """
    from ..harness import only

    def explain(exc):
        got = only(sub, module, target, T("the structure of {target}", target=target), init=init, standins=standins,
                   patch=patch, want=["structure"])
        slots = STANDIN_SLOTS[target]
        found = {name: (kind, origin) for name, kind, _, origin in got["structure"]["modules"]}
        own = [(name, *found[name]) for name in slots if name in found and found[name][1] != "standin"]
        if not own:
            return None
        name, kind, origin = own[0]
        api = slots[name]
        where = T("defined in {origin}", origin=origin) if origin.endswith(".py") else T("from {origin}", origin=origin)
        return (T("your {target} builds {name} from its own class {kind} ({where}), so the grader could not put its "
                  "stand-in {api} there: this check then judges your own component together with the wiring",
                  target=target, name=name, kind=kind, where=where, api=api),
                T("build {name} with the name {api}, imported from its own file (from .{file} import {api}) "
                  "or defined under that name; the checks of {file}.py grade that component",
                  name=name, api=api, file=_file_of(api)))
    return explain


def _file_of(cls):
    return {"RMSNorm": "rmsnorm", "CausalSelfAttention": "attention", "FeedForward": "block",
            "TransformerBlock": "block"}[cls]
