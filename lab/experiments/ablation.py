"""Experiment 4, component ablation: take one part out of the block and see what it was doing.

Seven 4-layer models, identical but for one removed part: the full pre-norm block; no
attention (each position sees only its own character, so no model of this kind can beat
the bigram entropy of the text); no FFN; no norms (``x + f(x)``, a final norm neither);
no residuals (``x = f(norm(x))``); and one of the two residuals only, to see whether the
block needs both.
"""
from kit.i18n import N_, _

from .common import Result, curve_rows, figure, listing, plot_curves

NAME = "ablation"
TITLE = N_("Component ablation: full block, no attention, no FFN, no norms, no residuals")
CLAIM = N_("Every part of the block has a job: attention gathers information from other positions, the FFN "
           "processes it, the norms keep each sublayer's input at a steady scale, and each of the two residuals "
           "lets the gradient skip its sublayer. Take any one out and the model gets worse.")

VARIANTS = {
    N_("full block"): {},
    N_("no attention"): dict(attention=False),
    N_("no FFN"): dict(ffn=False),
    N_("no norms"): dict(norm="none"),
    N_("no residuals"): dict(residual=False),
    N_("no attention residual"): dict(residual="ffn"),  # x = attn(norm(x)); x = x + ffn(norm(x))
    N_("no FFN residual"): dict(residual="attn"),  # x = x + attn(norm(x)); x = ffn(norm(x))
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
    table = [{"model": _(k), "params": r["params"], "train loss (last 20%)": r["final_train"],
              "val loss": r["final_val"],
              "vs full": r["final_val"] - full,
              "stream RMS after last block": r["stream_final"][-1] if r["stream_final"] else float("nan"),
              "seconds": r["seconds"]} for k, r in runs.items()]
    v = {k: r["final_val"] for k, r in runs.items()}
    d = {k: x - full for k, x in v.items()}
    rms = {k: r["stream_final"][-1] if r["stream_final"] else float("nan") for k, r in runs.items()}
    findings = [_("val loss after {steps} steps: {losses}").format(
                    steps=steps, losses=listing(f"{_(k)} {x:.3f}" for k, x in v.items())),
                _("entropy of the training text: unigram {unigram:.3f} (knowing only character frequencies), bigram "
                  "{bigram:.3f} (the floor for 'no attention', which sees one character)").format(
                    unigram=unigram, bigram=floor),
                _("residual stream RMS after the last block, trained: full block {full:.3g}, no norms "
                  "{no_norms:.3g}").format(full=rms["full block"], no_norms=rms["no norms"])]

    def holds(ok):
        return _("holds") if ok else _("does not hold")

    def plateau(k):
        where = _("on the unigram plateau") if abs(v[k] - unigram) < 0.1 else _("below the plateau")
        return _("{val:.3f} ({diff:+.3f}, {where})").format(val=v[k], diff=d[k], where=where)
    verdict = [
        _("attention: {verdict}; without it the model cannot go below the bigram entropy and it stays above it "
          "({val:.3f} vs {bigram:.3f})").format(verdict=holds(d["no attention"] > 0.05), val=v["no attention"],
                                                bigram=floor),
        _("FFN: {verdict} ({diff:+.3f})").format(verdict=holds(d["no FFN"] > 0.05), diff=d["no FFN"]),
        _("norms: {verdict} ({diff:+.3f}); at 4 layers the model without norms does not diverge, it learns slowly: "
          "with the std-0.02 init its stream and logits start tiny, and nothing rescales them").format(
            verdict=holds(d["no norms"] > 0.05), diff=d["no norms"]),
        _("residuals: {verdict}: without both {none}; without the attention's only {no_attention}, without the FFN's "
          "only {no_ffn}: {conclusion}").format(
            verdict=holds(d["no residuals"] > 0.1), none=plateau("no residuals"),
            no_attention=plateau("no attention residual"), no_ffn=plateau("no FFN residual"),
            conclusion=_("the block needs both") if min(d["no attention residual"], d["no FFN residual"]) > 0.05 else
            _("one skip path per block carries most of the gradient at 4 layers")),
    ]
    return Result(NAME, _(TITLE), table, curve_rows(runs.values()), fig, findings, claim=_(CLAIM), verdict=verdict,
                  data={"val": v, "train": {k: r["final_train"] for k, r in runs.items()},
                        "bigram_entropy": floor, "unigram_entropy": unigram, "runs": runs, "stream_rms": rms})
