"""Experiment 5, order: pre-norm vs post-norm (with and without warm-up), and FFN before attention.

The claim (Xiong et al., 2020): pre-norm trains stably without warm-up, post-norm needs it.
Whether that holds depends on the regime, so the experiment runs two of the same parts:

(a) the kit's std-0.02 init, 4 layers, lr 5e-3: post-norm does *not* need warm-up here.
    Also FFN-first. Right: the residual stream's size after each block.
(b) the original Transformer's Xavier init (each sublayer's output of the order of its
    input), 8 layers, lr 3e-3: post-norm without warm-up cuts its early blocks off and sticks
    at the unigram plateau; with warm-up it trains; pre-norm trains either way. Two single
    runs turn one knob of (b) back each (4 layers; lr 1e-3) to show which ones flip the
    result. Right: the gradient reaching the first block, relative to the last block's,
    during training.
"""
from kit.i18n import N_, _

from .common import Result, curve_rows, figure, plot_curves

NAME = "order"
TITLE = N_("Order: pre-norm vs post-norm with and without warm-up, in two regimes; FFN first")
CLAIM = N_("Pre-norm is more stable than post-norm: it trains without learning-rate warm-up, post-norm needs it "
           "(Xiong et al., 2020). And attention comes before the FFN: gather first, then process.")

WIRINGS = {N_("pre-norm"): dict(norm="pre"), N_("post-norm"): dict(norm="post"),
           N_("FFN first (pre-norm)"): dict(norm="pre", order="ffn_attn")}
COLORS = {"pre-norm": "C0", "post-norm": "C1", "FFN first (pre-norm)": "C2"}
GRAD_EVERY = 5  # regime (b) records per-block gradient norms every 5 steps


def grad_ratio(run):
    """``[(step, first block's |grad| / last block's), ...]`` from the run's recorded gradients."""
    return sorted((int(s), g[0] / g[-1]) for s, g in run["grads"].items())


def ratio_at(run, step):
    """The first/last gradient ratio at the recorded step nearest ``step`` (NaN if none was recorded)."""
    pts = grad_ratio(run)
    return min(pts, key=lambda p: abs(p[0] - step))[1] if pts else float("nan")


def norm_name(norm):
    """``"pre"`` -> pre-norm, ``"post"`` -> post-norm, in the language in force."""
    return _("pre-norm") if norm == "pre" else _("post-norm")


def warmup_name(w):
    return _("warm-up {steps}").format(steps=w) if w else _("no warm-up")


