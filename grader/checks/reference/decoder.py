"""TransformerDecoder and TransformerLM against the reference, over stand-in blocks.

Scored checks run your decoder.py over the grader's stand-in blocks and norm and compare with the
reference decoder.py over the same stand-ins. The INFO check (0 points) runs your whole model with
your own components.
"""
import torch

from grader.compare import FP32, FP32_DEEP, GRAD, assert_close
from grader.diagnose.crashes import embedding_rows, explaining, forward_variant, lm_crash, untied_head
from grader.harness import (
    DECODER_PATCH,
    DECODER_STANDINS,
    both,
    call,
    check,
    compare_outputs,
    grad_check,
    randn,
    reference_state,
)
from kit.outcome import T

from ..properties.decoder import DEC_HINT as HINT
from ..properties.decoder import HYBRID, LM_HINT, stacked
from .block import max_seq_len_reaches


def dec_state(ref, g, L=3, **kwargs):
    return reference_state(ref, "decoder", "TransformerDecoder", L, 32, 4, max_seq_len=16, g=g, **kwargs)


@check(5)
def check_decoder_values(sub, ref, g):
    """TransformerDecoder stacks its blocks in order and ends with the norm (over stand-in blocks)"""
    for L, xs in ((3, [randn(g, 2, 7, 32), randn(g, 1, 1, 32)]), (1, [randn(g, 2, 4, 32)])):
        sd = dec_state(ref, g, L)
        init = ([L, 32, 4], {"max_seq_len": 16})
        with stacked(sub, "TransformerDecoder", init, xs[0], load=sd):
            compare_outputs(sub, ref, "decoder", "TransformerDecoder",
                            T("{call} over stand-ins", call=f"TransformerDecoder({L}, 32, 4)"), xs, FP32, HINT,
                            lambda x: ref.variants("decoder_variants", x=x, sd=sd, num_layers=L, C=32, H=4),
                            init=init, load=sd, **HYBRID)


@check(2)
def check_decoder_arguments(sub, ref, g):
    """TransformerDecoder passes every argument on to its blocks (all of them) and its final norm (rms_norm_eps)"""
    for kwargs in ({"rms_norm_eps": 0.1, "rope_theta": 50.0}, {"num_kv_heads": 2, "intermediate_size": 48}):
        sd = dec_state(ref, g, **{k: v for k, v in kwargs.items() if k in ("num_kv_heads", "intermediate_size")})
        init = ([3, 32, 4], {"max_seq_len": 16, **kwargs})
        x = randn(g, 2, 5, 32)
        args = ", ".join(f"{k}={v:g}" for k, v in kwargs.items())
        with stacked(sub, "TransformerDecoder", init, x, load=sd):
            compare_outputs(sub, ref, "decoder", "TransformerDecoder",
                            T("{call} over stand-ins", call=f"TransformerDecoder(3, 32, 4, {args})"), [x], FP32,
                            T("pass every argument on: TransformerBlock(hidden_size, num_heads, num_kv_heads, "
                              "intermediate_size, max_seq_len, rms_norm_eps, rope_theta) for each block, "
                              "RMSNorm(hidden_size, eps=rms_norm_eps) for the final norm"),
                            lambda x: ref.variants("decoder_arguments", x=x, sd=sd, num_layers=3, C=32, H=4, **kwargs),
                            init=init, load=sd, **HYBRID)
    init = ([3, 32, 4], {"max_seq_len": 8})
    with stacked(sub, "TransformerDecoder", init):
        max_seq_len_reaches(sub, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4, max_seq_len=8)",
                            randn(g, 1, 9, 32), "TransformerDecoder -> TransformerBlock -> CausalSelfAttention",
                            init=init, **HYBRID)


@check(2)
def check_decoder_gradients(sub, ref, g):
    """TransformerDecoder: gradients of the input and of every block's parameters match"""
    sd = dec_state(ref, g)
    x, up = randn(g, 2, 6, 32), randn(g, 2, 6, 32)
    label = T("{call} over stand-ins", call="TransformerDecoder(3, 32, 4)(x).backward(dy)")
    init = ([3, 32, 4], {"max_seq_len": 16})
    variants = ref.variants("decoder_variants", x=x, sd=sd, num_layers=3, C=32, H=4)  # to name a wrong forward pass
    with stacked(sub, "TransformerDecoder", init, x, load=sd):
        got, exp = both(sub, ref, "decoder", "TransformerDecoder", label, init=init, load=sd,
                        calls=[call(x, grad=up)], **HYBRID)
        with explaining(forward_variant(sub, "decoder", "TransformerDecoder", x, variants, FP32, init=init, load=sd,
                                        **HYBRID)):
            grad_check(got["results"][0], exp["results"][0], label, GRAD, HINT)


