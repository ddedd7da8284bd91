"""Experiment 4, component ablation: take one part out of the block and see what it was doing.

Five 4-layer models, identical but for one removed part: the full pre-norm block; no
attention (each position sees only its own character, so no model of this kind can beat
the bigram entropy of the text); no FFN; no norms (``x + f(x)``, a final norm neither);
no residuals (``x = f(norm(x))``).
"""
from .common import Result, curve_rows, figure, plot_curves

NAME = "ablation"
TITLE = "Component ablation: full block, no attention, no FFN, no norms, no residuals"

VARIANTS = {
    "full block": {},
    "no attention": dict(attention=False),
    "no FFN": dict(ffn=False),
    "no norms": dict(norm="none"),
    "no residuals": dict(residual=False),
}


def run(lab):
    layers = 4
    steps = lab.pick(tiny=80, full=400)
    runs = {k: lab.train(NAME, k, steps, layers, **w) for k, w in VARIANTS.items()}
    unigram, floor = lab.entropies()
    fig, axes = figure(2)
    plot_curves(axes[0], list(runs.values()), f"{layers}-layer models, lr {lab.budget.lr:g}, {steps} steps",
                unigram=unigram)
    axes[0].axhline(floor, color="gray", ls=":", lw=1)
    axes[0].text(0, floor, " bigram entropy", color="gray", fontsize=7, va="bottom")
    ax = axes[1]
    names = list(runs)
    vals = [runs[k]["final_val"] for k in names]
    ax.barh(names[::-1], vals[::-1], color=[f"C{i}" for i in range(len(names))][::-1])
    for x, name in ((floor, "bigram"), (unigram, "unigram")):
        ax.axvline(x, color="gray", ls=":", lw=1)
        ax.text(x, len(names) - 0.5, f" {name}", color="gray", fontsize=7, va="top")
    ax.set_xlim(min(vals + [floor]) - 0.2, max(vals + [unigram]) + 0.1)
    ax.set_xlabel(f"val loss after {steps} steps (lower is better)")
    ax.set_title("what each part is worth", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    full = runs["full block"]["final_val"]
    table = [{"model": k, "params": r["params"], "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
              "vs full": r["final_val"] - full, "seconds": r["seconds"]} for k, r in runs.items()]
    findings = [f"val loss after {steps} steps: " + ", ".join(f"{k} {r['final_val']:.3f}" for k, r in runs.items()),
                f"entropy of the training text: unigram {unigram:.3f} (knowing only character frequencies), "
                f"bigram {floor:.3f} (the floor for 'no attention', which sees one character)"]
    return Result(NAME, TITLE, table, curve_rows(runs.values()), fig, findings,
                  data={"val": {k: r["final_val"] for k, r in runs.items()},
                        "train": {k: r["final_train"] for k, r in runs.items()},
                        "bigram_entropy": floor, "unigram_entropy": unigram, "runs": runs})