def run(lab):
    # (a) the kit's init: today's setting
    layers_a, lr_a = 4, 5e-3
    steps_a = lab.pick(tiny=80, full=400)
    warm_a = steps_a // 4
    runs_a = {}
    for name, wiring in WIRINGS.items():
        for w in (0, warm_a):
            label = f"{name}, " + (f"warm-up {w}" if w else "no warm-up")
            shown = _("{wiring}, {warmup}").format(wiring=_(name), warmup=warmup_name(w))
            runs_a[name, w] = lab.train(NAME, label, steps_a, layers_a, lr=lr_a, warmup=w, shown=shown, **wiring)

    # (b) Xavier init, deeper: where post-norm needs warm-up. lr 3e-3 is the window where it shows: at 5e-3
    # post-norm stays on the plateau even with warm-up, at 1e-3 it needs none, and pre-norm trains at all three.
    layers_b, lr_b, lr_low = 8, 3e-3, 1e-3
    steps_b = lab.pick(tiny=200, full=300)
    warm_b = steps_b // 4
    grads = set(range(0, steps_b, GRAD_EVERY))
    runs_b = {}
    for norm in ("pre", "post"):
        for w in (0, warm_b):
            label = f"{norm}-norm, Xavier, " + (f"warm-up {w}" if w else "no warm-up")
            shown = _("{wiring}, Xavier, {warmup}").format(wiring=norm_name(norm), warmup=warmup_name(w))
            runs_b[norm, w] = lab.train(NAME, label, steps_b, layers_b, lr=lr_b, warmup=w, norm=norm, init="xavier",
                                        grad_steps=grads, shown=shown)
    # One knob of (b) turned back at a time, post-norm without warm-up: 4 layers; lr 1e-3.
    knob = {"depth": lab.train(NAME, f"post-norm, Xavier, {layers_a} layers, no warm-up", steps_b, layers_a, lr=lr_b,
                               norm="post", init="xavier", grad_steps=grads,
                               shown=_("post-norm, Xavier, {layers} layers, no warm-up").format(layers=layers_a)),
            "lr": lab.train(NAME, f"post-norm, Xavier, lr {lr_low:g}, no warm-up", steps_b, layers_b, lr=lr_low,
                            norm="post", init="xavier", grad_steps=grads,
                            shown=_("post-norm, Xavier, lr {lr:g}, no warm-up").format(lr=lr_low))}

    unigram = lab.entropies()[0]
    fig, axes = figure(2, nrows=2)
    # (a), left: curves
    styles = {r["label"]: dict(color=COLORS[n], ls="-" if w else "--") for (n, w), r in runs_a.items()}
    plot_curves(axes[0], list(runs_a.values()),
                f"(a) std-0.02 init, {layers_a} layers, lr {lr_a:g}, warm-up {warm_a} or none", styles)
    lo = min(min(v for _, v in r["train"]) for r in runs_a.values())
    axes[0].set_ylim(lo - 0.1, 3.6)
    # (a), right: the residual stream
    ax = axes[1]
    for n in WIRINGS:
        r = runs_a[n, 0]
        if n != "FFN first (pre-norm)":  # its init matches pre-norm's
            ax.plot(range(1, layers_a + 1), r["stream_init"], ":", marker="o", ms=3, color=COLORS[n],
                    label=f"{n}, init")
        if r["stream_final"]:
            ax.plot(range(1, layers_a + 1), r["stream_final"], "--", marker="o", ms=3, color=COLORS[n],
                    label=f"{n}, trained")
    ax.set_yscale("log")
    ax.set_xticks(range(1, layers_a + 1))
    ax.set_xlabel("after block")
    ax.set_ylabel("RMS of the residual stream")
    ax.set_title("(a) the stream: renormalised (post) or growing (pre); no warm-up", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1, 0.12))
    # (b), left: curves
    runs_bk = list(runs_b.values()) + list(knob.values())
    styles = {r["label"]: dict(color="C0" if n == "pre" else "C1", ls="-" if w else "--")
              for (n, w), r in runs_b.items()}
    styles[knob["depth"]["label"]] = dict(color="C2", ls=":")
    styles[knob["lr"]["label"]] = dict(color="C4", ls=":")
    plot_curves(axes[2], runs_bk, f"(b) Xavier init, {layers_b} layers, lr {lr_b:g}, warm-up {warm_b} or none", styles,
                unigram=unigram)
    axes[2].set_ylim(lo - 0.1, 3.6)
    # (b), right: the gradient that reaches the first block (same lines as the left panel, so no legend)
    ax = axes[3]
    for r in runs_bk:
        pts = grad_ratio(r)
        ax.semilogy([s for s, _ in pts], [v for _, v in pts], lw=1.2, **styles[r["label"]])
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("|grad| first block / last block")
    ax.set_title("(b) gradient reaching block 1, same lines as left", fontsize=10)
    ax.grid(alpha=0.3, which="both")

    table = [{"regime": _("(a) std 0.02, {layers} layers, lr {lr:g}").format(layers=layers_a, lr=lr_a),
              "wiring": _(n), "warm-up": w,
              "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
              "stream RMS after last block": r["stream_final"][-1] if r["stream_final"] else float("nan"),
              "grad first/last at step 30": "", "seconds": r["seconds"]} for (n, w), r in runs_a.items()]
    table += [{"regime": _("(b) Xavier, {layers} layers, lr {lr:g}").format(layers=layers_b, lr=lr_b),
               "wiring": norm_name(n), "warm-up": w,
               "train loss (last 20%)": r["final_train"], "val loss": r["final_val"],
               "stream RMS after last block": r["stream_final"][-1] if r["stream_final"] else float("nan"),
               "grad first/last at step 30": ratio_at(r, 30), "seconds": r["seconds"]} for (n, w), r in runs_b.items()]
    for regime, r in ((_("(b) but {layers} layers").format(layers=layers_a), knob["depth"]),
                      (_("(b) but lr {lr:g}").format(lr=lr_low), knob["lr"])):
        table.append({"regime": regime, "wiring": _("post-norm"), "warm-up": 0,
                      "train loss (last 20%)": r["final_train"],
                      "val loss": r["final_val"],
                      "stream RMS after last block": r["stream_final"][-1] if r["stream_final"] else float("nan"),
                      "grad first/last at step 30": ratio_at(r, 30), "seconds": r["seconds"]})

    va = {k: r["final_val"] for k, r in runs_a.items()}
    vb = {k: r["final_val"] for k, r in runs_b.items()}
    vk = {k: r["final_val"] for k, r in knob.items()}
    r30 = {k: ratio_at(r, 30) for k, r in runs_b.items()}
    findings = [
        _("(a) std-0.02 init, {layers} layers, lr {lr:g}, val loss no warm-up -> warm-up {warmup}: {losses}").format(
            layers=layers_a, lr=lr_a, warmup=warm_a,
            losses=_("; ").join(f"{_(n)} {va[n, 0]:.3f} -> {va[n, warm_a]:.3f}" for n in WIRINGS)),
        _("(b) Xavier init, {layers} layers, lr {lr:g}, no warm-up -> warm-up {warmup}: pre-norm {pre:.3f} -> "
          "{pre_warm:.3f}; post-norm {post:.3f} -> {post_warm:.3f} (unigram entropy {unigram:.3f})").format(
            layers=layers_b, lr=lr_b, warmup=warm_b, pre=vb["pre", 0], pre_warm=vb["pre", warm_b], post=vb["post", 0],
            post_warm=vb["post", warm_b], unigram=unigram),
        _("(b) with one knob turned back, post-norm without warm-up: {layers} layers {depth:.3f}; lr {lr:g} "
          "{lr_val:.3f}").format(layers=layers_a, depth=vk["depth"], lr=lr_low, lr_val=vk["lr"]),
        _("(b) first block's gradient / last block's at step 30: post-norm no warm-up {post:.2g}, with warm-up "
          "{post_warm:.2g}; pre-norm {pre:.2g}").format(post=r30["post", 0], post_warm=r30["post", warm_b],
                                                        pre=r30["pre", 0]),
        _("residual stream RMS after blocks 1..{layers} at init, (a): pre-norm {pre}, post-norm {post}").format(
            layers=layers_a, pre=" ".join(f"{x:.2g}" for x in runs_a["pre-norm", 0]["stream_init"]),
            post=" ".join(f"{x:.2g}" for x in runs_a["post-norm", 0]["stream_init"])),
    ]
    needs_b = vb["post", 0] > vb["post", warm_b] + 0.1 and vb["post", 0] > vb["pre", 0] + 0.1
    needs_a = va["post-norm", 0] > va["post-norm", warm_a] + 0.02
    flips = [k for k in ("depth", "lr") if needs_b and vk[k] < vb["post", 0] - 0.1]
    ffn_gap = va["FFN first (pre-norm)", warm_a] - va["pre-norm", warm_a]
    knobs = {"depth": _("depth: at {layers} layers post-norm trains without warm-up even with Xavier init ({val:.3f}), "
                        "which is why (a) needs none").format(layers=layers_a, val=vk["depth"]),
             "lr": _("the learning rate: at {lr:g} it does too ({val:.3f})").format(lr=lr_low, val=vk["lr"])}
    verdict = [
        _("(a) {verdict}: post-norm without warm-up {outcome}{worst}").format(
            verdict=_("holds") if needs_a else _("does not hold"),
            outcome=_("is the best of the six") if va["post-norm", 0] == min(va.values()) else
            _("ends at {val:.3f}").format(val=va["post-norm", 0]),
            worst=_(", pre-norm without warm-up the worst") if va["pre-norm", 0] == max(va.values()) else ""),
        _("(b) {verdict}: {detail}").format(
            verdict=_("holds") if needs_b else _("does not hold"),
            detail=_("post-norm without warm-up cuts its first blocks off within a few dozen steps and {outcome}; with "
                     "warm-up it trains; pre-norm trains either way").format(
                outcome=_("stays on the unigram plateau") if abs(vb["post", 0] - unigram) < 0.1 else
                _("ends far behind")) if needs_b else _("post-norm trains without warm-up")),
        (_("the knobs that flip (b): {knobs}").format(knobs=_("; ").join(knobs[k] for k in flips)) if flips else
         _("neither fewer layers nor a lower learning rate alone makes post-norm train without warm-up")),
        _("attention before FFN (the kit's order): FFN first ends {gap:+.3f} with warm-up in (a): {outcome}").format(
            gap=ffn_gap, outcome=_("no measurable difference at this size: stacked, the two orders differ only at the "
                                   "ends") if abs(ffn_gap) < 0.03 else _("a measurable difference")),
    ]
    return Result(NAME, _(TITLE), table, curve_rows(list(runs_a.values()) + runs_bk), fig, findings, claim=_(CLAIM),
                  verdict=verdict,
                  data={"val": {f"{n}|{w}": x for (n, w), x in va.items()}, "warmup": warm_a, "runs": runs_a,
                        "runs_b": runs_b, "warmup_b": warm_b, "knob": knob, "unigram_entropy": unigram,
                        "ratio30": {f"{n}|{w}": x for (n, w), x in r30.items()}})
