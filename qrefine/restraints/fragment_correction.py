"""Delta correction of a fragment gradient by the whole model's (issue 15).

A refinement asks for gradients at many nearby points.  The fragment error
(long-range electrostatics and the GBSA boundary of each fragment, see
benchmarks/README.md "Fragment schemes") changes slowly when atoms move a
little, so a constant per-atom correction taken at a reference point
``x0`` removes most of it near ``x0``::

    g(x) = g_frag(x) + c,    c = g_whole(x0) - g_frag(x0)

At ``x0`` itself g is the whole-model gradient exactly.  The correction is a
constant gradient, so its energy is ``c . (x - x0)``; the fragment source's
line-integral value integrates it exactly, and when ``c`` is refreshed the
stored gradients are shifted by the change (``PathValue.add_to_gradients``),
so value and gradient stay consistent.

The correction is refreshed (a whole-model gradient and a fragment gradient
at the same point) at the first call, when the clustering changes (``c``
belongs to one set of fragments), at the start of each macro cycle
(:meth:`mark_stale`), and when any atom has moved more than ``refresh``
A from ``x0``.
"""

import numpy as np

from qrefine.errors import QRefineError

CORRECTIONS = ("none", "whole_model")
# A: largest atom shift from x0 before the correction is taken again.  On
# 3j63_A (GFN2-xTB, benchmarks/fragment_delta.py) 8 residues / 2 A fragments
# moved randomly by at most 0.14 A stayed within RMS 0.41, max 2.9 kcal/mol/A
# of the whole model; at 0.29 A the max error was 6.0.
DEFAULT_REFRESH = 0.15


class WholeModelCorrection:
    """The constant ``c`` and when to take it again.

    ``whole``: a :class:`~qrefine.restraints.qm.QMRestraints` of the whole
    model (its gradient is the reference); ``refresh``: A, largest atom
    shift from the reference point (None or 0: only at the first call,
    reclustering and :meth:`mark_stale`).
    """

    def __init__(self, whole, refresh=DEFAULT_REFRESH):
        if refresh is not None and refresh < 0:
            raise QRefineError("fragments.correction_refresh must be >= 0 A, got %s" % refresh)
        self.whole = whole
        self.refresh = float(refresh) if refresh else None
        self.x0 = None
        self.c = None
        self.stale = True
        self.n_refreshes = 0

    def mark_stale(self):
        """Take the correction again at the next gradient (a new macro cycle)."""
        self.stale = True

    def due(self, sites, reclustering=False):
        """Whether the correction must be taken at ``sites``."""
        if self.stale or self.c is None or reclustering:
            return True
        if self.refresh is None:
            return False
        shift = np.sqrt(((sites - self.x0) ** 2).sum(axis=1)).max()
        return shift > self.refresh

    def take(self, sites, fragment_gradient):
        """Set ``c`` at ``sites`` from the fragment gradient there; returns
        the change of ``c`` (to shift stored gradients by)."""
        _, whole_gradient = self.whole.value_and_gradient(sites)
        c = whole_gradient - fragment_gradient
        delta = c if self.c is None else c - self.c
        self.x0 = np.array(sites, dtype=float)
        self.c = c
        self.stale = False
        self.n_refreshes += 1
        return delta

    def apply(self, fragment_gradient):
        return fragment_gradient + self.c

    def timing(self):
        return {"correction_refreshes": self.n_refreshes,
                "correction_engine_s": round(self.whole.seconds, 3)}
