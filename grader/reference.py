"""The reference side of every comparison: what the checks ask of ``solutions/``.

A check asks the reference four things, always through this object:

- ``run(request)``: the reference's answer to the same request the submission gets;
- ``template(module, target, args, kwargs)``: the names, shapes and ties of a module's weights,
  so the check can draw random weights of that shape (``harness.reference_state``);
- ``variants(family, **inputs)``: what each known mistake of a family would output on these
  inputs (``grader/diagnose/variants.py``), to name the one a wrong output matches;
- ``model(...)``: the curriculum's model, for the final check's perplexity.

``Live`` computes them in the grader's own process from the reference folder. ``Snapshot``
(grader/snapshot.py) answers the same questions from data recorded from the reference on the
published seed, for the student release, which ships no reference code.
"""
import os

from kit.outcome import GRADER_ERROR_HINT, CheckFailure, Kind, T

from . import worker
from .sandbox import STANDINS


class ReferenceUnavailable(Exception):
    """The reference cannot answer this question here (a snapshot that did not record it)."""


class Live:
    """The reference implementation, run in the grader's own process through the worker's ``execute``."""

    live = True

    def __init__(self, folder):
        from kit import loader
        self.folder = os.path.realpath(folder)
        self.ctx = worker.Context(self.folder, os.path.realpath(STANDINS), loader, [self.folder])

    def run(self, req, what=None):
        out = worker.execute(req.wire(), self.ctx)
        errors = [out["error"]] if "error" in out else [r["error"] for r in out.get("results", []) if "error" in r]
        if errors:
            e = errors[0]
            raise CheckFailure(T("{what} (the reference's side)", what=what or T("the reference")),
                               got=T("the reference implementation failed on this check's inputs ({kind})",
                                     kind=e["type"]), hint=GRADER_ERROR_HINT, kind=Kind.GRADER_ERROR)
        return out

    def module(self, name, standins=()):
        return self.ctx.module(name, standins)

    def template(self, module, target, args=(), kwargs=None):
        """``(shapes, ties)``: ``{name: (shape, dtype)}`` of the module's state_dict, and groups of tied names."""
        m = getattr(self.module(module), target)(*args, **(kwargs or {}))
        sd = m.state_dict()
        groups = {}
        for k, v in sd.items():
            groups.setdefault(v.data_ptr(), []).append(k)
        return ({k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()},
                [g for g in groups.values() if len(g) > 1])

    def variants(self, family, **inputs):
        """``{mistake: (make, hint)}``: ``make()`` gives what that mistake outputs on ``inputs``."""
        from .diagnose import variants
        return getattr(variants, family)(**inputs)

    def model(self, vocab_size, config):
        return getattr(self.module("decoder"), "TransformerLM")(vocab_size, **config)
