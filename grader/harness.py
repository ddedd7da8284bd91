"""What the checks are written with: points, seeded inputs, and running both sides.

A check builds one ``Request`` (grader/protocol.py) for the submission, answered by the
sandboxed worker, and for the reference (grader/reference.py), then compares with the helpers
of ``grader/compare.py``. Every comparison is counted (``compared``): a check that passes
without having compared anything is a grader error, never a pass (grader/run.py). A failure
of the submission's code becomes a ``CheckFailure`` whose kind and fields say what happened.
"""
import math
import zlib

import pytest
import torch

from kit.outcome import CheckFailure, Kind, T, Where
from kit.text import one_line

from .compare import assert_close, fmt_shape, is_close, keys_message, require
from .protocol import FROZEN, Request, call  # noqa: F401  (re-exported for the checks)
from .sandbox import WorkerFailure


def check(points):
    """Mark a function as a graded check worth ``points`` (its folder says whether it needs the reference)."""
    return pytest.mark.check(points=points)


def seeded(name, seed=""):
    """A generator seeded from the check's name and the grading seed: the same inputs on every run of one seed."""
    return torch.Generator().manual_seed(zlib.crc32((f"{seed}:{name}" if seed else name).encode()))


def randn(g, *shape, scale=1.0, dtype=torch.float32):
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def randomize(template, g):
    """Random weights for ``template`` (``Reference.template``): gains near 1, matrices scaled by 1/sqrt(fan_in).

    Random gains (not the initial ones) make a forgotten ``* weight`` visible; tied names share one tensor.
    """
    shapes, ties = template
    out = {}
    for k, (shape, _) in shapes.items():
        if len(shape) == 1:
            out[k] = 1.0 + 0.3 * torch.randn(shape, generator=g)
        elif "embed" in k:
            out[k] = torch.randn(shape, generator=g)
        else:
            out[k] = torch.randn(shape, generator=g) / math.sqrt(shape[-1])
    for group in ties:
        for k in group[1:]:
            out[k] = out[group[0]]
    return out


def reference_state(ref, module, target, *args, g, **kwargs):
    """Random weights (see ``randomize``) shaped like the reference module's state_dict."""
    return randomize(ref.template(module, target, args, kwargs), g)


STANDIN = "standin:"


def standin_obj(name, *args, load=None):
    """An argument built in the worker from a stand-in: ``standin_obj("sublayers.Shift", 16, load=sd)``."""
    return {"__obj__": STANDIN + name, "args": list(args), "load": load}


# --- student errors ------------------------------------------------------------------------------

class StudentError(CheckFailure):
    """A CheckFailure caused by an exception in the submission's code; ``error`` is the worker's report of it."""

    def __init__(self, failure, error):
        super().__init__(None, failure=failure)
        self.error = error


def _where(err):
    w = err.get("where")
    return Where(w[0], w[1], w[2], w[3]) if w else None


def _at(text, where):
    """``text`` followed by where in the student's code it happened, `` (file line N, in f: `code`)``."""
    if where is None:
        return text
    if where.code:
        return T("{error} ({file} line {line}, in {function_code}: `{code}`)", error=text, file=where.file,
                 line=where.line, function_code=where.function, code=where.code)
    return T("{error} ({file} line {line}, in {function_code})", error=text, file=where.file, line=where.line,
             function_code=where.function)


# What the worker (grader/worker.py) reports as fields, worded here: a fence's refusal (grader/fence.py: its action,
# its subject, and for an event on a file the path), SystemExit's code, why an output could not be backpropagated.
# The worker is the submission's process: every field is checked here, and each subject is the submission's to
# choose (a *_code parameter). A refusal with an action this file does not know is worded as a refusal of its subject.
def _refusal(err):
    """The fence's refusal in ``err`` as a Text, or None where the exception was not the fence's."""
    r = err.get("refusal")
    if not isinstance(r, dict) or not isinstance(r.get("action"), str) or not isinstance(r.get("subject"), str):
        return None
    action, subject = r["action"], one_line(r["subject"], 500)
    path = one_line(r["path"], 500) if isinstance(r.get("path"), str) else None
    if action == "write":
        return T("the grader's sandbox refuses to write {path_code}", path_code=subject)
    if action == "read":
        return T("the grader's sandbox refuses to read {path_code}", path_code=subject)
    if action == "list":
        return T("the grader's sandbox refuses to list {path_code}", path_code=subject)
    if action == "process":
        return T("the grader's sandbox refuses to start or signal processes ({event_code})", event_code=subject)
    if action == "network":
        return T("the grader's sandbox refuses network access ({event_code})", event_code=subject)
    if action == "internals":
        return T("the grader's sandbox refuses {event_code} (reaching into the grader's own functions)",
                 event_code=subject)
    if action == "import":
        return T("the grader's sandbox refuses to import '{module_code}': a submission may only use its own files, "
                 "torch and the standard library", module_code=subject)
    if action == "event" and path is not None:
        return T("the grader's sandbox refuses {event_code} on {path_code}", event_code=subject, path_code=path)
    return T("the grader's sandbox refuses {event_code}", event_code=subject)


