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


def plot_weight_search(trials, chosen_weight, title="", start=None, limits=None):
    """PNG bytes of :func:`weight_search_figure`."""
    import matplotlib.pyplot as plt
    fig = weight_search_figure(trials, chosen_weight, title, start, limits)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def weight_search_figure(trials, chosen_weight, title="", start=None, limits=None):
    """One panel per metric present in the trials, weight on a log axis.

    ``start``: the start model's metrics, drawn as a grey line in each panel
    (where the search began); ``limits``: {metric: upper limit} the search
    stops at, drawn in red.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter
    start, limits = start or {}, limits or {}

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
                            label=k if t is trials[0] and key == "r_work" else None)
        if key == "r_work":
            ax.legend(fontsize=7)
        if chosen_weight is not None:
            ax.axvline(chosen_weight, color="green", ls="--", lw=1)
        for k, colour in series:
            if start.get(k) is not None:
                ax.axhline(start[k], color="grey", ls=":", lw=1,
                           label="start" if k == key else None)
        if limits.get(key) is not None:
            ax.axhline(limits[key], color="red", ls="-.", lw=1, label="limit")
        if key in limits or start.get(key) is not None:
            ax.legend(fontsize=6, loc="best")
        ax.set_xscale("log")
        # Trial grids often span under two decades: label the 2x and 5x
        # minor ticks too, in plain numbers (1e4, 2e4, 5e4), not 10^4 alone.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(_weight_formatter)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle((title + "  " if title else "") +
                 "weight search (o accepted, x rejected, green: chosen, grey: start, "
                 "red: limit)", fontsize=10)
    fig.supxlabel("data weight w", fontsize=9)
    fig.tight_layout()
    return fig


def _weight_formatter(value, _position=None):
    """A weight tick as a short number: 500, 2000, 2e+04, 1.5e+05."""
    if value < 1e4:
        return "%g" % float("%.2g" % value)
    return ("%.1e" % value).replace(".0e", "e")
