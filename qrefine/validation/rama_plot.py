"""The qr.comparama figure: six Ramachandran panels with arrows of change.

``render(result, format="png")`` draws a :class:`ComparamaResult` and returns
the image bytes; ``write_plot(result, path)`` writes them atomically.
matplotlib is imported only inside these functions, and only its Agg canvas
is used (no pyplot, no global backend switch).

Contours: the Top8000 ``rama8000-*`` tables that ship in the rotarama data,
loaded through ``mmtbx.validation.utils.get_rotarama_data`` (on the fourth-root
scale MolProbity plots use) and cut at ``mmtbx.validation.ramalyze.get_contours``
levels, i.e. ramalyze's thresholds: favored 2 %, allowed 0.05 % (general),
0.2 % (cis-Pro) or 0.1 % (the others).
"""

import io
import os

from libtbx.utils import Sorry
from mmtbx.validation import utils
from mmtbx.validation.ramalyze import get_contours, res_types

from qrefine.errors import QRefineError
from qrefine.outputs import write_atomic_bytes
from qrefine.validation.comparama import (ALLOWED_TO_FAVORED, BECAME_OUTLIER, CATEGORIES,
                                          CATEGORY_LABELS, CHANGE_KINDS, FAVORED_TO_ALLOWED,
                                          LEFT_OUTLIER, OUTLIER)

FAVORED_FILL = "#a7c7ea"
ALLOWED_FILL = "#e1ecf8"
CONTOUR_LINE = "#3a6ea5"
_GRIDS = {}


def contour_grid(category):
    """(grid, (allowed_level, favored_level)) for one category.

    ``grid`` is a 180 x 180 numpy array, rows psi and columns phi from -180
    to 180 in 2-degree cells, of the Top8000 density to the power 0.25.
    """
    if category not in _GRIDS:
        position = {label: pos for pos, label in CATEGORY_LABELS.items()}[category]
        try:
            grid = utils.get_rotarama_data(pos_type=res_types[position],
                                           convert_to_numpy_array=True)
        except (Sorry, OSError) as e:
            raise QRefineError("Ramachandran contour data for %s could not be loaded (%s); "
                               "install the chemistry data with qr.setup"
                               % (category, str(e).strip().splitlines()[0]))
        _GRIDS[category] = (grid, tuple(get_contours(position)))
    return _GRIDS[category]


def wrapped_copies(start, end):
    """The shortest arrow from ``start`` to ``end`` on the periodic (phi, psi)
    torus, as a list of (start, end) pairs in plot coordinates.

    When the shortest path crosses an edge of the plot, the arrow is
    returned once unshifted and once shifted by 360 degrees (per crossed
    axis); drawn clipped to the axes, together they show the whole path and
    exactly one arrow head.
    """
    d = [((e - s + 180.0) % 360.0) - 180.0 for s, e in zip(start, end)]
    tip = (start[0] + d[0], start[1] + d[1])
    shifts = []
    for t in tip:
        shifts.append([0.0] + ([-360.0 if t > 180.0 else 360.0] if abs(t) > 180.0 else []))
    return [((start[0] + sx, start[1] + sy), (tip[0] + sx, tip[1] + sy))
            for sx in shifts[0] for sy in shifts[1]]


