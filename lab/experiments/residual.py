"""Experiment 1, residual vs no residual: the same deep stack trained with and without its skip paths.

Both models are the kit's pre-norm block stacked ``num_layers`` deep; the plain one drops
the ``x +`` of both sublayers (``x = f(norm(x))``). Same init, same batches, same steps.
"""
from .common import Result, curve_rows, figure, late_grads, late_steps, plot_curves

NAME = "residual"
TITLE = "Residual vs no residual: a deep stack with and without its skip paths"


def run(lab):
    layers = lab.pick(tiny=8, full=12)
    steps = lab.pick(tiny=60, full=300)
    runs = []
    for label, residual in (("with residual", True), ("no residual", False)):
        runs.append(lab.train(NAME, label, steps, layers, residual=residual, grad_steps={0, *late_steps(steps)}))
    res, plain = runs
    fig, (ax,) = figure()
    unigram = lab.entropies()[0]
    plot_curves(ax, runs, f"{layers}-layer pre-norm stack, lr {lab.budget.lr:g}, {steps} steps", unigram=unigram)
    grads = [late_grads(r, steps) for r in runs]
    table = [{"model": r["label"], "layers": layers, "params": r["params"], "train loss (last 20%)": r["final_train"],
              "val loss": r["final_val"], "grad first/last block": g[0] / g[-1] if g else float("nan"),
              "seconds": r["seconds"]} for r, g in zip(runs, grads)]
    findings = [
        f"after {steps} steps the {layers}-layer stack reaches val loss {res['final_val']:.3f} with its skip paths "
        f"and {plain['final_val']:.3f} without them (a gap of {plain['final_val'] - res['final_val']:.3f} nats/char)",
        f"the unigram entropy of the text is {unigram:.3f}: a model at that loss has learned only how often each "
        "character occurs",
    ]
    return Result(NAME, TITLE, table, curve_rows(runs), fig, findings,
                  data={"with": res, "without": plain, "layers": layers, "steps": steps, "unigram_entropy": unigram,
                        "grad_ratio": [g[0] / g[-1] if g else float("nan") for g in grads]})
