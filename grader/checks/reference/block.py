"""FeedForward against the reference, and the block's wiring over stand-in components.

The scored TransformerBlock checks run your block.py around the grader's stand-in norm, attention
and MLP and compare with the reference block.py around the same stand-ins. The last check (0
points, INFO) runs your block with your own components: it only tells you whether everything
works together.
"""
from dataclasses import replace

import torch

from grader.compare import BF16, FP32, FP32_DEEP, GRAD, compared
from grader.diagnose.crashes import (
    bypassed,
    explaining,
    ffn_crash,
    forward_variant,
    inplace_crash,
    missing_attribute,
    nondeterministic,
    not_passed_on,
    standin_crash,
)
from grader.harness import (
    BLOCK_PATCH,
    BLOCK_STANDINS,
    StudentError,
    both,
    call,
    check,
    compare_outputs,
    grad_check,
    only,
    randn,
    reference_state,
    unchanged_input,
)
from kit.outcome import CheckFailure, T

from ..properties.block import FFN_HINT, WIRING_HINT

HINT = WIRING_HINT
INPLACE_HINT = T("write h = x + ..., not x += ...: the residual stream must not be overwritten")
BLOCK = "TransformerBlock(32, 4, rms_norm_eps=0.1, rope_theta=50)"
LABEL = T("{call} over stand-ins", call=BLOCK)
HYBRID = {"standins": BLOCK_STANDINS, "patch": BLOCK_PATCH}
SIGNATURES = T("{first} and {second}",
               first="RMSNorm(dim, eps), CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, "
                     "rope_theta)",
               second="FeedForward(hidden_size, intermediate_size)")


@check(4)
def check_feedforward_values(sub, ref, g):
    """FeedForward (SwiGLU) matches the reference, its default width at hidden sizes 32 and 48"""
    # 48 as well: a default width that is right at 32 only (4 * hidden_size, say) loads no weights there
    for C, shapes in ((32, [(2, 5, 32), (1, 1, 32), (3, 32)]), (48, [(2, 4, 48)])):
        sd = reference_state(ref, "block", "FeedForward", C, g=g)
        xs = [randn(g, *shape) for shape in shapes]
        with explaining(ffn_crash(C)):
            compare_outputs(sub, ref, "block", "FeedForward", f"FeedForward({C})", xs, FP32, FFN_HINT,
                            lambda x: ref.variants("ffn_variants", x=x, sd=sd), init=([C], {}), load=sd)


@check(2)
def check_feedforward_gradients(sub, ref, g):
    """FeedForward: gradients of the input and of the three projections match (hidden sizes 32 and 100)"""
    for C in (32, 100):
        sd = reference_state(ref, "block", "FeedForward", C, g=g)
        x, up = randn(g, 2, 5, C), randn(g, 2, 5, C)
        with explaining(ffn_crash(C)):
            got, exp = both(sub, ref, "block", "FeedForward", f"FeedForward({C})(x).backward(dy)", init=([C], {}),
                            load=sd, calls=[call(x, grad=up)])
        grad_check(got["results"][0], exp["results"][0], f"FeedForward({C})(x).backward(dy)", GRAD, FFN_HINT)


def init(Hkv=None, eps=0.1, theta=50.0):
    return ([32, 4], {"num_kv_heads": Hkv, "max_seq_len": 16, "rms_norm_eps": eps, "rope_theta": theta})


def state(ref, g, Hkv=None):
    return reference_state(ref, "block", "TransformerBlock", 32, 4, Hkv, max_seq_len=16, g=g)


def over_standins(sub, Hkv=None, x=None, init_args=None, **request):
    """Explain a failure of the block over the stand-ins: a crash inside a stand-in, an attribute never set,
    a component the block built itself (bypassing the stand-in), something random in forward (given ``x``)."""
    init_args = init_args or init(Hkv)
    random = [nondeterministic(sub, "block", "TransformerBlock", x, init=init_args, **HYBRID, **request)] \
        if x is not None else []
    return explaining(standin_crash(SIGNATURES), missing_attribute,
                      bypassed(sub, "block", "TransformerBlock", init_args, BLOCK_STANDINS, BLOCK_PATCH), not_passed_on,
                      *random)


