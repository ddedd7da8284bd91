"""TransformerDecoder and TransformerLM: structure, shapes, tying, initialisation, causality.

These checks run your decoder.py over the grader's stand-in blocks and norm (grader/standins), so
they judge the stacking alone. The initialisation check scores (where the reference is live, the
weights it reports are confirmed by the logits they give); the others are INFO (0 points): the
reference checks score the stacking and the tied head, these say which part is wrong.
"""
import math

import torch
import torch.nn.functional as F

from grader.compare import FP32, GRAD, assert_close, assert_equal, fmt_shape, keys_message, require, require_tensor
from grader.diagnose.crashes import (
    bypassed,
    explaining,
    lm_crash,
    missing_attribute,
    nondeterministic,
    not_passed_on,
    parameter_set,
    standin_crash,
)
from grader.harness import DECODER_PATCH, DECODER_STANDINS, both, call, check, grad_check, only, randn, reference_state
from grader.reference import ReferenceUnavailable
from kit.outcome import Kind, T

HYBRID = {"standins": DECODER_STANDINS, "patch": DECODER_PATCH}
DEC_HINT = T("for block in self.blocks: x = block(x); then x = self.norm(x)")
LM_HINT = T("logits = lm_head(decoder(embed_tokens(idx))), with lm_head.weight = embed_tokens.weight")


def dec_init(L=3):
    return ([L, 32, 4], {"max_seq_len": 16})


def lm_init(L=2, Hkv=None):
    return ([11], {"num_layers": L, "hidden_size": 32, "num_heads": 4, "num_kv_heads": Hkv, "max_seq_len": 16})


SIGNATURES = T("{first} and {second}",
               first="TransformerDecoder(num_layers, hidden_size, num_heads, num_kv_heads, intermediate_size, "
                     "max_seq_len, rms_norm_eps, rope_theta), TransformerBlock(hidden_size, num_heads, num_kv_heads, "
                     "intermediate_size, max_seq_len, rms_norm_eps, rope_theta)",
               second="RMSNorm(dim, eps)")


def stacked(sub, target, init, x=None, **request):
    """Explain a failure over the stand-in blocks: a crash inside a stand-in, an attribute never set, a component
    of its own where a stand-in belongs, an argument that does not reach the blocks, something random (given x)."""
    random = [nondeterministic(sub, "decoder", target, x, init=init, **HYBRID, **request)] if x is not None else []
    return explaining(standin_crash(SIGNATURES), missing_attribute,
                      bypassed(sub, "decoder", target, init, DECODER_STANDINS, DECODER_PATCH), not_passed_on,
                      parameter_set, *random)


@check(0)
def check_decoder_parameters(sub, ref, g):
    """TransformerDecoder(3, 32, 4) holds blocks.0 to blocks.2 (three distinct blocks) and norm"""
    with stacked(sub, "TransformerDecoder", dec_init()):
        got = only(sub, "decoder", "TransformerDecoder",
                   "TransformerDecoder(num_layers=3, hidden_size=32, num_heads=4)", init=dec_init(), want=["structure"],
                   **HYBRID)
    prefixes = sorted({k.rsplit(".", 1)[0].split(".input_layernorm")[0].split(".self_attn")[0]
                       .split(".post_attention")[0].split(".mlp")[0] for k in got["keys"]})
    assert_equal(prefixes, ["blocks.0", "blocks.1", "blocks.2", "norm"],
                 T("the submodules that hold parameters in {call}", call="TransformerDecoder(3, 32, 4)"),
                 T("self.blocks = nn.ModuleList([...] for each layer); self.norm = RMSNorm(hidden_size)"))
    ids = {name: i for name, _, i, _ in got["structure"]["modules"]}
    require(len({ids.get(f"blocks.{i}") for i in range(3)}) == 3, T("the three entries of self.blocks"),
            T("three different TransformerBlock objects"), T("the same object more than once"),
            T("nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)]), not [TransformerBlock(...)] * "
              "num_layers"),
            "wrong-structure")
    sd = reference_state(ref, "decoder", "TransformerDecoder", 3, 32, 4, max_seq_len=16, g=g)
    x = randn(g, 2, 5, 32)
    with stacked(sub, "TransformerDecoder", dec_init()):
        got, exp = both(sub, ref, "decoder", "TransformerDecoder",
                        T("{call} over stand-ins", call="TransformerDecoder(3, 32, 4)(x)"),
                        init=dec_init(), load=sd, calls=[call(x)], **HYBRID)
    assert_close(got["results"][0]["output"], exp["results"][0]["output"],
                 T("{call} over the grader's stand-in blocks", call="TransformerDecoder(3, 32, 4)(x)"), FP32, DEC_HINT)


