"""What the checks are written with: points, seeded inputs, and running both sides.

A check builds the same request for the submission (answered by the sandboxed
worker) and for the reference (answered in this process), then compares. Any
failure of the submission's code becomes a ``CheckFailure`` that names the
function, the line and what to do.
"""
import math
import zlib

import pytest
import torch

from .compare import CheckFailure, keys_message
from .submission import STANDINS, WorkerFailure


def check(points, visible=False):
    """Mark a test as a graded check worth ``points``; hidden checks compare against the reference."""
    return pytest.mark.check(points=points, visibility="visible" if visible else "hidden")


def seeded(name):
    """A generator seeded from a name: every check sees the same inputs on every run."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def randn(g, *shape, scale=1.0, dtype=torch.float32):
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def randomize(state, g):
    """Random weights with the shapes of ``state``: gains near 1, matrices scaled by 1/sqrt(fan_in).

    Random gains (not the initial ones) make a forgotten ``* weight`` visible.
    """
    out = {}
    for k, v in state.items():
        if v.ndim == 1:
            out[k] = 1.0 + 0.3 * torch.randn(v.shape, generator=g)
        elif "embed" in k:
            out[k] = torch.randn(v.shape, generator=g)
        else:
            out[k] = torch.randn(v.shape, generator=g) / math.sqrt(v.shape[-1])
    # tied parameters share one tensor in the reference: keep them equal here too
    seen = {}
    for k, v in state.items():
        if v.data_ptr() in seen:
            out[k] = out[seen[v.data_ptr()]]
        else:
            seen[v.data_ptr()] = k
    return out


def call(*args, grad=None, method=None, **kwargs):
    return {"args": list(args), "kwargs": kwargs, "grad": grad, "method": method}


STANDIN_PKG = {"folder": str(STANDINS)}


def standin(target, module=None):
    """Patch entry: replace a name in the tested module by the stand-in of that name."""
    return {"pkg": STANDIN_PKG, "module": module, "attr": target}


def _where(err):
    w = err.get("where")
    if not w:
        return ""
    file, line, func, code = w
    return f" ({file} line {line}, in {func}: `{code}`)" if code else f" ({file} line {line}, in {func})"


def student_error(what, err, expected_keys=None, got_keys=None):
    """A CheckFailure describing an exception that the submission's code raised."""
    kind, msg, stage = err["type"], err["message"], err["stage"]
    if kind == "NotImplementedError":
        name = msg or (err["where"][2] if err.get("where") else "this function")
        w = err.get("where")
        at = f" ({w[0]} line {w[1]})" if w else ""
        return CheckFailure(what, None, f"not implemented yet: {name}{at}",
                            "replace the `raise NotImplementedError` with your code")
    if stage == "load" and expected_keys is not None:
        return CheckFailure(what + " (loading the reference's weights with load_state_dict(strict=True))",
                            "parameters named " + ", ".join(list(expected_keys)[:6]) + (" ..." if len(expected_keys) > 6 else ""),
                            keys_message(got_keys or {}, expected_keys),
                            "the checks load weights by name: use the attribute names of the API "
                            "(q_proj, input_layernorm, blocks, ...) and bias=False everywhere")
    if stage == "import":
        return CheckFailure(what, None, f"importing your module failed: {kind}: {msg}{_where(err)}",
                            "the file must import cleanly: fix the error above (run `python -c \"import ...\"` to see it)")
    if kind == "SystemExit":
        return CheckFailure(what, None, f"{msg}{_where(err)}", "never exit the interpreter from a module")
    if kind == "Refused":
        return CheckFailure(what, None, f"{msg}{_where(err)}",
                            "a submission may compute only: no files, processes or network")
    where = {"init": "building the module", "load": "loading weights"}.get(stage, "running it")
    if stage.startswith("backward"):
        where = "backpropagating through it"
    return CheckFailure(what, None, f"your code raised {kind} while {where}: {msg}{_where(err)}",
                        "read the error and the line it points to")


class Side:
    """One implementation (submission or reference) plus how to name its packages."""

    def __init__(self, runner):
        self.runner = runner

    def pkg(self, hybrid=None):
        return self.runner.hybrid(**hybrid) if hybrid else self.runner.pkg

    def run(self, spec, what, expected_keys=None, timeout=None):
        try:
            reply = self.runner.run(spec, timeout=timeout, doing=what)
        except WorkerFailure as e:
            raise CheckFailure(what, None, str(e), "make the code finish quickly without exiting or crashing") from None
        if "error" in reply:
            raise student_error(what, reply["error"], expected_keys, reply.get("keys")) from None
        for r in reply.get("results", []):
            if "error" in r:
                raise student_error(what, r["error"]) from None
        return reply


