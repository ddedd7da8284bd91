"""What the HTML report draws: attention weights and gradient norms, the submission's beside the reference's.

``collect(grading, sub, ref)`` runs, after the checks, only what a failed check calls for:

- an attention check failed: one ``CausalSelfAttention(32, 4)`` on one input, both sides, with the
  probabilities each softmax (or fused attention) computed captured in the worker (``call(capture=True)``);
  a heatmap per head shows a missing mask, an off-by-one diagonal or a softmax over the wrong axis;
- a gradient check failed: one backward pass through that unit's module on one input, both sides, and
  the norm of every parameter's gradient (for the block, its FeedForward alone when a FeedForward
  gradient check failed: the block's own picture runs over a stand-in FeedForward and would show nothing).

It returns plain values (``Pictures``); ``grader/report.html`` draws them. The requests go through the
same sandbox and are validated as every other answer is; a submission that crashes here simply gets no
picture.
"""
from dataclasses import dataclass, field

import torch

from grader.harness import (
    BLOCK_PATCH,
    BLOCK_STANDINS,
    DECODER_PATCH,
    DECODER_STANDINS,
    call,
    randn,
    reference_state,
    request,
    run_sub,
    seeded,
)
from kit.outcome import CheckFailure, T

C, H, N = 32, 4, 12  # small enough to read every cell of a heatmap (N positions)
THETA = 500.0  # not the default: a rope_theta that is ignored shows in the maps


@dataclass
class Pictures:
    attention: dict = None  # {"student": (H, N, N) or None, "reference": (H, N, N), "note": Text or ""}
    gradients: dict = field(default_factory=dict)  # unit -> {"names": [...], "student": [...], "reference": [...],
    #                                                          "note": Text or "", "module": str}


def _both(sub, ref, req, what):
    exp = ref.run(req, what)
    try:
        got = run_sub(sub, req, what)
    except CheckFailure as e:
        return None, exp, e.failure.got
    return got, exp, None


def attention_maps(sub, ref, seed=""):
    g = seeded("pictures.attention", seed)
    sd = reference_state(ref, "attention", "CausalSelfAttention", C, H, None, 16, THETA, g=g)
    x = randn(g, 1, N, C)
    req = request("attention", "CausalSelfAttention", init=([C, H], {"max_seq_len": 16, "rope_theta": THETA}),
                  load=sd, calls=[call(x, capture=True)])
    got, exp, why = _both(sub, ref, req, T("{call} on one input, for the pictures",
                                           call="CausalSelfAttention(32, 4, rope_theta=500)"))
    theirs = None if got is None else got["results"][0].get("attention")
    # the note is a Text (the report words it; it never crosses JSON: the pictures go straight to report.html)
    note = why or ("" if theirs is not None else T("no softmax or fused attention was seen in your forward pass"))
    if theirs is not None and theirs.shape[0] != H:
        note = T("your attention computed {maps} maps of {rows} x {cols} ({heads} heads expected)",
                 maps=int(theirs.shape[0]), rows=int(theirs.shape[1]), cols=int(theirs.shape[2]), heads=H)
    return {"student": theirs, "reference": exp["results"][0]["attention"], "note": note, "T": N, "heads": H}


def _grad_request(unit, ref, g, module=None):
    """The request of one backward pass through ``unit``'s module (or its ``module``), or None."""
    if unit == "residual":  # around the grader's Shift sublayer: the gradient of its weight, through the branch
        shift = {"__obj__": "standin:sublayers.Shift", "args": [C],
                 "load": {"weight": torch.randn(C, C, generator=g) / C ** 0.5}}
        return request("residual", "Residual", init=([shift], {}),
                       calls=[call(randn(g, 2, N, C), grad=randn(g, 2, N, C))])
    if unit == "rmsnorm":
        return request("rmsnorm", "RMSNorm", init=([C], {}), load={"weight": 1 + 0.3 * torch.randn(C, generator=g)},
                       calls=[call(randn(g, 2, N, C), grad=randn(g, 2, N, C))])
    if unit == "attention":
        sd = reference_state(ref, "attention", "CausalSelfAttention", C, H, None, 16, 10000.0, g=g)
        return request("attention", "CausalSelfAttention", init=([C, H], {"max_seq_len": 16}), load=sd,
                       calls=[call(randn(g, 2, N, C), grad=randn(g, 2, N, C))])
    if unit == "block" and module == "FeedForward":
        sd = reference_state(ref, "block", "FeedForward", C, g=g)
        return request("block", "FeedForward", init=([C], {}), load=sd,
                       calls=[call(randn(g, 2, N, C), grad=randn(g, 2, N, C))])
    if unit == "block":
        sd = reference_state(ref, "block", "TransformerBlock", C, H, max_seq_len=16, g=g)
        return request("block", "TransformerBlock", init=([C, H], {"max_seq_len": 16}), load=sd,
                       standins=BLOCK_STANDINS, patch=BLOCK_PATCH,
                       calls=[call(randn(g, 2, N, C), grad=randn(g, 2, N, C))])
    if unit == "decoder":
        cfg = {"num_layers": 2, "hidden_size": C, "num_heads": H, "max_seq_len": 16}
        sd = reference_state(ref, "decoder", "TransformerLM", 40, g=g, **cfg)
        x = torch.randint(0, 40, (2, N), generator=g)
        return request("decoder", "TransformerLM", init=([40], cfg), load=sd, standins=DECODER_STANDINS,
                       patch=DECODER_PATCH, calls=[call(x, grad=randn(g, 2, N, 40))])
    return None


def gradient_norms(sub, ref, unit, seed="", module=None):
    req = _grad_request(unit, ref, seeded(f"pictures.gradients.{unit}" + (f".{module}" if module else ""), seed),
                        module)
    if req is None:
        return None
    got, exp, why = _both(sub, ref, req, T("{unit}: one backward pass, for the pictures", unit=unit))
    e = exp["results"][0].get("param_grads") or {}
    mine = {} if got is None else (got["results"][0].get("param_grads") or {})
    names = sorted(e)

    def norm(t):
        return None if not isinstance(t, torch.Tensor) else float(t.float().norm())
    return {"names": names, "reference": [norm(e[n]) for n in names], "student": [norm(mine.get(n)) for n in names],
            "note": why or "", "module": req.target}


def collect(grading, sub, ref):
    """The pictures the failed checks of ``grading`` call for (see the module docstring)."""
    failed = [r for r in grading.results if not r.passed and r.failure is not None]
    out = Pictures()
    if any(r.unit == "attention" for r in failed):
        out.attention = attention_maps(sub, ref, grading.seed)
    grads = [r for r in failed if "grad" in r.check.split(".")[1]]
    for unit in sorted({r.unit for r in grads}):
        ffn = unit == "block" and any("feedforward" in r.check.split(".")[1] for r in grads)
        found = gradient_norms(sub, ref, unit, grading.seed, "FeedForward" if ffn else None)
        if found is not None:
            out.gradients[unit] = found
    return out
