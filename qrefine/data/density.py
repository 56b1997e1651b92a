"""Density-guided map targets (seed 004, Blau, Yvonnesdotter and Lindahl):
a similarity S between a Gaussian model density and the map.

The model density rho_s is the non-H atoms spread as Gaussians on the map's
grid (:mod:`qrefine.data.gaussian`; H left out, sigma = d / (pi sqrt 2)).

Scores (the target is -S, minimised):

- ``inner_product``: S = sum_v rho(v) rho_s(v), the map standardised
  (mean 0, sd 1);
- ``cc``: the Pearson correlation of rho and rho_s over the map box;
- ``relative_entropy``: S = sum_v r(v) log p(v), the negative
  Kullback-Leibler divergence up to a constant, where r is the map made
  non-negative and normalised to sum 1 and p = (rho_s + eps) / sum(rho_s +
  eps); ``eps`` (1e-3 of one atom's peak) keeps log finite in empty voxels.

All three are sums over voxels of a function of rho_s, so one kernel gives
every gradient: dS/dx_a = sum_v w(v) exp(...) (v - x_a) / sigma^2 with
w = dS/d rho_s(v).  Everything else (model-in-map checks, the resolution
limit, CC_mask statistics) is :class:`~qrefine.data.real_space.RealSpaceTarget`'s.
"""

import math

import numpy as np

from qrefine.data.real_space import RealSpaceTarget
from qrefine.errors import QRefineError

SCORES = ("inner_product", "cc", "relative_entropy")
EPSILON = 1e-3        # relative entropy: floor of the model density


class DensityTarget(RealSpaceTarget):
    """DataTarget of one seed-004 score (``score``, one of :data:`SCORES`)."""

    def __init__(self, model, map_data, resolution, score="relative_entropy"):
        if score not in SCORES:
            raise QRefineError("unknown map score %r; use one of: %s"
                               % (score, ", ".join(SCORES)))
        RealSpaceTarget.__init__(self, model, map_data, resolution)
        self.score = score
        rho = self.map_data.map_data.as_numpy_array().astype(float)
        if score == "inner_product":
            self._rho = ((rho - rho.mean()) / rho.std()).ravel()
        elif score == "cc":
            centred = rho - rho.mean()
            self._rho = (centred / np.sqrt((centred ** 2).sum())).ravel()  # unit length
        else:
            r = np.clip(rho, 0.0, None)
            if not r.sum() > 0:
                raise QRefineError("map file %s has no positive density for the relative "
                                   "entropy score" % map_data.path)
            self._rho = (r / r.sum()).ravel()

    # -- DataTarget ---------------------------------------------------------

    def value_and_gradient(self, sites_cart):
        sites = np.asarray(sites_cart, dtype=float)
        if sites.shape != (self.n_atoms, 3):
            raise ValueError("expected sites of shape (%d, 3), got %s"
                             % (self.n_atoms, sites.shape))
        box = self.map_data.box_frame(sites[self.use_atom])
        # One pass builds the stencils; the spread and the gradient share them.
        stencils = list(self.gaussian.stencils(box))
        score, weights = self._score(self.gaussian.spread(stencils))
        grad = np.zeros_like(sites)
        grad[self.use_atom] = -self.gaussian.gradient(len(box), stencils, weights)
        return -score, grad

    # -- helpers ------------------------------------------------------------

    def _score(self, model):
        """(S, dS/d rho_s per voxel)."""
        if self.score == "inner_product":
            return float(self._rho @ model), self._rho
        if self.score == "cc":
            a = model - model.mean()
            norm = math.sqrt(float(a @ a))
            if norm == 0.0:
                return 0.0, np.zeros_like(model)
            cc = float(self._rho @ a) / norm
            # d cc / d rho_s: the centring drops out (both sides sum to zero).
            return cc, self._rho / norm - cc * a / norm ** 2
        p = model + EPSILON
        total = float(p.sum())
        score = float(self._rho @ np.log(p / total))
        return score, self._rho / p - 1.0 / total  # sum(r) = 1
