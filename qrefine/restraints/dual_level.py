"""QM restraints minimised through a cheap method between QM calls.

A QM gradient of a whole protein costs minutes; a force-field gradient of
the same atoms (GFN-FF) well under a second.  Between two QM calls, at x0,
the minimiser sees the model

    E(x) = E_low(x) + [E_qm(x0) - E_low(x0)] + c0 . d + 1/2 d.B.d,   d = x - x0,

with c0 = g_qm(x0) - g_low(x0).  It equals the QM energy and gradient at x0,
borrows the cheap method's curvature, and B, a symmetric-rank-one (SR1)
secant estimate of the curvature difference (QM - cheap) built from the
last QM calls, corrects that curvature where the two methods disagree
(GFN-FF alone mispredicts GFN2's fall by ~50 % at 0.05 A steps on a capped
dipeptide).  ``recentre(x)``, called by the refinement at the start of
every macro cycle, makes one QM call at the current sites.  A macro cycle
that ends where it started is a point where the QM gradient plus the data
gradient vanish: the converged model is a minimum of the QM target itself;
the cheap method only chooses the path.  This is the dual-level
(microiteration) idea of QM/MM optimisers, applied to the whole QM system.

A trust region (largest displacement of any atom from x0) keeps each cycle
where the model holds; it grows and shrinks with the ratio of the actual to
the predicted fall of the target, and a cycle after which the QM target
rose is undone.
"""

import numpy as np

from qrefine.restraints.base import RestraintSource

START_RADIUS = 0.3   # A
MIN_RADIUS = 0.02
MAX_RADIUS = 1.0
WALL = 2000.0        # kcal/mol/A^2: stiffness of the wall at the radius
MEMORY = 10          # secant pairs kept for B


class DualLevelRestraints(RestraintSource):
    """RestraintSource: ``high`` (any QM source) corrected ``low`` (GFN-FF)."""

    is_dual_level = True

    def __init__(self, high, low):
        self.high = high
        self.low = low
        self.x0 = None
        self.offset = 0.0
        self.correction = None
        self.radius = START_RADIUS
        self.recentres = 0
        self.rejected = 0
        self._pairs = []       # (s, y): steps and changes of the correction
        self._sr1 = None       # (Q, w): B = Q diag(w) Q^T

    def recentre(self, sites_cart, predicted_decrease=None):
        """Make one QM call at ``sites_cart`` and return the sites to minimise
        from: ``sites_cart``, or the old x0 when the QM target rose there.
        ``predicted_decrease``: how much the last macro cycle lowered the
        model target (None starts a new minimisation)."""
        x1 = np.array(sites_cart, dtype=float).reshape(-1, 3)
        e_high, g_high = self.high.value_and_gradient(x1)
        e_low, g_low = self.low.value_and_gradient(x1)
        c1 = g_high - g_low
        if self.x0 is None or predicted_decrease is None:
            self.radius = START_RADIUS
            self._pairs, self._sr1 = [], None
        else:
            d = x1 - self.x0
            if predicted_decrease > 0:
                # The data term is exact in the model: its error at x1 is all
                # in the restraints.
                predicted = e_low + self.offset + self._correction_energy(d)
                rho = 1.0 - (e_high - predicted) / predicted_decrease
                moved = float(np.linalg.norm(d, axis=1).max())
                if rho < 0.25:
                    self.radius = max(MIN_RADIUS, 0.5 * self.radius)
                elif rho > 0.75 and moved > 0.8 * self.radius:
                    self.radius = min(MAX_RADIUS, 2.0 * self.radius)
                reject = rho < 0
            else:
                reject = False
            self._add_pair(d, c1 - self.correction)
            if reject:  # the true target rose: step back, with the new pair
                self.rejected += 1
                self._update_sr1()
                return self.x0.copy()
        self.x0, self.offset, self.correction = x1, e_high - e_low, c1
        self._update_sr1()
        self.recentres += 1
        return x1.copy()

    def _add_pair(self, s, y):
        s, y = s.ravel(), y.ravel()
        if np.dot(s, s) > 1e-12:
            self._pairs = (self._pairs + [(s, y)])[-MEMORY:]

    def _update_sr1(self):
        """Compact SR1 from zero (Byrd, Nocedal & Schnabel 1994),
        B = Y (D + L + L^T)^-1 Y^T with S^T Y = L + D + U, stored as
        B = Q diag(w) Q^T with its negative eigenvalues dropped: a
        concave correction lets the model fall without bound inside the
        trust region (seen on ACE-GLY-NME: 2.7 A in one cycle)."""
        if not self._pairs:
            self._sr1 = None
            return
        S = np.array([p[0] for p in self._pairs]).T
        Y = np.array([p[1] for p in self._pairs]).T
        sy = S.T @ Y
        low = np.tril(sy, -1)
        m_inv = np.linalg.pinv(low + low.T + np.diag(np.diag(sy)), rcond=1e-8)
        q, r = np.linalg.qr(Y)
        w, v = np.linalg.eigh(r @ m_inv @ r.T)
        keep = w > 0
        self._sr1 = (q @ v[:, keep], w[keep]) if keep.any() else None

    def _b_times(self, d):
        q, w = self._sr1
        return (q @ (w * (q.T @ d.ravel()))).reshape(d.shape)

    def _correction_energy(self, d):
        e = float(np.sum(self.correction * d))
        if self._sr1 is not None:
            e += 0.5 * float(np.sum(d * self._b_times(d)))
        return e

    def value_and_gradient(self, sites_cart):
        sites = np.array(sites_cart, dtype=float).reshape(-1, 3)
        if self.x0 is None:
            self.recentre(sites)
        e_low, g_low = self.low.value_and_gradient(sites)
        d = sites - self.x0
        value = e_low + self.offset + self._correction_energy(d)
        grad = g_low + self.correction
        if self._sr1 is not None:
            grad = grad + self._b_times(d)
        r = np.linalg.norm(d, axis=1)
        excess = np.maximum(r - self.radius, 0.0)
        if excess.any():
            value += WALL * float(np.sum(excess ** 2))
            grad += (2.0 * WALL * excess / np.where(r > 0, r, 1.0))[:, None] * d
        return value, grad

    def timing(self):
        out = dict(self.high.timing())
        low = self.low.timing()
        out.update({"low_level_calls": low.get("engine_calls"),
                    "low_level_s": low.get("engine_s"), "qm_recentres": self.recentres,
                    "qm_rejected_steps": self.rejected})
        return out

    def close(self):
        for source in (self.high, self.low):
            source.close()

    # What the pipeline reports is the QM source's.
    @property
    def primary(self):
        return self.high

    @property
    def method(self):
        return self.high.method

    def describe(self):
        return "%s, GFN-FF steps between its calls (dual level)" % self.high.describe()

    def summary(self):
        return self.high.summary()

    def symmetry_summary(self):
        return self.high.symmetry_summary()

    def __getattr__(self, name):
        # method, charge, multiplicity, fragments, summary ...: the QM source's.
        if name in ("high", "low"):
            raise AttributeError(name)
        return getattr(self.high, name)
