"""Real-space data target: how well the atoms sit in the cryo-EM density.

    value = - sum over non-H atoms of rho(x_i)

with rho the map normalised to zero mean and unit standard deviation over
the box, so the value is in map sigmas whatever the file's units.  Lower is
better.  The sum (not the mean) keeps each atom's gradient independent of
model size, like the restraint gradients it is weighed against.

Decisions (why):
* Hydrogens are left out of the map term: at cryo-EM resolution the map has
  no H density of its own, and pulling H into heavy-atom density distorts the
  riding geometry.  They get a zero map gradient and follow the restraints.
* Non-H atoms have equal weight, as in cctbx's maptbx real-space targets
  (``target_and_gradients_simple``) that mmtbx refinement uses.  Weighting
  by atomic number would let the few S atoms dominate while a 3-4 A map does
  not resolve their extra density.
* Interpolation is a cubic B-spline through the grid values (scipy prefilter,
  numpy evaluation), not cctbx's trilinear or tricubic.  The B-spline is C2,
  so the analytic gradient is the exact derivative everywhere and L-BFGS sees
  a smooth surface.  cctbx's trilinear gradient is piecewise constant and its
  Lagrange tricubic gradient jumps at every grid plane (on 3j63_A by up to a
  quarter of the gradient's range along a 3 A scan), which misleads line searches
  and makes finite-difference checks depend on where the atoms happen to be.
  Cost: about 0.3 ms per call for 700 atoms, no more than the cctbx tricubic.
* The map is padded by PAD grid points of solvent level (the mean of the box
  faces), and sites are clamped to where the 4x4x4 stencil fits.  Atoms just
  outside the box thus see flat solvent (value continuous, no gradient) instead
  of density wrapped round from the opposite face.
"""

from cctbx import xray
from mmtbx.maps.correlation import five_cc
import numpy as np
from scipy import ndimage
from scitbx.array_family import flex

from qrefine.data.fsc import fsc_average
from qrefine.data.gaussian import GaussianDensity
from qrefine.data.maps import check_model_in_map
from qrefine.errors import QRefineError
from qrefine.model.io import hydrogen_mask

PAD = 4  # the prefilter's influence decays by 0.27 per point; 4 points make it flat

_OFFSETS = np.arange(-1, 3)  # the cubic B-spline stencil around floor(u)


def voxel_size(map_data):
    """The largest voxel edge of the map in A."""
    cell = map_data.unit_cell_crystal_symmetry.unit_cell().parameters()[:3]
    n = map_data.map_manager.unit_cell_grid
    return max(float(a) / int(m) for a, m in zip(cell, n))