def render(result, format="png", dpi=150, labels="outliers"):
    """Draw ``result`` (a ComparamaResult); return the image as bytes.

    ``labels``: which moved residues get their name written at the arrow head:
    ``"outliers"`` (those that left or entered the outlier region), ``"all"``
    or ``"none"``.
    """
    if labels not in ("outliers", "all", "none"):
        raise QRefineError("labels=%s: choose outliers, all or none" % labels)
    if format not in ("png", "pdf"):
        raise QRefineError("format=%s: choose png or pdf" % format)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.legend_handler import HandlerPatch
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrow

    fig = Figure(figsize=(16.5, 12.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    for ax, category in zip(axes, CATEGORIES):
        _draw_panel(ax, result, category, labels)

    # Title: file names and the whole-model numbers.
    sa, sb = result.stats_before["all"], result.stats_after["all"]
    title = "Ramachandran changes:  %s  \u2192  %s" % (result.before_name, result.after_name)
    summary = ("all residues: favored %s \u2192 %s %%,  outliers %s \u2192 %s %%,  "
               "Rama-Z (whole model) %s \u2192 %s" % (
                   _f(sa.percent_favored, "%.1f"), _f(sb.percent_favored, "%.1f"),
                   _f(sa.percent_outliers, "%.1f"), _f(sb.percent_outliers, "%.1f"),
                   _f(result.rama_z_before.get("whole")), _f(result.rama_z_after.get("whole"))))
    fig.suptitle(title + "\n" + summary, fontsize=14)

    # Legend: the four arrow colours with their counts, plus the point styles.
    counts = result.counts()
    handles, labels = [], []
    for kind, (colour, label) in CHANGE_KINDS.items():
        handles.append(FancyArrow(0, 0, 1, 0, color=colour))
        labels.append("%s (%d)" % (label, counts[kind]))
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", ms=6))
    labels.append("residue in after")
    handles.append(Line2D([], [], ls="", marker="o", mfc="red", mec="black", ms=6))
    labels.append("outlier in after")

    footer = ("Arrows go from the residue's (\u03c6, \u03c8) in before to after; panel = "
              "category in after.  Residues with \u03c6/\u03c8 in only one model: "
              "%d in before only, %d in after only (listed in the table)."
              % (len(result.only_before), len(result.only_after)))
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=6, fontsize=11,
                        handler_map={FancyArrow: HandlerPatch(patch_func=arrow_legend_handle)},
                        frameon=False, title=footer, title_fontsize=10)
    legend.get_title().set_color("#333333")

    buf = io.BytesIO()
    fig.savefig(buf, format=format, dpi=dpi)
    return buf.getvalue()


def write_plot(result, path, format=None, dpi=150, labels="outliers"):
    """Render ``result`` and write it to ``path`` (atomically); format from the suffix."""
    if format is None:
        format = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    data = render(result, format=format, dpi=dpi, labels=labels)
    write_atomic_bytes(path, data)
    return path


def _draw_panel(ax, result, category, labels):
    from matplotlib import patheffects
    from matplotlib.legend_handler import HandlerPatch
    from matplotlib.patches import FancyArrow, FancyArrowPatch
    grid, (allowed, favored) = contour_grid(category)
    extent = (-180, 180, -180, 180)
    top = max(float(grid.max()), favored) + 1.0
    ax.contourf(grid, levels=[allowed, favored, top], colors=[ALLOWED_FILL, FAVORED_FILL],
                extent=extent, origin="lower", zorder=1)
    ax.contour(grid, levels=[allowed, favored], colors=[CONTOUR_LINE],
               linewidths=[0.7, 1.2], extent=extent, origin="lower", zorder=2)

    # Residues of this category in "after".
    points = [r for r in result.after if r.category == category]
    normal = [r for r in points if r.region != OUTLIER]
    outliers = [r for r in points if r.region == OUTLIER]
    if normal:
        ax.plot([r.phi for r in normal], [r.psi for r in normal], ls="", marker="o",
                ms=4, mfc="white", mec="black", mew=0.6, zorder=6)
    if outliers:
        ax.plot([r.phi for r in outliers], [r.psi for r in outliers], ls="", marker="o",
                ms=5.5, mfc="red", mec="black", mew=0.7, zorder=7)

    # Arrows from "before" to "after", shortest way round the torus.
    # Draw order: good news first, so that a new outlier is never hidden.
    order = {LEFT_OUTLIER: 1, ALLOWED_TO_FAVORED: 0, FAVORED_TO_ALLOWED: 2, BECAME_OUTLIER: 3}
    moved = sorted(result.moved_in(category), key=lambda c: order[c.kind])
    for change in moved:
        b, a = change.before, change.after
        for start, end in wrapped_copies((b.phi, b.psi), (a.phi, a.psi)):
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13,
                                         lw=1.8, color=change.colour, shrinkA=0,
                                         shrinkB=2.5, zorder=8))
        ax.plot([b.phi], [b.psi], ls="", marker="o", ms=3, color=change.colour, zorder=5)
        if labels == "all" or (labels == "outliers" and OUTLIER in (b.region, a.region)):
            ax.annotate(a.label, (a.phi, a.psi), xytext=(4, 3), textcoords="offset points",
                        fontsize=7.5, color="#111111", zorder=9, annotation_clip=True,
                        path_effects=[patheffects.withStroke(linewidth=2.5,
                                                             foreground="white")])

    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_aspect("equal")
    ticks = list(range(-180, 181, 60))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=9)
    ax.grid(color="#888888", lw=0.3, alpha=0.5, zorder=3)
    ax.axhline(0, color="#888888", lw=0.5, zorder=3)
    ax.axvline(0, color="#888888", lw=0.5, zorder=3)
    ax.set_xlabel("\u03c6 (degrees)", fontsize=11)
    ax.set_ylabel("\u03c8 (degrees)", fontsize=11)
    sb, sa = result.stats_before[category], result.stats_after[category]
    if sa.n or sb.n:
        numbers = "favored %s \u2192 %s %%,  outliers %s \u2192 %s %%" % (
            _f(sb.percent_favored, "%.1f"), _f(sa.percent_favored, "%.1f"),
            _f(sb.percent_outliers, "%.1f"), _f(sa.percent_outliers, "%.1f"))
    else:
        numbers = "no residues in either model"
    ax.set_title("%s  (%d residue%s)\n%s" % (category, sa.n, "" if sa.n == 1 else "s",
                                              numbers), fontsize=12)

    # Arrow counts of this panel, placed where they hide the fewest points.
    handles, texts = [], []
    for kind, (colour, label) in CHANGE_KINDS.items():
        n = sum(1 for c in moved if c.kind == kind)
        if n:
            handles.append(FancyArrow(0, 0, 1, 0, color=colour))
            texts.append("%d %s" % (n, label))
    if handles:
        ax.legend(handles, texts, loc="best", fontsize=9, framealpha=0.85,
                  handler_map={FancyArrow: HandlerPatch(patch_func=arrow_legend_handle)},
                  handlelength=2.2)


def arrow_legend_handle(legend, orig_handle, xdescent, ydescent, width, height, fontsize):
    """Legend entry drawn as a small arrow in the handle's colour."""
    from matplotlib.patches import FancyArrow
    return FancyArrow(0, height / 2.0, width, 0, width=height * 0.28,
                      head_width=height * 0.9, head_length=height * 0.9,
                      length_includes_head=True, color=orig_handle.get_facecolor())


def _f(value, fmt="%.2f"):
    return "n/a" if value is None else (fmt % value).replace("-", "\u2212")


__all__ = ["render", "write_plot", "contour_grid", "wrapped_copies", "arrow_legend_handle"]
