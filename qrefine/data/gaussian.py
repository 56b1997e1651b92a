"""Gaussian model density on a map's grid (seed 004's spreading).

    rho_s(v) = sum_a exp(-|v - x_a|^2 / (2 sigma^2)),   sigma = d / (pi sqrt 2)

amplitude 1 for every atom given (callers leave H out), values at the grid
points, each atom spread only within ``CUTOFF_SIGMAS`` sigma of it, so the
cost grows with the atoms, not with voxels x atoms.  ``sigma`` from the
resolution ``d`` is the width UCSF Chimera's molmap uses.

One object serves two users: the density scores (:mod:`qrefine.data.density`,
which also need the gradient) and the map-model FSC of every map run
(:mod:`qrefine.data.fsc`).
"""

import math

import numpy as np

CUTOFF_SIGMAS = 4.0   # exp(-8) = 3e-4 of the peak is left out
_CHUNK = 4096         # atoms spread at a time (memory: chunk x stencil voxels)


def gaussian_sigma(resolution):
    """Width in A of an atom's Gaussian at map resolution ``resolution``."""
    return float(resolution) / (math.pi * math.sqrt(2.0))


class GaussianDensity:
    """Spreads box-frame sites on a grid of ``shape`` in a cell whose
    orthogonalisation/fractionalisation matrices are ``orth``/``frac``."""

    def __init__(self, shape, orth, frac, resolution):
        self.shape = tuple(int(n) for n in shape)
        self.sigma = gaussian_sigma(resolution)
        n = np.array(self.shape, dtype=float)
        self.grid_to_cart = np.asarray(orth, dtype=float).reshape(3, 3) / n[None, :]
        self.cart_to_grid = np.asarray(frac, dtype=float).reshape(3, 3) * n[:, None]
        # The stencil: every grid offset within the cutoff of some point of
        # the atom's own grid cell, whatever the cell's shape.
        reach = CUTOFF_SIGMAS * self.sigma
        half = np.ceil(reach * np.sqrt((self.cart_to_grid ** 2).sum(axis=1))).astype(int) + 1
        axes = [np.arange(-h, h + 2) for h in half]
        self._offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)

    @classmethod
    def for_map(cls, map_data, resolution):
        """On the box grid of a :class:`~qrefine.data.maps.MapData`."""
        cell = map_data.crystal_symmetry.unit_cell()
        return cls(map_data.map_data.all(), cell.orthogonalization_matrix(),
                   cell.fractionalization_matrix(), resolution)

    def stencils(self, box):
        """Per chunk of atoms: (atom index, flat voxel index, voxel - atom
        vector, Gaussian value), voxels outside the box or the cutoff dropped.
        Build them once per evaluation: spread and gradient share them."""
        n = np.array(self.shape)
        for start in range(0, len(box), _CHUNK):
            x = box[start:start + _CHUNK]
            base = np.floor(x @ self.cart_to_grid.T).astype(int)
            idx = base[:, None, :] + self._offsets[None, :, :]
            d = idx @ self.grid_to_cart.T - x[:, None, :]
            r2 = (d ** 2).sum(axis=-1)
            keep = (r2 <= (CUTOFF_SIGMAS * self.sigma) ** 2) & \
                np.all((idx >= 0) & (idx < n), axis=-1)
            atom = np.nonzero(keep)[0] + start
            flat = np.ravel_multi_index(tuple(idx[keep].T), self.shape)
            yield atom, flat, d[keep], np.exp(-0.5 * r2[keep] / self.sigma ** 2)

    def spread(self, stencils):
        """rho_s, flat, from :meth:`stencils`."""
        model = np.zeros(int(np.prod(self.shape)))
        for _, flat, _, g in stencils:
            model += np.bincount(flat, weights=g, minlength=model.size)
        return model

    def density(self, box):
        """rho_s on the grid (``shape``) for box-frame sites ``box``."""
        return self.spread(self.stencils(box)).reshape(self.shape)

    def gradient(self, n_atoms, stencils, weights):
        """d/dx_a of sum_v weights(v) rho_s(v): sum_v w(v) g_av (v - x_a) / sigma^2."""
        grad = np.zeros((n_atoms, 3))
        for atom, flat, d, g in stencils:
            contrib = (weights[flat] * g)[:, None] * d / self.sigma ** 2
            for k in range(3):
                grad[:, k] += np.bincount(atom, weights=contrib[:, k], minlength=n_atoms)
        return grad