@check(5)
def check_block_assembly(sub, ref, g):
    """The block's wiring matches the reference block around the same stand-in components"""
    sd = state(ref, g)
    xs = [randn(g, 2, 7, 32), randn(g, 3, 16, 32), randn(g, 4, 2, 32).transpose(0, 1)]
    with over_standins(sub, x=xs[0], load=sd):
        compare_outputs(sub, ref, "block", "TransformerBlock", LABEL, xs, FP32, HINT,
                        lambda x: ref.variants("block_variants", x=x, sd=sd, C=32, H=4, eps=0.1, theta=50.0),
                        init=init(), load=sd, **HYBRID)


@check(2)
def check_block_assembly_gqa(sub, ref, g):
    """The wiring also holds with grouped-query attention and T = 1"""
    sd = state(ref, g, 2)
    xs = [randn(g, 2, 5, 32), randn(g, 1, 1, 32)]
    with over_standins(sub, 2, x=xs[0], load=sd):
        compare_outputs(sub, ref, "block", "TransformerBlock",
                        T("{call} over stand-ins", call="TransformerBlock(32, 4, num_kv_heads=2, rms_norm_eps=0.1, "
                                                        "rope_theta=50)"), xs, FP32, HINT,
                        lambda x: ref.variants("block_variants", x=x, sd=sd, C=32, H=4, Hkv=2, eps=0.1, theta=50.0),
                        init=init(2), load=sd, **HYBRID)


@check(1)
def check_block_arguments(sub, ref, g):
    """The block passes intermediate_size, num_kv_heads and max_seq_len on to its MLP and attention (over stand-ins)"""
    kwargs = {"intermediate_size": 48, "num_kv_heads": 2, "max_seq_len": 16}
    sd = reference_state(ref, "block", "TransformerBlock", 32, 4, g=g, **kwargs)
    init_args = ([32, 4], kwargs)
    hint = T("pass every argument on: FeedForward(hidden_size, intermediate_size), CausalSelfAttention(hidden_size, "
             "num_heads, num_kv_heads, max_seq_len, rope_theta)")
    x = randn(g, 2, 5, 32)
    with over_standins(sub, x=x, init_args=init_args, load=sd):
        try:
            compare_outputs(sub, ref, "block", "TransformerBlock",
                            T("{call} over stand-ins", call="TransformerBlock(32, 4, num_kv_heads=2, "
                                                            "intermediate_size=48)"),
                            [x], FP32, hint,
                            lambda x: ref.variants("block_variants", x=x, sd=sd, C=32, H=4, Hkv=2),
                            init=init_args, load=sd, **HYBRID)
        except StudentError as e:
            if e.error["stage"] != "load" or not_passed_on(e):
                raise
            raise CheckFailure.of(replace(e.failure, hint=hint)) from None
    # max_seq_len shapes no weight: the stand-in attention raises ValueError past its own, as the real one does
    with over_standins(sub, init_args=([32, 4], {"max_seq_len": 8})):
        max_seq_len_reaches(sub, "block", "TransformerBlock", "TransformerBlock(32, 4, max_seq_len=8)", randn(g, 1, 9, 32),
                            "TransformerBlock -> CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, "
                            "rope_theta)", init=([32, 4], {"max_seq_len": 8}), **HYBRID)