@check(0)
def check_decoder_shape(sub, g):
    """TransformerDecoder keeps (B, T, C), T = 1 included"""
    for shape in ((2, 7, 32), (1, 1, 32)):
        x = randn(g, *shape)
        got = only(sub, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4)(x)", init=dec_init(),
                   calls=[call(x)], **HYBRID)
        y = got["results"][0]["output"]
        require_tensor(y, x.shape, T("{call} for x of shape {shape}", call="TransformerDecoder(3, 32, 4)(x)",
                                     shape=fmt_shape(x)),
                       T("each block keeps the shape and the norm does too: (B, T, C) in, (B, T, C) out"))


@check(0)
def check_distinct_layers(sub, ref, g):
    """Each layer keeps its own weights: loading different weights per block gives the reference's output"""
    sd = reference_state(ref, "decoder", "TransformerDecoder", 3, 32, 4, max_seq_len=16, g=g)
    x = randn(g, 2, 4, 32)
    with stacked(sub, "TransformerDecoder", dec_init()):
        got, exp = both(sub, ref, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4).load_state_dict(...)",
                        init=dec_init(), load=sd, want=["params"], calls=[call(x)], **HYBRID)
    for k, v in sd.items():
        p = got["params"].get(k)
        require(isinstance(p, torch.Tensor) and p.shape == v.shape and torch.equal(p, v),
                T("{name} after loading a state_dict with different weights for each block", name=k),
                T("the weights loaded for it"), T("another block's weights (the blocks share parameters)"),
                T("build num_layers separate blocks: one TransformerBlock(...) per layer"), "wrong-structure")
    assert_close(got["results"][0]["output"], exp["results"][0]["output"],
                 T("{call} with different weights in each block, over stand-ins",
                   call="TransformerDecoder(3, 32, 4)(x)"),
                 FP32, T("each block its own: nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)])"))


@check(0)
def check_lm_parameters(sub, ref, g):
    """TransformerLM has embed_tokens (V, C), decoder, and lm_head whose weight *is* embed_tokens.weight"""
    for Hkv, kv_rows in ((None, 32), (2, 16)):
        with stacked(sub, "TransformerLM", lm_init(Hkv=Hkv)):
            got = only(sub, "decoder", "TransformerLM", f"TransformerLM(11, num_layers=2, hidden_size=32, num_heads=4, "
                       f"num_kv_heads={Hkv})", init=lm_init(Hkv=Hkv), want=["structure"], **HYBRID)
        keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
        for k, shape in (("embed_tokens.weight", (11, 32)), ("lm_head.weight", (11, 32)),
                         ("decoder.norm.weight", (32,)), ("decoder.blocks.1.self_attn.q_proj.weight", (32, 32)),
                         ("decoder.blocks.1.self_attn.k_proj.weight", (kv_rows, 32))):
            require(keys.get(k) == shape, f"TransformerLM(11, ..., num_kv_heads={Hkv}).state_dict()['{k}']",
                    T("shape {shape}", shape=str(shape)),
                    T("missing") if k not in keys else T("shape {shape}", shape=str(keys[k])),
                    T("self.embed_tokens = nn.Embedding(V, C); self.decoder = TransformerDecoder(..., num_kv_heads, "
                      "...); self.lm_head = nn.Linear(C, V, bias=False); pass every argument on"), "wrong-structure")
    ptr = {name: p for name, p, _ in got["structure"]["params"]}
    require(ptr.get("lm_head.weight") == ptr.get("embed_tokens.weight"),
            T("lm_head.weight and embed_tokens.weight"),
            T("the same Parameter (tied weights)"), T("two separate tensors"),
            T("after building both: self.lm_head.weight = self.embed_tokens.weight"), "wrong-structure")
    # the tie is confirmed by use: the embedding's gradient includes the head's
    init = lm_init()
    sd = reference_state(ref, "decoder", "TransformerLM", *init[0], **init[1], g=g)
    idx, up = torch.randint(0, 11, (2, 6), generator=g), randn(g, 2, 6, 11)
    with stacked(sub, "TransformerLM", init):
        got, exp = both(sub, ref, "decoder", "TransformerLM", "TransformerLM(11, ...)(idx).backward(dlogits)",
                        init=init, load=sd, calls=[call(idx, grad=up)], **HYBRID)
    grad_check(got["results"][0], exp["results"][0],
               T("{call} over stand-ins", call="TransformerLM(11, ...)(idx).backward(dlogits)"), GRAD, LM_HINT)


@check(0)
def check_lm_logits(sub, g):
    """TransformerLM maps (B, T) token ids to finite float32 logits (B, T, vocab_size)"""
    for shape in ((2, 7), (1, 1)):
        idx = torch.randint(0, 11, shape, generator=g)
        with explaining(lm_crash(11, 32)):
            got = only(sub, "decoder", "TransformerLM", "TransformerLM(11, ...)(idx)", init=lm_init(),
                       calls=[call(idx)], **HYBRID)
        y = require_tensor(got["results"][0]["output"], (*shape, 11),
                           T("{call} for idx of shape {shape}", call="TransformerLM(11, ...)(idx)",
                             shape=fmt_shape(idx)),
                           T("embed (B, T) -> (B, T, C), decode, then lm_head to (B, T, vocab_size)"))
        finite = bool(torch.isfinite(y).all())
        require(y.dtype == torch.float32 and finite, T("TransformerLM logits"),
                T("finite float32 values"), T("{dtype}, finite: {finite}", dtype=str(y.dtype), finite=str(finite)),
                T("look for a division by zero or a -inf that leaks"))