def lm(ref, g, V=11, L=2, **kwargs):
    init = ([V], {"num_layers": L, "hidden_size": 32, "num_heads": 4, "max_seq_len": 16, **kwargs})
    sd = reference_state(ref, "decoder", "TransformerLM", *init[0], **init[1], g=g)
    return init, sd


@check(2)
def check_lm_values(sub, ref, g):
    """TransformerLM logits match the reference (over stand-in blocks), and every argument reaches the blocks"""
    init, sd = lm(ref, g)
    idx = [torch.randint(0, 11, (2, 9), generator=g), torch.randint(0, 11, (1, 1), generator=g)]
    with explaining(lm_crash(11, 32)), stacked(sub, "TransformerLM", init, idx[0], load=sd):
        compare_outputs(sub, ref, "decoder", "TransformerLM", "TransformerLM(11, num_layers=2, hidden_size=32)", idx,
                        FP32, LM_HINT, lambda i: ref.variants("lm_variants", idx=i, sd=sd, num_layers=2, C=32, H=4),
                        init=init, load=sd, **HYBRID)
    # every argument reaches the blocks and the final norm (the stand-ins build their weights from what they get,
    # and eps and theta show in their outputs)
    kwargs = {"num_kv_heads": 2, "intermediate_size": 48, "rms_norm_eps": 0.1, "rope_theta": 50.0}
    init, sd = lm(ref, g, **kwargs)
    idx = torch.randint(0, 11, (2, 6), generator=g)
    label = "TransformerLM(11, num_layers=2, hidden_size=32, num_kv_heads=2, intermediate_size=48, rms_norm_eps=0.1, " \
        "rope_theta=50)"
    with explaining(lm_crash(11, 32)), stacked(sub, "TransformerLM", init, idx, load=sd):
        compare_outputs(sub, ref, "decoder", "TransformerLM", label, [idx], FP32,
                        T("pass every argument on: TransformerDecoder(num_layers, hidden_size, num_heads, "
                          "num_kv_heads, intermediate_size, max_seq_len, rms_norm_eps, rope_theta)"),
                        lambda i: ref.variants("lm_arguments", idx=i, sd=sd, num_layers=2, C=32, H=4, **kwargs),
                        init=init, load=sd, **HYBRID)
    init = ([11], {"num_layers": 2, "hidden_size": 32, "num_heads": 4, "max_seq_len": 8})
    with stacked(sub, "TransformerLM", init):
        max_seq_len_reaches(sub, "decoder", "TransformerLM", "TransformerLM(11, num_layers=2, hidden_size=32, "
                            "max_seq_len=8)", torch.randint(0, 11, (1, 9), generator=g),
                            "TransformerLM -> TransformerDecoder -> TransformerBlock -> CausalSelfAttention",
                            init=init, **HYBRID)


@check(3)
def check_lm_gradients(sub, ref, g):
    """TransformerLM gradients match, the tied embedding's included (it gets the head's gradient too)"""
    init, sd = lm(ref, g)
    idx, up = torch.randint(0, 11, (2, 8), generator=g), randn(g, 2, 8, 11)
    label = T("{call} over stand-ins", call="TransformerLM(11, ...)(idx).backward(dlogits)")
    variants = ref.variants("lm_variants", idx=idx, sd=sd, num_layers=2, C=32, H=4)  # to name a wrong forward pass
    with explaining(lm_crash(11, 32), untied_head(sub, init, DECODER_STANDINS, DECODER_PATCH)), \
            stacked(sub, "TransformerLM", init, idx, load=sd):
        got, exp = both(sub, ref, "decoder", "TransformerLM", label, init=init, load=sd, calls=[call(idx, grad=up)],
                        **HYBRID)
        with explaining(forward_variant(sub, "decoder", "TransformerLM", idx, variants, FP32, init=init, load=sd,
                                        **HYBRID), embedding_rows(got["results"][0], exp["results"][0])):
            grad_check(got["results"][0], exp["results"][0], label, GRAD, LM_HINT)


@check(0)
def check_lm_own_components(sub, ref, g):
    """Your whole TransformerLM with your own blocks against the reference (logits, gradients)"""
    init, sd = lm(ref, g)
    idx, up = torch.randint(0, 11, (2, 8), generator=g), randn(g, 2, 8, 11)
    hint = T("not scored: when the scored checks pass, a difference here comes from a component; see its checks")
    got, exp = both(sub, ref, "decoder", "TransformerLM", "TransformerLM(11, num_layers=2, hidden_size=32)(idx)",
                    init=init, load=sd, calls=[call(idx, grad=up)])
    assert_close(got["results"][0]["output"], exp["results"][0]["output"], "TransformerLM(11, ...)(idx) logits",
                 FP32_DEEP, hint)
    grad_check(got["results"][0], exp["results"][0], "TransformerLM(11, ...)(idx).backward(dlogits)", GRAD, hint)
