"""Experiment 5, order: pre-norm, post-norm and FFN-before-attention, each with and without warm-up.

Three 4-layer wirings of the same parts, trained at a high learning rate (5e-3) from a cold
start and with a linear warm-up over the first quarter of the steps. The right panel shows
the mechanism behind pre- vs post-norm: the size (RMS) of the residual stream after each
block. Post-norm renormalises it after every sublayer; pre-norm lets every block add to it,
so it grows with depth.
"""
from .common import Result, curve_rows, figure, plot_curves

NAME = "order"
TITLE = "Order: pre-norm vs post-norm vs FFN-first, with and without warm-up"

WIRINGS = {"pre-norm": dict(norm="pre"), "post-norm": dict(norm="post"),
           "FFN first (pre-norm)": dict(norm="pre", order="ffn_attn")}
COLORS = {"pre-norm": "C0", "post-norm": "C1", "FFN first (pre-norm)": "C2"}


def run(lab):
    layers = 4
    steps = lab.pick(tiny=80, full=400)
    warmup = steps // 4
    lr = 5e-3
    runs = {}
    for name, wiring in WIRINGS.items():
        for w in (0, warmup):
            label = f"{name}, " + (f"warm-up {w}" if w else "no warm-up")
            runs[name, w] = lab.train(NAME, label, steps, layers, lr=lr, warmup=w, **wiring)
    fig, axes = figure(2)
    styles = {r["label"]: dict(color=COLORS[n], ls="-" if w else "--") for (n, w), r in runs.items()}
    plot_curves(axes[0], list(runs.values()), f"{layers} layers, lr {lr:g}, warm-up {warmup} steps or none", styles)
    lo = min(min(v for _, v in r["train"]) for r in runs.values())
    axes[0].set_ylim(lo - 0.1, 3.6)
    ax = axes[1]
    for n in WIRINGS:
        r = runs[n, 0]
        if n != "FFN first (pre-norm)":  # its init matches pre-norm's
            ax.plot(range(1, layers + 1), r["stream_init"], ":", marker="o", ms=3, color=COLORS[n], label=f"{n}, init")
        if r["stream_final"]:
            ax.plot(range(1, layers + 1), r["stream_final"], "--", marker="o", ms=3, color=COLORS[n],
                    label=f"{n}, trained")
    ax.set_yscale("log")
    ax.set_xticks(range(1, layers + 1))
    ax.set_xlabel("after block")
    ax.set_ylabel("RMS of the residual stream")
    ax.set_title("the stream: renormalised (post) or growing (pre); no warm-up", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1, 0.12))
    table = [{"wiring": n, "warm-up": w, "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
              "stream RMS after last block": r["stream_final"][-1] if r["stream_final"] else float("nan"),
              "seconds": r["seconds"]} for (n, w), r in runs.items()]
    v = {k: r["final_val"] for k, r in runs.items()}
    findings = [f"val loss after {steps} steps at lr {lr:g}, no warm-up -> warm-up {warmup}: "
                + "; ".join(f"{n} {v[n, 0]:.3f} -> {v[n, warmup]:.3f}" for n in WIRINGS),
                "residual stream RMS after blocks 1..{} at init: pre-norm {}, post-norm {}".format(
                    layers, " ".join(f"{x:.2g}" for x in runs["pre-norm", 0]["stream_init"]),
                    " ".join(f"{x:.2g}" for x in runs["post-norm", 0]["stream_init"]))]
    return Result(NAME, TITLE, table, curve_rows(runs.values()), fig, findings,
                  data={"val": {f"{n}|{w}": x for (n, w), x in v.items()}, "warmup": warmup, "runs": runs,
                        "unigram_entropy": lab.entropies()[0]})