def both(sub, ref, module, target, what, init=None, load=None, calls=(), hybrid=None, patch=None,
         dtype=None, want=(), attrs=None, train=False):
    """Run the same request on the reference and on the submission; return ``(got, expected)`` replies."""
    def spec(side):
        return {"pkg": side.pkg(hybrid), "module": module, "target": target,
                "init": None if init is None else {"args": list(init[0]), "kwargs": dict(init[1])},
                "load": load, "calls": list(calls), "patch": patch, "dtype": dtype, "want": list(want),
                "attrs": list(attrs or []), "train": train}
    exp = Side(ref).run(spec(Side(ref)), "reference: " + what)
    got = Side(sub).run(spec(Side(sub)), what, expected_keys=exp.get("keys"))
    return got, exp


def only(sub, module, target, what, init=None, load=None, calls=(), hybrid=None, patch=None, dtype=None,
         want=(), attrs=None, expected_keys=None, timeout=None):
    """Run a request on the submission alone (visible checks need no reference)."""
    side = Side(sub)
    spec = {"pkg": side.pkg(hybrid), "module": module, "target": target,
            "init": None if init is None else {"args": list(init[0]), "kwargs": dict(init[1])},
            "load": load, "calls": list(calls), "patch": patch, "dtype": dtype, "want": list(want),
            "attrs": list(attrs or [])}
    return side.run(spec, what, expected_keys=expected_keys, timeout=timeout)


def grad_check(got, exp, what, tol, names=None, hint=None, variants=None):
    """Compare input gradients and every parameter's gradient of one call's results."""
    from .compare import assert_close
    for i, (g, e) in enumerate(zip(got.get("input_grads") or [], exp.get("input_grads") or [])):
        if e is None:
            continue
        if g is None:
            raise CheckFailure(f"{what}: gradient of input {i}", "a gradient", "None (no gradient reached the input)",
                               "keep the input in the graph: no .detach(), .data or torch.no_grad() on the way")
        assert_close(g, e, f"{what}: gradient of the input", tol, hint)
    if got.get("grad_error"):
        raise CheckFailure(what, "an output that backpropagates", got["grad_error"], hint)
    gp, ep = got.get("param_grads") or {}, exp.get("param_grads") or {}
    if sorted(gp) != sorted(ep):
        raise CheckFailure(f"{what}: parameters", ", ".join(sorted(ep)), ", ".join(sorted(gp)),
                           "the module must own exactly the reference's parameters (tied weights count once)")
    for name in sorted(ep):
        if ep[name] is None:
            continue
        if gp[name] is None:
            raise CheckFailure(f"{what}: gradient of {name}", "a gradient", "None (the parameter was not used)",
                               hint or f"{name} must take part in the forward pass")
        assert_close(gp[name], ep[name], f"{what}: gradient of {name}", tol, hint, variants=(variants or {}).get(name))


def compare_outputs(sub, ref, module, target, label, xs, tol, hint=None, variants=None, init=None, load=None,
                    hybrid=None, patch=None, dtype=None):
    """Run ``target`` on each input in ``xs`` on both sides and compare outputs one by one.

    ``label`` names the call (``"RMSNorm(16)"``); ``variants(x)`` gives the known
    wrong variants for input x (see diagnose.py).
    """
    from .compare import assert_close, fmt_shape
    got, exp = both(sub, ref, module, target, f"{label}(x)", init=init, load=load, hybrid=hybrid, patch=patch,
                    dtype=dtype, calls=[call(x) for x in xs])
    for x, gr, er in zip(xs, got["results"], exp["results"]):
        layout = "" if x.is_contiguous() else ", non-contiguous"
        assert_close(gr["output"], er["output"], f"{label}(x) for x of shape {fmt_shape(x)}{layout}", tol, hint,
                     variants(x) if variants else None)
    return got, exp


def reference_state(ref, module, target, *args, g, **kwargs):
    """Random weights (see ``randomize``) shaped like the reference module's state_dict."""
    m = getattr(ref.module(module), target)(*args, **kwargs)
    return randomize(m.state_dict(), g)
