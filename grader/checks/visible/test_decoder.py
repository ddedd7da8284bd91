"""TransformerDecoder and TransformerLM: structure, shapes, tying, causality (visible).

These checks run your decoder.py over the grader's stand-in blocks and norm
(see grader/standins), so they judge the stacking alone.
"""
import torch

from grader.compare import CheckFailure, assert_equal, fmt_shape
from grader.diagnose import explaining, lm_crash
from grader.harness import call, check, only, randn

HYBRID = {"block": "block", "attention": "attention", "rmsnorm": "rmsnorm"}


def dec_init(L=3):
    return ([L, 32, 4], {"max_seq_len": 16})


def lm_init(L=2):
    return ([11], {"num_layers": L, "hidden_size": 32, "num_heads": 4, "max_seq_len": 16})


@check(1, visible=True)
def test_decoder_parameters(sub):
    """TransformerDecoder(3, 32, 4) holds blocks.0 to blocks.2 (three distinct blocks) and norm"""
    got = only(sub, "decoder", "TransformerDecoder", "TransformerDecoder(num_layers=3, hidden_size=32, num_heads=4)",
               init=dec_init(), hybrid=HYBRID, want=["structure"])
    prefixes = sorted({k.rsplit(".", 1)[0].split(".input_layernorm")[0].split(".self_attn")[0]
                       .split(".post_attention")[0].split(".mlp")[0] for k in got["keys"]})
    assert_equal(prefixes, ["blocks.0", "blocks.1", "blocks.2", "norm"],
                 "the submodules that hold parameters in TransformerDecoder(3, 32, 4)",
                 "self.blocks = nn.ModuleList([...] for each layer); self.norm = RMSNorm(hidden_size)")
    ids = {name: i for name, _, i in got["structure"]["modules"]}
    blocks = [ids.get(f"blocks.{i}") for i in range(3)]
    if len(set(blocks)) != 3:
        raise CheckFailure("the three entries of self.blocks", "three different TransformerBlock objects",
                           "the same object more than once",
                           "nn.ModuleList([TransformerBlock(...) for _ in range(num_layers)]), "
                           "not [TransformerBlock(...)] * num_layers")


@check(1, visible=True)
def test_decoder_shape(sub, g):
    """TransformerDecoder keeps (B, T, C), T = 1 included"""
    for shape in ((2, 7, 32), (1, 1, 32)):
        x = randn(g, *shape)
        got = only(sub, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4)(x)", init=dec_init(),
                   hybrid=HYBRID, calls=[call(x)])
        y = got["results"][0]["output"]
        assert_equal(fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__, fmt_shape(x),
                     f"TransformerDecoder(3, 32, 4)(x) shape for x of shape {fmt_shape(x)}")


@check(1, visible=True)
def test_distinct_layers(sub, g):
    """Each layer keeps its own weights: loading different weights per block leaves them different"""
    got = only(sub, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4)", init=dec_init(), hybrid=HYBRID)
    sd = {k: torch.randn(v[0], generator=g) for k, v in got["keys"].items()}
    got = only(sub, "decoder", "TransformerDecoder", "TransformerDecoder(3, 32, 4).load_state_dict(...)",
               init=dec_init(), hybrid=HYBRID, load=sd, want=["params"])
    for k, v in sd.items():
        if not torch.equal(got["params"][k], v):
            raise CheckFailure(f"{k} after loading a state_dict with different weights for each block",
                               "the weights loaded for it", "another block's weights (the blocks share parameters)",
                               "build num_layers separate blocks: one TransformerBlock(...) per layer")


@check(1, visible=True)
def test_lm_parameters(sub):
    """TransformerLM has embed_tokens (V, C), decoder, and lm_head whose weight *is* embed_tokens.weight"""
    got = only(sub, "decoder", "TransformerLM", "TransformerLM(11, num_layers=2, hidden_size=32, num_heads=4)",
               init=lm_init(), hybrid=HYBRID, want=["structure"])
    keys = {k: tuple(v[0]) for k, v in got["keys"].items()}
    for k, shape in (("embed_tokens.weight", (11, 32)), ("lm_head.weight", (11, 32)),
                     ("decoder.norm.weight", (32,)), ("decoder.blocks.1.self_attn.q_proj.weight", (32, 32))):
        if keys.get(k) != shape:
            raise CheckFailure(f"TransformerLM(11, ...).state_dict()['{k}']", f"shape {shape}",
                               "missing" if k not in keys else f"shape {keys[k]}",
                               "self.embed_tokens = nn.Embedding(V, C); self.decoder = TransformerDecoder(...); "
                               "self.lm_head = nn.Linear(C, V, bias=False)")
    ptr = {name: p for name, p, _ in got["structure"]["params"]}
    if ptr.get("lm_head.weight") != ptr.get("embed_tokens.weight"):
        raise CheckFailure("lm_head.weight and embed_tokens.weight", "the same Parameter (tied weights)",
                           "two separate tensors", "after building both: self.lm_head.weight = self.embed_tokens.weight")


@check(1, visible=True)
def test_lm_logits(sub, g):
    """TransformerLM maps (B, T) token ids to finite float32 logits (B, T, vocab_size)"""
    for shape in ((2, 7), (1, 1)):
        idx = torch.randint(0, 11, shape, generator=g)
        with explaining(lm_crash(11, 32)):
            got = only(sub, "decoder", "TransformerLM", "TransformerLM(11, ...)(idx)", init=lm_init(), hybrid=HYBRID,
                       calls=[call(idx)])
        y = got["results"][0]["output"]
        assert_equal(fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__, fmt_shape(idx)[:-1] + ", 11)",
                     f"TransformerLM(11, ...)(idx) shape for idx of shape {fmt_shape(idx)}",
                     "embed (B, T) -> (B, T, C), decode, then lm_head to (B, T, vocab_size)")
        if y.dtype != torch.float32 or not bool(torch.isfinite(y).all()):
            raise CheckFailure("TransformerLM logits", "finite float32 values", f"{y.dtype}, finite: "
                               f"{bool(torch.isfinite(y).all())}", "look for a division by zero or a -inf that leaks")


@check(1, visible=True)
def test_lm_causal(sub, g):
    """Changing token t never changes the logits before t"""
    idx = torch.randint(0, 11, (2, 10), generator=g)
    idx2 = idx.clone()
    idx2[:, 6] = (idx2[:, 6] + 1) % 11
    with explaining(lm_crash(11, 32)):
        got = only(sub, "decoder", "TransformerLM", "TransformerLM(11, ...)(idx)", init=lm_init(), hybrid=HYBRID,
                   calls=[call(idx), call(idx2)])
    y, y2 = got["results"][0]["output"], got["results"][1]["output"]
    if not torch.allclose(y[:, :6], y2[:, :6], atol=1e-5):
        raise CheckFailure("logits before position 6 after changing token 6", "unchanged", "changed",
                           "the model must pass information only forward in time")
