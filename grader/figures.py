"""The report's pictures, drawn as PNG data URIs (matplotlib, no display): one self-contained HTML file.

``attention_figure`` puts the submission's attention weights above the reference's, one heatmap per
head (rows: query positions, columns: key positions; the reference is zero above the diagonal);
``gradient_figure`` puts the two sides' gradient norms per parameter side by side, on a log scale.
"""
import base64
import io


def _png(fig):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def attention_figure(maps):
    """``maps``: Pictures.attention. A data URI."""
    plt = _pyplot()
    ref, mine = maps["reference"], maps["student"]
    heads = ref.shape[0]
    rows = [("reference", ref)] + ([("yours", mine)] if mine is not None else [])
    cols = max(heads, mine.shape[0] if mine is not None else 0)
    cols = min(cols, 8)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.3 * len(rows)), squeeze=False)
    for r, (label, m) in enumerate(rows):
        for h in range(cols):
            ax = axes[r][h]
            ax.set_xticks([])
            ax.set_yticks([])
            if h >= m.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(m[h].numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_title(f"{label}: head {h}", fontsize=9)
            if h == 0:
                ax.set_ylabel("query position", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("key position", fontsize=8)
    return _png(fig)


def gradient_figure(unit, norms):
    """``norms``: one entry of Pictures.gradients. A data URI."""
    plt = _pyplot()
    names = norms["names"]
    ys = range(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) + 1.2))
    ref = [v or 0.0 for v in norms["reference"]]
    mine = [v if v is not None else 0.0 for v in norms["student"]]
    ax.barh([y + 0.2 for y in ys], ref, height=0.4, label="reference", color="#4c72b0")
    ax.barh([y - 0.2 for y in ys], mine, height=0.4, label="yours", color="#dd8452")
    for y, v in zip(ys, norms["student"]):
        if v is None:
            ax.text(0, y - 0.2, "  no gradient", va="center", fontsize=7, color="#a00")
    ax.set_yticks(list(ys), names, fontsize=7)
    ax.invert_yaxis()
    if any(v > 0 for v in ref + mine):
        ax.set_xscale("symlog", linthresh=1e-4)
    ax.set_xlabel("gradient norm")
    ax.set_title(f"{unit}: the norm of each parameter's gradient, one backward pass", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)