def _exit(err):
    """``sys.exit(...) was called`` where the exception was SystemExit (its code's repr, as the worker sent it)."""
    code = err.get("exit_code")
    return T("sys.exit({value_code}) was called", value_code=one_line(code, 200)) if isinstance(code, str) else None


_GRAD_ERRORS = {"shape": T("output is not a tensor of the expected shape"),
                "detached": T("output does not require grad (was the computation detached?)")}


def _grad_error(code):
    """grader/worker.py's reason (a code) why an output could not be backpropagated, as a Text."""
    return _GRAD_ERRORS.get(code) or T("the output could not be backpropagated: {reason_code}",
                                       reason_code=one_line(code, 200))


def student_error(what, err, expected_keys=None, got_keys=None):
    """The CheckFailure describing an exception that the submission's code raised."""
    kind, msg, stage = err["type"], err["message"], err["stage"]
    where = _where(err)
    if err.get("not_implemented"):
        name = msg or (where.function if where else T("this function"))
        got = T("not implemented yet: {name_code} ({file} line {line})", name_code=name, file=where.file,
                line=where.line) if where else T("not implemented yet: {name_code}", name_code=name)
        return StudentError(CheckFailure(what, got=got,
                                         hint=T("replace the `raise NotImplementedError` with your code"),
                                         kind=Kind.NOT_IMPLEMENTED, where=where).failure, err)
    if stage == "load" and expected_keys is not None:
        return StudentError(CheckFailure(
            T("{what} (loading the reference's weights with load_state_dict(strict=True))", what=what),
            T("parameters named {names}",
              names=", ".join(list(expected_keys)[:6]) + (" ..." if len(expected_keys) > 6 else "")),
            keys_message(got_keys or {}, expected_keys) or T("{kind_code}: {error}", kind_code=kind, error=msg),
            T("the checks load weights by name: use the attribute names of the API (q_proj, input_layernorm, "
              "blocks, ...) and bias=False everywhere"), kind=Kind.WRONG_STRUCTURE).failure, err)
    exited, refusal = _exit(err), _refusal(err)
    said = exited or refusal or msg
    if stage == "import":
        f = CheckFailure(what, got=_at(T("importing your module failed: {kind_code}: {error}", kind_code=kind,
                                         error=said), where),
                         hint=T("the file must import cleanly: fix the error above (run `python -c \"import ...\"` "
                                "to see it)"), kind=Kind.CRASHED, where=where)
    elif exited is not None:
        f = CheckFailure(what, got=_at(exited, where), hint=T("never exit the interpreter from a module"),
                         kind=Kind.CRASHED, where=where)
    elif stage == "init" and isinstance(err.get("not_module"), str):
        f = CheckFailure(what, T("an nn.Module"),
                         T("building it gave a {type_code}, not an nn.Module", type_code=one_line(err["not_module"], 200)),
                         T("the class must subclass torch.nn.Module (`class Name(nn.Module):`, with "
                           "`super().__init__()` first in `__init__`), and the file must not rebind its name"),
                         kind=Kind.WRONG_STRUCTURE)
    elif refusal is not None and err["refusal"]["action"] != "import":  # a blocked import is an ImportError to them
        f = CheckFailure(what, got=_at(refusal, where),
                         hint=T("a submission may compute only: no files, processes or network"), kind=Kind.REFUSED,
                         where=where)
    else:
        doing = {"init": T("building the module"), "load": T("loading weights")}.get(stage, T("running it"))
        if stage.startswith("backward"):
            doing = T("backpropagating through it")
        got = _at(T("your code raised {kind_code} while {doing}: {error}", kind_code=kind, doing=doing, error=said),
                  where)
        if err.get("inside"):
            got = T("{error}, inside the grader's stand-in {standin} that your code called there", error=got,
                    standin=str(err["inside"]))
        f = CheckFailure(what, got=got, hint=T("read the error and the line it points to"), kind=Kind.CRASHED,
                         where=where)
    return StudentError(f.failure, err)


