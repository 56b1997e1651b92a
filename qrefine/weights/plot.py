"""Picture of a weight search: each monitored metric against the trial weight."""

import io

PANELS = [
    ("bond_rmsd", "bond RMSD (A)"),
    ("angle_rmsd", "angle RMSD (deg)"),
    ("rama_favored", "Rama favored (%)"),
    ("rama_outliers", "Rama outliers (%)"),
    ("rotamer_outliers", "rotamer outliers (%)"),
    ("cbeta_deviations", "C-beta deviations"),
    ("clashscore", "clashscore"),
    ("cc_mask", "CC_mask"),
    ("r_work", "R-work / R-free"),
]


def plot_weight_search(trials, chosen_weight, title=""):
    """PNG bytes: one panel per metric present in the trials, weight on a log axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted(trials, key=lambda t: t["weight"])
    panels = [(k, label) for k, label in PANELS
              if any(t["metrics"].get(k) is not None for t in trials)]
    ncols = 3
    nrows = max(1, (len(panels) + ncols - 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    weights = [t["weight"] for t in trials]
    for ax, (key, label) in zip(axes.flat, panels):
        series = [(key, "C0")] + ([("r_free", "C1")] if key == "r_work" else [])
        for k, colour in series:
            values = [t["metrics"].get(k) for t in trials]
            ax.plot(weights, values, "-", color=colour, lw=1, alpha=0.6)
            for t, v in zip(trials, values):
                if v is not None:
                    ax.plot(t["weight"], v, "o" if t["accepted"] else "x", color=colour,
                            label=k if t is trials[0] else None)
        if key == "r_work":
            ax.legend(fontsize=7)
        if chosen_weight is not None:
            ax.axvline(chosen_weight, color="green", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle((title + "  " if title else "") +
                 "weight search (o accepted, x rejected, dashed: chosen)", fontsize=10)
    fig.supxlabel("data weight w", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
