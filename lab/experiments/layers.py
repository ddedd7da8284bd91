"""Experiment 6, layers: your own TransformerLM with 2 and with 8 layers, the same steps.

Per step the deeper model learns more, once it has caught up a slower start; per second it
costs about four times as much. Both curves are drawn against steps and against wall-clock
seconds.
"""
from kit.i18n import N_, _

from .common import Result, curve_rows, ema, figure, plot_curves

NAME = "layers"
TITLE = N_("Layers: 2 vs 8 layers of your TransformerLM")
CLAIM = N_("More layers, more capacity: with residuals and pre-norm, 8 layers train as easily as 2 and end lower "
           "at the same number of steps, for about 4x the compute per step.")


def ahead_from(a, b):
    """First step after which the smoothed curve ``b`` stays below ``a`` (None if it ends above)."""
    sa, sb = ema([v for _, v in a["train"]]), ema([v for _, v in b["train"]])
    steps = [s for s, _ in a["train"]]
    last_behind = max((i for i, (x, y) in enumerate(zip(sa, sb)) if y >= x), default=-1)
    return None if last_behind == len(steps) - 1 else steps[last_behind + 1]


def run(lab):
    steps = lab.pick(tiny=80, full=600)
    runs = [lab.train(NAME, f"{n} layers", steps, n, model="kit", shown=_("{layers} layers").format(layers=n))
            for n in (2, 8)]
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
    table = [{"model": _("{layers} layers").format(layers=n), "params": r["params"],
              "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
              "ms/step": 1000 * r["seconds"] / max(1, len(r["train"]))} for n, r in zip((2, 8), runs)]
    two, eight = runs
    cross = ahead_from(two, eight)
    # Where the 8-layer model is when the 2-layer one has finished: the same compute budget, in seconds.
    at = min(len(eight["train"]) - 1, int(len(eight["train"]) * two["seconds"] / max(eight["seconds"], 1e-9)))
    eight_then = ema([v for _, v in eight["train"]])[at]
    two_end = ema([v for _, v in two["train"]])[-1]
    gain = two["final_val"] - eight["final_val"]
    unigram = lab.entropies()[0]
    findings = [_("after {steps} steps: 2 layers val {two:.3f}, 8 layers val {eight:.3f} ({params:.1f}x the "
                  "parameters, {time:.1f}x the time)").format(
                    steps=steps, two=two["final_val"], eight=eight["final_val"], params=eight["params"] / two["params"],
                    time=eight["seconds"] / max(two["seconds"], 1e-9)),
                (_("the 8-layer model is behind at first and ahead (smoothed training loss) from step {step} on")
                 .format(step=cross) if cross is not None else
                 _("the 8-layer model is still behind at the last step")),
                _("in the 2-layer model's {seconds:.0f} s the 8-layer one gets to step {step}, training loss "
                  "{eight:.3f} (the 2-layer one ends at {two:.3f})").format(
                    seconds=two["seconds"], step=at, eight=eight_then, two=two_end)]
    verdict = [
        _("8 layers train as easily as 2: {verdict}").format(
            verdict=_("holds (both learn, no instability)") if eight["diverged_at"] is None
            and eight["final_val"] < unigram - 0.2 else _("does not hold")),
        (_("8 layers end lower at equal steps: holds, but by only {gain:.3f} nats after {steps} steps").format(
            gain=gain, steps=steps) if gain > 0 else
         _("8 layers end lower at equal steps: not after {steps} steps ({behind:.3f} behind)").format(
            steps=steps, behind=-gain))
        + _("; depth pays once the shallow model runs out of capacity, which takes more training than this"),
        _("at equal compute (seconds) the 2-layer model wins here") if eight_then > two_end else
        _("at equal compute (seconds) the 8-layer model wins here"),
    ]
    return Result(NAME, _(TITLE), table, curve_rows(runs), fig, findings, claim=_(CLAIM), verdict=verdict,
                  data={"two": two, "eight": eight, "steps": steps, "ahead_from": cross})
