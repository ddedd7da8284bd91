"""The syllabus: what a student builds, in order, and what each part is worth.

This is the one list of the exercises. The grader (which checks belong to which unit and
their points), the lab (which files make an implementation), the classroom builders (stubs,
the student release, Gradescope, nbgrader, the GitHub Classroom workflow) and the generated
parts of the README read it from here. A new unit goes here first (docs/architecture.md).

The points of a unit must equal the sum of its checks' ``@check`` points; ``tests/test_layout.py``
holds the two to each other.
"""
from dataclasses import dataclass

from kit.outcome import T

COURSE = "Tier 2: Architecture"  # the part of the curriculum this kit teaches (shared/curriculum)
ASSIGNMENT = "tier2"  # nbgrader's assignment name and the prefix of the kit's temporary workspaces


@dataclass(frozen=True)
class Unit:
    name: str  # the module name: exercises/<name>.py, the check files, ``--only <name>``
    points: int
    notebook: str  # the nbgrader notebook, without .ipynb
    builds: str  # what the student writes (Markdown, one line)
    teaches: str  # why it is in the syllabus (one line)
    code: bool = True  # False for the final project: a trained checkpoint, not a file
    # The course's policy (grader/policy.py): what this exercise asks the student to write themselves (its
    # messages' words: a ``T()``, or a name as it is), and the library shortcuts its file may not use, by dotted
    # name (a trailing ``*``: every name that begins so). Found in the submitted source by a parse, aliases
    # followed; ``POLICY`` turns it on.
    own: str = ""
    forbids: tuple = ()

    @property
    def file(self):
        """``rmsnorm.py``; None for the final project."""
        return f"{self.name}.py" if self.code else None


# The library shortcuts each exercise may not use (the course's policy, grader/policy.py).
_ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
              "torch.nn.functional.multi_head_attention_forward", "torch.nn.attention.flex_attention.flex_attention",
              "torch.nn.attention.varlen.*", "torch.ops.aten.scaled_dot_product_attention",
              "torch.ops.aten._scaled_dot_product_*", "torch.ops.aten._native_multi_head_attention",
              "torch.ops.aten._flash_attention_forward", "torch.ops.aten._efficient_attention_forward",
              "flash_attn.*", "xformers.ops.*")
_LAYERS = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer", "torch.nn.TransformerEncoder",
           "torch.nn.TransformerDecoder", "torch.nn.Transformer", "torch.nn.MultiheadAttention",
           "torch.ops.aten._transformer_encoder_layer_fwd", "transformers.*")

UNITS = (
    Unit("residual", 10, "01_residual", "`Residual`: `y = x + F(x)`",
         "the skip path that lets a gradient reach early layers through the identity",
         own=T("the residual connection"), forbids=_LAYERS),
    Unit("rmsnorm", 15, "02_rmsnorm", "`RMSNorm`: `x / sqrt(mean(x²) + eps) * weight`, statistics in float32",
         "rescaling each vector to unit root-mean-square keeps a deep stack's activations in range",
         own="RMSNorm", forbids=("torch.nn.functional.rms_norm", "torch.nn.RMSNorm", "torch.rms_norm",
                                 "torch.ops.aten.rms_norm", "torch.ops.aten._fused_rms_norm*")),
    Unit("attention", 25, "03_attention",
         "RoPE tables and rotation, causal multi-head / grouped-query self-attention",
         "attention gathers information from earlier positions; RoPE tells it how far back they are",
         own=T("attention"), forbids=_ATTENTION),
    Unit("block", 20, "04_block", "SwiGLU `FeedForward` and the pre-norm `TransformerBlock`",
         "norm, attention, add; norm, feed-forward, add: the unit a transformer stacks",
         own=T("the transformer block"), forbids=_LAYERS),
    Unit("decoder", 15, "05_decoder",
         "`TransformerDecoder` (a stack of blocks) and `TransformerLM` (embedding, tied head)",
         "a stack of blocks and a final norm between the embedding and the tied output head",
         own=T("the decoder"), forbids=_LAYERS),
)
FINAL = Unit("final", 15, "06_final_project",
             "train your model on TinyShakespeare to training-split perplexity < 2.5",
             "the parts, put together, learn a language model", code=False)
ALL = (*UNITS, FINAL)

MODULES = tuple(u.name for u in UNITS)  # the five modules of an implementation, in dependency order
FILES = tuple(u.file for u in UNITS)
NAMES = tuple(u.name for u in ALL)  # what ``--only`` accepts
POINTS = {u.name: u.points for u in ALL}
TOTAL = sum(POINTS.values())

# The final project's model (the syllabus's "4 layers, 256 hidden"): 8 heads, 256 characters of context.
CURRICULUM = {"num_layers": 4, "hidden_size": 256, "num_heads": 8, "max_seq_len": 256}
TARGET_PERPLEXITY = 2.5  # training-split perplexity the final check asks for
# The course's policy on library shortcuts (each unit's ``forbids``): "on" at the desk and in every graded flow;
# the instructor turns it off with ``--policy off`` or ``KIT_POLICY=off`` (grader/policy.py).
POLICY = "on"


def unit(name):
    """The Unit called ``name``; ``KeyError`` with the valid names otherwise."""
    for u in ALL:
        if u.name == name:
            return u
    raise KeyError(f"no unit {name!r}: one of {', '.join(NAMES)}")


def in_order(names):
    """``names`` (any iterable of unit names) in syllabus order, each once."""
    wanted = set(names)
    return [n for n in NAMES if n in wanted]


def points_table():
    """The Markdown table of the units and their points, for the READMEs (generated, see classroom.docs)."""
    rows = ["| file | you write | points |", "|---|---|---|"]
    rows += [f"| `{u.file}` | {u.builds} | {u.points} |" for u in UNITS]
    rows.append(f"| (the final project) | {FINAL.builds} | {FINAL.points} |")
    return "\n".join(rows) + "\n"