def max_seq_len_reaches(sub, module, target, label, x, chain, **request):
    """``label`` run on ``x``, one position past its max_seq_len, over stand-ins: the stand-in attention raises
    ValueError past the max_seq_len it was given, so running without one means the argument did not reach it."""
    n = x.shape[1]
    what = T("{call}(x) on T = {n} over the grader's stand-ins", call=label, n=n)
    try:
        only(sub, module, target, what, calls=[call(x)], **request)
    except StudentError as e:
        if e.error["type"] == "ValueError":
            compared()
            return
        raise  # a crash: the caller's explainers name it
    compared()
    # it ran: unless a component of its own stands where the stand-in belongs, the argument did not reach it
    own = bypassed(sub, module, target, request["init"], request["standins"], request["patch"])(None)
    raise CheckFailure(what, T("ValueError (the attention's max_seq_len is exceeded)"), T("no error"),
                       own[1] if own else T("pass max_seq_len on at every level ({chain}): by position in the "
                                            "signature's order, or by keyword", chain=chain),
                       own[0] if own else T("max_seq_len does not reach the CausalSelfAttention: with "
                                            "max_seq_len={limit}, {n} positions ran, so the attention was built with "
                                            "another max_seq_len (its default?)", limit=n - 1, n=n))


@check(3)
def check_block_gradients(sub, ref, g):
    """Gradients of the input and of every parameter match, through both residual paths"""
    sd = state(ref, g)
    x, up = randn(g, 2, 6, 32), randn(g, 2, 6, 32)
    label = T("{call} over stand-ins: backward(dy)", call=BLOCK)
    variants = ref.variants("block_variants", x=x, sd=sd, C=32, H=4, eps=0.1, theta=50.0)  # to name a wrong forward
    with explaining(inplace_crash(INPLACE_HINT)), over_standins(sub, x=x, load=sd):
        got, exp = both(sub, ref, "block", "TransformerBlock", label, init=init(), load=sd, calls=[call(x, grad=up)],
                        **HYBRID)
        with explaining(forward_variant(sub, "block", "TransformerBlock", x, variants, FP32, init=init(), load=sd,
                                        **HYBRID)):
            grad_check(got["results"][0], exp["results"][0], label, GRAD, HINT)


@check(1)
def check_block_bfloat16(sub, ref, g):
    """A bfloat16 block on bfloat16 input matches the reference"""
    sd = state(ref, g)
    x = randn(g, 2, 6, 32, dtype=torch.bfloat16)
    with over_standins(sub, x=x, load=sd, dtype="bfloat16"):
        compare_outputs(sub, ref, "block", "TransformerBlock",
                        T("{call} over stand-ins.to(torch.bfloat16)", call=BLOCK), [x], BF16, HINT,
                        lambda x: ref.variants("block_variants", x=x.float(), sd=sd, C=32, H=4, eps=0.1, theta=50.0),
                        init=init(), load=sd, dtype="bfloat16", **HYBRID)


@check(0)
def check_block_input_not_modified(sub, ref, g):
    """TransformerBlock leaves its input tensor unchanged"""
    unchanged_input(sub, "block", "TransformerBlock", LABEL, randn(g, 2, 5, 32),
                    INPLACE_HINT, init=init(),
                    load=state(ref, g), **HYBRID)


@check(0)
def check_block_own_components(sub, ref, g):
    """Your block with your own RMSNorm, attention and MLP against the reference (outputs, gradients)"""
    sd = reference_state(ref, "block", "TransformerBlock", 32, 4, max_seq_len=16, g=g)
    xs = [randn(g, 2, 7, 32), randn(g, 1, 1, 32)]
    hint = T("not scored: when the scored checks pass, a difference here comes from a component; see its checks")
    compare_outputs(sub, ref, "block", "TransformerBlock", "TransformerBlock(32, 4)", xs, FP32_DEEP, hint,
                    init=([32, 4], {"max_seq_len": 16}), load=sd)
    x, up = randn(g, 2, 6, 32), randn(g, 2, 6, 32)
    got, exp = both(sub, ref, "block", "TransformerBlock", "TransformerBlock(32, 4)(x).backward(dy)",
                    init=([32, 4], {"max_seq_len": 16}), load=sd, calls=[call(x, grad=up)])
    grad_check(got["results"][0], exp["results"][0], "TransformerBlock(32, 4)(x).backward(dy)", GRAD, hint)