def worker_failure(what, e):
    return CheckFailure(None, failure=e.failure(what))


# --- running requests ---------------------------------------------------------------------------

def request(module, target, init=None, load=None, calls=(), standins=(), patch=(), dtype=None, want=(), attrs=(),
            train=False, threads=1):
    return Request(module, target, init=init, load=load, calls=list(calls), standins=tuple(standins),
                   patch=tuple(patch), dtype=dtype, want=tuple(want), attrs=tuple(attrs), train=train, threads=threads)


def run_sub(sub, req, what, expected_keys=None, timeout=None):
    """The submission's answer to ``req``; a crash, time-out or exception becomes a CheckFailure."""
    return answer_of(sub.submit(req, timeout=timeout, doing=what), what, expected_keys)


def answer_of(wait, what, expected_keys=None):
    """The answer a submitted request (``Sandbox.submit``) gets, as ``run_sub`` gives it."""
    try:
        reply = wait()
    except WorkerFailure as e:
        raise worker_failure(what, e) from None
    if "error" in reply:
        raise student_error(what, reply["error"], expected_keys, reply.get("keys")) from None
    for r in reply["results"]:
        if "error" in r:
            raise student_error(what, r["error"]) from None
    return reply


def both(sub, ref, module, target, what, **kwargs):
    """Run the same request on the reference and on the submission; return ``(got, expected)`` answers."""
    req = request(module, target, **kwargs)
    wait = sub.submit(req, doing=what)  # the worker computes its side while this process computes the reference's
    try:
        exp = ref.run(req, what)
    except BaseException:
        try:  # collect the worker's answer: the next request must not read it
            wait()
        except Exception:  # noqa: BLE001 - the reference's failure is the one to report
            pass
        raise
    got = answer_of(wait, what, expected_keys=exp.get("keys"))
    return got, exp


def only(sub, module, target, what, expected_keys=None, timeout=None, **kwargs):
    """Run a request on the submission alone."""
    return run_sub(sub, request(module, target, **kwargs), what, expected_keys=expected_keys, timeout=timeout)


def grad_check(got, exp, what, tol, hint=None, variants=None):
    """Compare input gradients and every parameter's gradient of one call's results."""
    for i, (g, e) in enumerate(zip(got.get("input_grads") or [], exp.get("input_grads") or [])):
        if e is None:
            continue
        require(g is not None, T("{what}: gradient of input {i}", what=what, i=i), T("a gradient"),
                T("None (no gradient reached the input)"),
                T("keep the input in the graph: no .detach(), .data or torch.no_grad() on the way"))
        assert_close(g, e, T("{what}: gradient of the input", what=what), tol, hint)
    grad_error = got.get("grad_error")
    require(not grad_error, what, T("an output that backpropagates"),
            _grad_error(grad_error) if grad_error else None, hint)
    gp, ep = got.get("param_grads") or {}, exp.get("param_grads") or {}
    require(sorted(gp) == sorted(ep), T("{what}: parameters", what=what), ", ".join(sorted(ep)), ", ".join(sorted(gp)),
            T("the module must own exactly the reference's parameters (tied weights count once)"), Kind.WRONG_STRUCTURE)
    for name in sorted(ep):
        if ep[name] is None:
            continue
        require(gp[name] != FROZEN, T("{what}: gradient of {name}", what=what, name=name), T("a gradient"),
                T("none: the parameter does not require one (requires_grad=False), so it never trains"),
                T("leave requires_grad alone: nn.Parameter(...) requires a gradient by default"), Kind.WRONG_STRUCTURE)
        if gp[name] is None:  # unused, or used on a path cut from the graph: the output tells which
            out, out_ref = got.get("output"), exp.get("output")
            right = isinstance(out, torch.Tensor) and isinstance(out_ref, torch.Tensor) and is_close(out, out_ref, tol)
            require(False, T("{what}: gradient of {name}", what=what, name=name), T("a gradient"),
                    T("None, though the output is right: {name} is used on a path cut from the graph", name=name)
                    if right else T("None (the parameter was not used)"),
                    T("keep the computation in the graph: no .detach(), .data or torch.no_grad() on the way") if right
                    else hint or T("{name} must take part in the forward pass", name=name))
        assert_close(gp[name], ep[name], T("{what}: gradient of {name}", what=what, name=name), tol, hint,
                     variants=(variants or {}).get(name))


