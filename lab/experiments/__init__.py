"""The curriculum's six experiments: run them on your implementation and look at the pictures.

    python -m lab.experiments --impl DIR [--only NAME ...] [--out runs/experiments] [--budget tiny|full]

Each experiment writes ``<out>/<name>.png`` (the plot), ``<name>.csv`` (the data behind it)
and ``<name>.md`` (the summary table and what it shows). docs/experiments.md explains how to
read them.
"""
import importlib

NAMES = ("residual", "gradflow", "depth", "ablation", "order", "layers")


def get(name):
    """The experiment module ``name`` (it has NAME, TITLE and ``run(lab) -> Result``)."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")
