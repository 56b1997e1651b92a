"""Density-guided map targets (seed 004, Blau, Yvonnesdotter and Lindahl):
a similarity S between a Gaussian model density and the map.

The model density is the atoms spread as Gaussians on the map's grid::

    rho_s(v) = sum_a exp(-|v - x_a|^2 / (2 sigma^2)),   sigma = d / (pi sqrt 2)

with amplitude 1 for every non-H atom (H left out), values at the grid
points, each atom spread only within ``CUTOFF_SIGMAS`` sigma of it (so the
cost grows with the atoms, not with voxels x atoms).  ``sigma`` from the
resolution ``d`` is the width UCSF Chimera's molmap uses.

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
CUTOFF_SIGMAS = 4.0   # exp(-8) = 3e-4 of the peak is left out
EPSILON = 1e-3        # relative entropy: floor of the model density
_CHUNK = 4096         # atoms spread at a time (memory: chunk x stencil voxels)


def gaussian_sigma(resolution):
    """Width in A of an atom's Gaussian at map resolution ``resolution``."""
    return float(resolution) / (math.pi * math.sqrt(2.0))


class DensityTarget(RealSpaceTarget):
    """DataTarget of one seed-004 score (``score``, one of :data:`SCORES`)."""

    def __init__(self, model, map_data, resolution, score="relative_entropy"):
        if score not in SCORES:
            raise QRefineError("unknown map score %r; use one of: %s"
                               % (score, ", ".join(SCORES)))
        RealSpaceTarget.__init__(self, model, map_data, resolution)
        self.score = score
        self.sigma = gaussian_sigma(resolution)
        rho = self.map_data.map_data.as_numpy_array().astype(float)
        self._shape = rho.shape
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
        cell = self.map_data.crystal_symmetry.unit_cell()
        n = np.array(self._shape, dtype=float)
        orth = np.array(cell.orthogonalization_matrix()).reshape(3, 3)
        frac = np.array(cell.fractionalization_matrix()).reshape(3, 3)
        self._grid_to_cart = orth / n[None, :]   # grid index -> box-frame Cartesian
        self._cart_to_grid = frac * n[:, None]
        # The stencil: every grid offset within the cutoff of some point of
        # the atom's own grid cell, whatever the cell's shape.
        reach = CUTOFF_SIGMAS * self.sigma
        half = np.ceil(reach * np.sqrt((self._cart_to_grid ** 2).sum(axis=1))).astype(int) + 1
        axes = [np.arange(-h, h + 2) for h in half]
        self._offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)

    # -- DataTarget ---------------------------------------------------------

    def value_and_gradient(self, sites_cart):
        sites = np.asarray(sites_cart, dtype=float)
        if sites.shape != (self.n_atoms, 3):
            raise ValueError("expected sites of shape (%d, 3), got %s"
                             % (self.n_atoms, sites.shape))
        box = self.map_data.box_frame(sites[self.use_atom])
        # One pass builds the stencils; the spread and the gradient share them.
        stencils = list(self._stencils(box))
        score, weights = self._score(self._spread(stencils))
        grad = np.zeros_like(sites)
        grad[self.use_atom] = -self._gradient(len(box), stencils, weights)
        return -score, grad

    def model_density(self, sites_cart):
        """rho_s on the map grid (box shape), for reports and tests."""
        box = self.map_data.box_frame(np.asarray(sites_cart, dtype=float)[self.use_atom])
        return self._spread(self._stencils(box)).reshape(self._shape)

    # -- helpers ------------------------------------------------------------

    def _stencils(self, box):
        """Per chunk of atoms: (atom index, flat voxel index, voxel - atom
        vector, Gaussian value), voxels outside the box or the cutoff dropped."""
        n = np.array(self._shape)
        for start in range(0, len(box), _CHUNK):
            x = box[start:start + _CHUNK]
            base = np.floor(x @ self._cart_to_grid.T).astype(int)
            idx = base[:, None, :] + self._offsets[None, :, :]
            d = idx @ self._grid_to_cart.T - x[:, None, :]
            r2 = (d ** 2).sum(axis=-1)
            keep = (r2 <= (CUTOFF_SIGMAS * self.sigma) ** 2) & \
                np.all((idx >= 0) & (idx < n), axis=-1)
            atom = np.nonzero(keep)[0] + start
            flat = np.ravel_multi_index(tuple(idx[keep].T), self._shape)
            yield atom, flat, d[keep], np.exp(-0.5 * r2[keep] / self.sigma ** 2)

    def _spread(self, stencils):
        model = np.zeros(int(np.prod(self._shape)))
        for _, flat, _, g in stencils:
            model += np.bincount(flat, weights=g, minlength=model.size)
        return model

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

    def _gradient(self, n_atoms, stencils, weights):
        """dS/dx_a = sum_v w(v) g_av (v - x_a) / sigma^2, per atom."""
        grad = np.zeros((n_atoms, 3))
        for atom, flat, d, g in stencils:
            contrib = (weights[flat] * g)[:, None] * d / self.sigma ** 2
            for k in range(3):
                grad[:, k] += np.bincount(atom, weights=contrib[:, k], minlength=n_atoms)
        return grad