@check(1)
def check_lm_initialisation(sub, ref, g):
    """A fresh TransformerLM starts near uniform: weights ~ N(0, 0.02), first loss near ln(vocab_size)"""
    init = ([65], {"num_layers": 2, "hidden_size": 64, "num_heads": 4, "max_seq_len": 16})
    idx, targets = torch.randint(0, 65, (4, 16), generator=g), torch.randint(0, 65, (4, 16), generator=g)
    with stacked(sub, "TransformerLM", init):
        got = only(sub, "decoder", "TransformerLM",
                   T("a freshly built {call}", call="TransformerLM(65, num_layers=2, hidden_size=64)"),
                   init=init, want=["params"], calls=[call(idx)], **HYBRID)
    logits = require_tensor(got["results"][0]["output"], (4, 16, 65), "TransformerLM(65, ...)(idx)")
    for name in ("embed_tokens.weight", "decoder.blocks.0.self_attn.q_proj.weight"):
        w = got["params"].get(name)
        std = float(w.float().std()) if isinstance(w, torch.Tensor) and w.numel() > 1 else float("nan")
        require(0.01 <= std <= 0.04, T("the standard deviation of {name} in a fresh TransformerLM", name=name),
                T("about 0.02 (GPT-2's initialisation)"), f"{std:.3g}",
                T("keep the stub's `self.apply(self._init_weights)` at the end of __init__: without it the tied "
                  "embedding starts at N(0, 1) and the first loss is in the hundreds"))
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).item()
    require(loss <= math.log(65) + 0.5, T("the loss of a fresh TransformerLM(65, ...) on random tokens"),
            T("near ln(65) = {ln:.2f} (logits near zero)", ln=math.log(65)), f"{loss:.3g}",
            T("apply the GPT-2 initialisation after building every part: self.apply(self._init_weights)"))
    # the reference can run these weights only if they are the API's: extra or misshaped parameters are the
    # model's structure, not a fault of the reference that loads them (strictly)
    shapes, _ = ref.template("decoder", "TransformerLM", init[0], init[1])
    expected = {k: [list(shape), dtype] for k, (shape, dtype) in shapes.items()}
    differs = keys_message(got["keys"], expected)
    require(not differs, T("the parameters of a fresh {call} (its state_dict's names and shapes)",
                           call="TransformerLM(65, num_layers=2, hidden_size=64, num_heads=4)"),
            T("the API's {n} parameters (embed_tokens, decoder.blocks.0 and 1, decoder.norm, lm_head)",
              n=len(expected)),
            differs,
            T("build exactly the API's parts, named as it names them: embed_tokens, decoder (num_layers blocks and a "
              "norm), lm_head tied to embed_tokens; nothing more (RoPE already encodes positions: no positional "
              "embedding)"), Kind.WRONG_STRUCTURE)
    try:  # the reported weights are the model's: the reference stack with them gives the same logits
        exp = ref.run(both_request(init, got["params"], idx), T("the reference with your model's initial weights"))
    except ReferenceUnavailable:  # at the desk, no reference can run your weights: the property above decides
        return
    assert_close(logits, exp["results"][0]["output"],
                 T("{call} with its initial weights", call="TransformerLM(65, ...)(idx)"), FP32, LM_HINT)


def both_request(init, params, idx):
    from grader.harness import request
    return request("decoder", "TransformerLM", init=init, load=params, calls=[call(idx)], **HYBRID)


@check(0)
def check_lm_causal(sub, ref, g):
    """Changing token t never changes the logits before t"""
    init = lm_init()
    sd = reference_state(ref, "decoder", "TransformerLM", *init[0], **init[1], g=g)
    idx = torch.randint(0, 11, (2, 10), generator=g)
    idx2 = idx.clone()
    idx2[:, 6] = (idx2[:, 6] + 1) % 11
    with explaining(lm_crash(11, 32)):
        got, exp = both(sub, ref, "decoder", "TransformerLM", "TransformerLM(11, ...)(idx)", init=init, load=sd,
                        calls=[call(idx), call(idx2)], **HYBRID)
    y, y2 = (require_tensor(r["output"], (2, 10, 11), "TransformerLM(11, ...)(idx)") for r in got["results"])
    require(torch.allclose(y[:, :6], y2[:, :6], atol=1e-5), T("logits before position 6 after changing token 6"),
            T("unchanged"), T("changed"), T("the model must pass information only forward in time"))
    for a, e in zip((y, y2), (r["output"] for r in exp["results"])):
        assert_close(a[:, :1], e[:, :1],
                     T("{call} logits at position 0, over stand-ins", call="TransformerLM(11, ...)(idx)"), FP32,
                     LM_HINT)
