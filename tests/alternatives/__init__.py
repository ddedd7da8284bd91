"""Correct implementations written differently from the solutions: the grader must give each full marks.

Each file here is a complete module of the student API. ``sets()`` packs them
into as few folders as possible (one alternative per module and folder, the
other modules from solutions/), so each folder is graded once on the modules
it replaces.
"""
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOLUTIONS = HERE.parents[1] / "solutions"
FILES = ("residual.py", "rmsnorm.py", "attention.py", "block.py", "decoder.py")


@dataclass(frozen=True)
class Alternative:
    name: str   # how it differs from the solutions
    file: str   # the API file it replaces, e.g. "attention.py"
    source: str  # its file in tests/alternatives/


ALTERNATIVES = [
    Alternative("F.scaled_dot_product_attention with is_causal and enable_gqa", "attention.py", "attention_sdpa.py"),
    Alternative("einsum, a precomputed mask buffer, a hand-written softmax, repeat_kv by expand",
                "attention.py", "attention_einsum.py"),
    Alternative("a loop over heads, complex-number RoPE, a tril mask built on the fly with a finite fill, "
                "kv heads indexed",
                "attention.py", "attention_loop.py"),
    Alternative("attention computed in float64 inside", "attention.py", "attention_float64.py"),
    Alternative("complex-number RoPE in the rotate-half layout (torch.polar, view_as_complex), kv heads by expand, "
                "an additive mask buffer", "attention.py", "attention_complex.py"),
    Alternative("F.scaled_dot_product_attention with kv heads repeated by expand (no enable_gqa), a boolean mask and "
                "an explicit scale", "attention.py", "attention_sdpa_mask.py"),
    Alternative("precompute_rope in float64 (the docstring leaves the dtype open), float64 buffers, apply_rope cast "
                "back to x's dtype", "attention.py", "attention_rope64.py"),
    Alternative("torch.nn.functional.rms_norm", "rmsnorm.py", "rmsnorm_functional.py"),
    Alternative("RMS from torch.linalg.vector_norm", "rmsnorm.py", "rmsnorm_vector_norm.py"),
    Alternative("torch.add(sublayer(x), x), registered with add_module", "residual.py", "residual_add.py"),
    Alternative("SiLU written out, the stream rebound, keyword arguments", "block.py", "block_rebind.py"),
    Alternative("the block built on the student's own Residual, one around each pre-norm branch", "block.py",
                "block_residual.py"),
    Alternative("one file, as MiniMind: block.py defines its own RMSNorm, CausalSelfAttention and FeedForward under "
                "the API's names", "block.py", "block_single_file.py"),
    Alternative("functools.reduce over the blocks, the tie made the other way", "decoder.py", "decoder_reverse_tie.py"),
    Alternative("the blocks in an nn.Sequential, every argument by keyword", "decoder.py", "decoder_sequential.py"),
]


def sets():
    """Lists of alternatives with at most one per API file, first come first served."""
    out = []
    for alt in ALTERNATIVES:
        for group in out:
            if all(a.file != alt.file for a in group):
                group.append(alt)
                break
        else:
            out.append([alt])
    return out


def build(group, dest):
    """A folder holding the solutions with the group's alternatives in place."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copy(SOLUTIONS / f, dest / f)
    for alt in group:
        shutil.copy(HERE / alt.source, dest / alt.file)
    return dest


def modules(group):
    return [f[:-3] for f in FILES if any(a.file == f for a in group)]
