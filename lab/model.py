"""The curriculum's model, built from any implementation folder."""
from .loader import load_impl

# The closing project of the syllabus: 4 layers, 256 wide, 8 heads, 256 characters of context.
CURRICULUM = {"num_layers": 4, "hidden_size": 256, "num_heads": 8, "max_seq_len": 256}


def build(impl, vocab_size, config=None):
    """``TransformerLM(vocab_size, **config)`` from ``impl`` (a folder path or a loaded namespace)."""
    if not hasattr(impl, "decoder"):
        impl = load_impl(impl)
    return impl.decoder.TransformerLM(vocab_size, **(config or CURRICULUM))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
