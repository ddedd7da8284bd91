"""Experiment 3, depth: a shallow and a deep pre-norm stack, each with and without residuals.

Left: training curves. Right: the gradient that reaches the first block, relative to the
last block's, at the end of training. With the skip paths every block gets a gradient of
the same order whatever the depth; without them the first block's share falls
geometrically with every layer added (a product of one Jacobian per layer).
"""
from kit.i18n import N_, _

from .common import Result, curve_rows, figure, late_grads, late_steps, plot_curves

NAME = "depth"
TITLE = N_("Depth: shallow vs deep, with and without residuals")
CLAIM = N_("The deeper the stack, the more it needs residual connections: without them the gradient reaching "
           "the first block shrinks with every layer added, a product of one Jacobian per sublayer.")


def run(lab):
    shallow, deep = 2, lab.pick(tiny=8, full=12)
    steps = lab.pick(tiny=60, full=300)  # the residual experiment's settings: its deep runs come from the cache
    runs, ratio = {}, {}
    for layers in (shallow, deep):
        for residual in (True, False):
            label = f"{layers} layers, " + ("residual" if residual else "no residual")
            shown = (_("{layers} layers, residual") if residual else _("{layers} layers, no residual")).format(
                layers=layers)
            r = lab.train(NAME, label, steps, layers, residual=residual, grad_steps={0, *late_steps(steps)},
                          shown=shown)
            runs[layers, residual] = r
            g = late_grads(r, steps)
            ratio[layers, residual] = g[0] / g[-1] if g else float("nan")
    fig, axes = figure(2)
    styles = {r["label"]: dict(ls="-" if res else "--", color="C0" if layers == shallow else "C3")
              for (layers, res), r in runs.items()}
    plot_curves(axes[0], list(runs.values()), f"pre-norm stacks, lr {lab.budget.lr:g}, {steps} steps", styles,
                unigram=lab.entropies()[0])
    ax = axes[1]
    for residual, ls in ((True, "-"), (False, "--")):
        ax.semilogy([shallow, deep], [ratio[l, residual] for l in (shallow, deep)], ls, marker="o", color="k",
                    label="residual" if residual else "no residual")
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_xticks([shallow, deep])
    ax.set_xlabel("layers")
    ax.set_ylabel("|grad| first block / last block")
    ax.set_title(f"gradient reaching the first block (last {len(late_steps(steps))} steps)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    table = [{"layers": l, "residual": _("yes") if res else _("no"), "params": r["params"],
              "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
              "grad first/last block": ratio[l, res], "seconds": r["seconds"]} for (l, res), r in runs.items()]
    v = {k: r["final_val"] for k, r in runs.items()}
    uni = lab.entropies()[0]
    findings = [
        _("val loss with residuals: {shallow} layers {shallow_res:.3f}, {deep} layers {deep_res:.3f}; without: "
          "{shallow_plain:.3f} and {deep_plain:.3f} (unigram entropy {unigram:.3f})").format(
            shallow=shallow, deep=deep, shallow_res=v[shallow, True], deep_res=v[deep, True],
            shallow_plain=v[shallow, False], deep_plain=v[deep, False], unigram=uni),
        _("first block's gradient / last block's: with residuals {shallow_res:.2g} ({shallow} layers) and "
          "{deep_res:.2g} ({deep}); without {shallow_plain:.2g} and {deep_plain:.2g}").format(
            shallow=shallow, deep=deep, shallow_res=ratio[shallow, True], deep_res=ratio[deep, True],
            shallow_plain=ratio[shallow, False], deep_plain=ratio[deep, False]),
    ]
    fell = ratio[shallow, False] / ratio[deep, False]
    verdict = [
        (_("holds: without residuals the first block's share falls {fell:.2g}x from {shallow} to {deep} layers; with "
           "them it stays of order 1") if fell > 10 else
         _("does not hold: without residuals the first block's share falls {fell:.2g}x from {shallow} to {deep} "
           "layers; with them it stays of order 1")).format(fell=fell, shallow=shallow, deep=deep),
        (_("at {shallow} layers a plain stack still learns ({plain:.3f}, below the unigram {unigram:.3f})")
         if v[shallow, False] < uni - 0.1 else
         _("at this budget even the {shallow}-layer plain stack stays on the unigram plateau ({plain:.3f})")).format(
            shallow=shallow, plain=v[shallow, False], unigram=uni)
        + _("; the cost of no residuals is {shallow_cost:.2f} nats at {shallow} layers and {deep_cost:.2f} at "
            "{deep}").format(shallow_cost=v[shallow, False] - v[shallow, True], shallow=shallow,
                             deep_cost=v[deep, False] - v[deep, True], deep=deep),
        _("with residuals depth does not hurt, but it does not help yet either: {deep} layers {diff:+.3f} vs "
          "{shallow} after {steps} steps (experiment layers)").format(
            deep=deep, diff=v[deep, True] - v[shallow, True], shallow=shallow, steps=steps),
    ]
    return Result(NAME, _(TITLE), table, curve_rows(runs.values()), fig, findings, claim=_(CLAIM), verdict=verdict,
                  data={"val": {f"{l},{int(res)}": x for (l, res), x in v.items()},
                        "ratio": {f"{l},{int(res)}": x for (l, res), x in ratio.items()},
                        "shallow": shallow, "deep": deep, "unigram_entropy": uni})