def compare_outputs(sub, ref, module, target, label, xs, tol, hint=None, variants=None, **kwargs):
    """Run ``target`` on each input in ``xs`` on both sides and compare outputs one by one.

    ``label`` names the call (``"RMSNorm(16)"``); ``variants(x)`` gives the known wrong
    variants for input x (``ref.variants(...)``).
    """
    got, exp = both(sub, ref, module, target, f"{label}(x)", calls=[call(x) for x in xs], **kwargs)
    for x, gr, er in zip(xs, got["results"], exp["results"]):
        what = T("{label}(x) for x of shape {shape}", label=label, shape=fmt_shape(x)) if x.is_contiguous() else \
            T("{label}(x) for x of shape {shape}, non-contiguous", label=label, shape=fmt_shape(x))
        assert_close(gr["output"], er["output"], what, tol, hint, variants(x) if variants else None)
    return got, exp


# --- the stand-in components, loaded in the grader's own process (for expected values) -----------

def standin_module(name):
    from kit import loader

    from .sandbox import STANDINS
    return loader.import_module(STANDINS, name)


def _sub_state(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def standin_block_parts(sd, C, H, Hkv=None, T=16, eps=1e-6, theta=10000.0):
    """The stand-in components of a block (``n1``, ``attn``, ``n2``, ``mlp``), loaded with the block's weights."""
    blk = standin_module("block")
    parts = {"n1": blk.RMSNorm(C, eps), "attn": blk.CausalSelfAttention(C, H, Hkv, T, theta),
             "n2": blk.RMSNorm(C, eps), "mlp": blk.FeedForward(C, _width(sd, "mlp."))}
    prefixes = {"n1": "input_layernorm.", "attn": "self_attn.", "n2": "post_attention_layernorm.", "mlp": "mlp."}
    for k, m in parts.items():
        m.load_state_dict(_sub_state(sd, prefixes[k]))
    return parts


def _width(sd, prefix):
    w = sd.get(prefix + "gate_proj.weight")
    return None if w is None else w.shape[0]


def standin_stack(sd, prefix, num_layers, C, H, T):
    """The stand-in blocks and final norm of a decoder, loaded from ``sd`` under ``prefix``."""
    blk = standin_module("block")
    blocks = []
    for i in range(num_layers):
        b = blk.TransformerBlock(C, H, max_seq_len=T)
        b.load_state_dict(_sub_state(sd, f"{prefix}blocks.{i}."))
        blocks.append(b)
    norm = blk.RMSNorm(C)
    norm.load_state_dict(_sub_state(sd, f"{prefix}norm."))
    return blocks, norm


def unchanged_input(sub, module, target, what, x, hint, **kwargs):
    """The call leaves its input unchanged: the worker's report of the input after the call, and the very
    same tensor, passed again, giving the same output (an INFO check: the gradient checks score in-place
    changes, which autograd refuses on an input that needs a gradient)."""
    from .protocol import changed
    got = only(sub, module, target, what, calls=[call(x), call(same_as=0)], **kwargs)
    first, second = got["results"]
    require(not changed(x, first["inputs_after"][0]), T("x after {what}", what=what), T("x unchanged"),
            T("x was modified in place"), hint)
    a, b = first["output"], second["output"]
    same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    require(same, T("{what} called twice on the same x", what=what), T("the same output twice"),
            T("another output the second time"), hint)
    return got


# The block's checks run it over these stand-ins (the modules it imports and the names it builds with),
# the decoder's over these: see grader/standins/ and docs/architecture.md.
BLOCK_STANDINS, BLOCK_PATCH = ("rmsnorm", "attention"), ("RMSNorm", "CausalSelfAttention", "FeedForward")
DECODER_STANDINS, DECODER_PATCH = ("block", "attention", "rmsnorm"), ("TransformerBlock", "RMSNorm")
