"""Experiment 6, layers: your own TransformerLM with 2 and with 8 layers, the same steps.

Per step the deeper model learns more; per second it costs about four times as much.
Both curves are drawn against steps and against wall-clock seconds.
"""
from .common import Result, curve_rows, ema, figure, plot_curves

NAME = "layers"
TITLE = "Layers: 2 vs 8 layers of your TransformerLM"


def run(lab):
    steps = lab.pick(tiny=80, full=600)
    runs = [lab.train(NAME, f"{n} layers", steps, n, model="kit") for n in (2, 8)]
    fig, axes = figure(2)
    plot_curves(axes[0], runs, f"TransformerLM, lr {lab.budget.lr:g}, {steps} steps")
    ax = axes[1]
    for r in runs:
        per_step = r["seconds"] / max(1, len(r["train"]))
        ax.plot([s * per_step for s, _ in r["train"]], ema([v for _, v in r["train"]]), label=r["label"])
    ax.set_xlabel("seconds of training (this machine)")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title("the same curves against time", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    table = [{"model": r["label"], "params": r["params"], "train loss (last 20%)": r["final_train"],
              "val loss": r["final_val"], "ms/step": 1000 * r["seconds"] / max(1, len(r["train"]))} for r in runs]
    two, eight = runs
    findings = [f"after {steps} steps: 2 layers val {two['final_val']:.3f}, 8 layers val {eight['final_val']:.3f} "
                f"({eight['params'] / two['params']:.1f}x the parameters, "
                f"{eight['seconds'] / max(two['seconds'], 1e-9):.1f}x the time)"]
    return Result(NAME, TITLE, table, curve_rows(runs), fig, findings,
                  data={"two": two, "eight": eight, "steps": steps})