class RealSpaceTarget:
    """DataTarget for a map (see qrefine.data).  Sites and gradients are in the
    model's original frame; the map's origin shift is applied inside."""

    kind = "map"

    def __init__(self, model, map_data, resolution):
        if resolution is None or not resolution > 0:
            raise QRefineError("a positive map resolution is needed for map file %s "
                               "(set resolution=<d_min in A>)" % map_data.path)
        voxel = voxel_size(map_data)
        if resolution < 2.0 * voxel:
            # Finer than the sampling (Nyquist) the map cannot hold, and the
            # CC_mask and Fourier grids grow with 1/d^3: resolution=0.01 on
            # 1.2 A voxels used more than 8 GB before it crashed.
            raise QRefineError("resolution=%g is finer than map file %s can hold (voxels of "
                               "%.2f A: at least %.2f A); give the map's resolution"
                               % (resolution, map_data.path, voxel, 2.0 * voxel))
        check_model_in_map(model, map_data)
        self.map_data = map_data
        self.resolution = float(resolution)
        self.n_atoms = model.get_number_of_atoms()
        self.use_atom = ~hydrogen_mask(model)
        self._last_statistics = None  # (sites as bytes, statistics): see statistics()
        self._setup_map()
        # The Gaussian model density of the non-H atoms: the FSC statistic of
        # every map run, and the model of the density scores.
        self.gaussian = GaussianDensity.for_map(map_data, resolution)
        # Scatterers for CC_mask, put in the box's P1 cell: five_cc builds the
        # model map on the map's grid from the structure's cell.
        self._xrs = xray.structure(
            crystal_symmetry=map_data.crystal_symmetry,
            scatterers=model.get_xray_structure().scatterers().deep_copy())

    def _setup_map(self):
        rho = self.map_data.map_data.as_numpy_array().astype(float)
        rho = (rho - rho.mean()) / rho.std()
        faces = np.concatenate([rho[[0, -1]].ravel(), rho[:, [0, -1]].ravel(),
                                rho[:, :, [0, -1]].ravel()])
        self.solvent_level = float(faces.mean())
        padded = np.pad(rho, PAD, mode="constant", constant_values=self.solvent_level)
        self._coef = ndimage.spline_filter(padded, order=3, mode="mirror").ravel()
        n = np.array(rho.shape, dtype=float)
        frac = np.array(self.map_data.crystal_symmetry.unit_cell()
                        .fractionalization_matrix()).reshape(3, 3)
        # Padded grid coordinate u = M @ (site + shift_cart) + PAD.
        self._to_grid = frac * n[:, None]
        self._u0 = self._to_grid @ self.map_data.shift_cart + PAD
        n_pad = np.array(padded.shape)
        self._u_lo, self._u_hi = 1.0, n_pad - 2.0 - 1e-9  # the stencil fits here
        self._stride = np.array([n_pad[1] * n_pad[2], n_pad[2], 1])
        self._corners = (_OFFSETS[:, None, None] * self._stride[0]
                         + _OFFSETS[None, :, None] * self._stride[1]
                         + _OFFSETS[None, None, :]).ravel()

    def value_and_gradient(self, sites_cart):
        sites = np.asarray(sites_cart, dtype=float)
        if sites.shape != (self.n_atoms, 3):
            raise ValueError("expected sites of shape (%d, 3), got %s"
                             % (self.n_atoms, sites.shape))
        u = sites[self.use_atom] @ self._to_grid.T + self._u0
        u_in = np.clip(u, self._u_lo, self._u_hi)
        rho, d_rho_du = self._interpolate(u_in)
        d_rho_du[u_in != u] = 0.0  # clamped: flat solvent beyond the padding
        grad = np.zeros_like(sites)
        grad[self.use_atom] = -(d_rho_du @ self._to_grid)
        return -float(rho.sum()), grad

    def _interpolate(self, u):
        """Cubic B-spline value and d/du at padded grid coordinates u (M, 3)."""
        i0 = np.floor(u).astype(np.intp)
        t = u - i0
        t2, s = t * t, 1.0 - t
        t3 = t2 * t
        w = np.stack([s * s * s, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3],
                     axis=-1) * (1.0 / 6.0)
        dw = np.stack([-s * s, 3 * t2 - 4 * t, -3 * t2 + 2 * t + 1, t2], axis=-1) * 0.5
        c = self._coef[(i0 @ self._stride)[:, None] + self._corners].reshape(-1, 4, 4, 4)
        wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
        c_z = np.einsum("nijk,nk->nij", c, wz)
        c_dz = np.einsum("nijk,nk->nij", c, dw[:, 2])
        c_yz = np.einsum("nij,nj->ni", c_z, wy)
        value = np.einsum("ni,ni->n", c_yz, wx)
        gx = np.einsum("ni,ni->n", c_yz, dw[:, 0])
        gy = np.einsum("ni,ni->n", np.einsum("nij,nj->ni", c_z, dw[:, 1]), wx)
        gz = np.einsum("ni,ni->n", np.einsum("nij,nj->ni", c_dz, wy), wx)
        return value, np.stack([gx, gy, gz], axis=1)

    def density_at(self, sites_cart):
        """The map's value (sigma units of the box) at each of (m, 3) sites,
        whatever atoms they are: how rotamer fitting scores a side chain."""
        u = np.asarray(sites_cart, dtype=float).reshape(-1, 3) @ self._to_grid.T + self._u0
        return self._interpolate(np.clip(u, self._u_lo, self._u_hi))[0]

    def update(self, sites_cart):
        """Nothing to re-fit: the map is fixed and has no scale to refine."""

    def model_density(self, sites_cart):
        """The Gaussian model density of the non-H atoms on the map's grid."""
        box = self.map_data.box_frame(np.asarray(sites_cart, dtype=float)[self.use_atom])
        return self.gaussian.density(box)

    def statistics(self, sites_cart):
        """CC_mask (mmtbx five_cc) of the whole model (H included) and the
        unweighted map-model FSC average (seed 004's monitor) at ``resolution``.

        The last call's result is kept: a weight trial's last macro cycle and
        its validation, and the final refinement's last cycle and the final
        validation, ask for the same sites (0.2 s a call on 3j63_A)."""
        key = np.asarray(sites_cart, dtype=float).tobytes()
        if self._last_statistics is not None and self._last_statistics[0] == key:
            return dict(self._last_statistics[1])
        result = self._statistics(sites_cart)
        self._last_statistics = (key, result)
        return dict(result)

    def _statistics(self, sites_cart):
        box = np.ascontiguousarray(self.map_data.box_frame(sites_cart), dtype=float)
        xrs = self._xrs.deep_copy_scatterers()
        xrs.set_sites_cart(flex.vec3_double(flex.double(box.ravel())))
        cc = five_cc(map=self.map_data.map_data, xray_structure=xrs,
                     d_min=self.resolution, compute_cc_mask=True,
                     compute_cc_volume=False, compute_cc_peaks=False).result.cc_mask
        fsc = fsc_average(self.map_data.map_data.as_numpy_array(),
                          self.model_density(sites_cart),
                          self.map_data.crystal_symmetry.unit_cell().fractionalization_matrix(),
                          self.resolution)
        return {"cc_mask": float(cc), "fsc_avg": fsc}
