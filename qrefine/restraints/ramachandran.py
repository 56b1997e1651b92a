"""A Top8000 Ramachandran term added to QM restraints
(``ramachandran_restraints=true`` with ``restraints=qm``).

Why: GFN-FF's alpha helices sit at mean (phi, psi) (-66, -35) where the
Top8000 peak is near (-63, -43), so a GFN-FF refinement of 3j63_A gives
Rama-Z -3.7 to -4.2 however the data weight and the clash wall are set
(benchmarks/README.md section 2).  That is the force field's own minimum,
which no QM setting moves.  MolProbity judges (phi, psi) against the
Top8000 distributions, and Rama-Z is a z-score of the mean log-density
there; this term is that log-density turned into an energy,

    E = scale * sum over residues of -ln(p(phi, psi) + FLOOR),

with p the Top8000 density of the residue's class (general, Gly, cis-Pro,
trans-Pro, pre-Pro, Ile/Val; cctbx's ``rama8000-*.data``, peak 1), as a
Boltzmann inversion with ``scale`` = kT would make it.  The density is
interpolated by periodic bicubic splines of its logarithm, so the value is
smooth and the gradient is its exact derivative (cctbx's own Emsley8k term
differentiates a bilinear table by +-1 degree steps; on the 1us0 helix its
gradient differs from finite differences of its value by 9 in 19).
Classes and backbone atoms come from cctbx's Ramachandran proxies, so
every residue is classified as MolProbity classifies it.
"""

import io
import math
import os
import threading

import libtbx.load_env  # noqa: F401  (sets up libtbx.env)
import libtbx
import numpy as np
from mmtbx.geometry_restraints import ramachandran
from scipy.interpolate import RectBivariateSpline

from qrefine.errors import QRefineError
from qrefine.restraints.added import AddedTerm

# Density (peak 1) below which every (phi, psi) costs about the same,
# -ln(1e-4) = 9.2 scale units: under MolProbity's outlier contours of every
# class (0.0005 for general residues, up to 0.002), so the slope reaches as
# far into the outlier region as Top8000 residues do, and the energy stays
# finite where none lie.
FLOOR = 1e-4
TABLES = {
    "general": "rama8000-general-noGPIVpreP.data",
    "glycine": "rama8000-gly-sym.data",
    "cis-proline": "rama8000-cispro.data",
    "trans-proline": "rama8000-transpro.data",
    "pre-proline": "rama8000-prepro-noGP.data",
    "isoleucine or valine": "rama8000-ileval-nopreP.data",
}
_PAD = 4  # grid points copied from the other side, so the spline wraps
_SPLINES = {}
_LOCK = threading.Lock()


class RamachandranRestraint(AddedTerm):
    """``inner`` plus ``scale`` (kcal/mol) times the Top8000 -ln density
    of every residue with (phi, psi)."""

    def __init__(self, inner, model, scale):
        super().__init__(inner)
        self.scale = float(scale)
        self.n_atoms = model.get_number_of_atoms()
        atoms, kinds = residues_with_phi_psi(model)
        self._atoms = atoms  # (R, 5): C(i-1), N, CA, C, N(i+1)
        self._groups = [(splines_for(kind), np.flatnonzero(kinds == kind))
                        for kind in sorted(set(kinds))]

    def describe_term(self):
        return "a Top8000 Ramachandran term (%d residues, %g kcal/mol x -ln density)" % (
            len(self._atoms), self.scale)

    def term(self, sites_cart):
        xyz = np.asarray(sites_cart, dtype=float).reshape(self.n_atoms, 3)
        gradient = np.zeros_like(xyz)
        if not len(self._atoms):
            return 0.0, gradient
        p = xyz[self._atoms]
        phi, dphi = dihedral_and_gradient(p[:, 0:4])
        psi, dpsi = dihedral_and_gradient(p[:, 1:5])
        value = 0.0
        de_dphi = np.zeros(len(phi))
        de_dpsi = np.zeros(len(psi))
        for spline, rows in self._groups:
            a, b = np.degrees(phi[rows]), np.degrees(psi[rows])
            value += float(spline.ev(a, b).sum())
            # d/d(radian) = d/d(degree) * 180/pi
            de_dphi[rows] = spline.ev(a, b, dx=1) * (180.0 / math.pi)
            de_dpsi[rows] = spline.ev(a, b, dy=1) * (180.0 / math.pi)
        g = de_dphi[:, None, None] * np.concatenate([dphi, np.zeros_like(dphi[:, :1])], axis=1)
        g += de_dpsi[:, None, None] * np.concatenate([np.zeros_like(dpsi[:, :1]), dpsi], axis=1)
        np.add.at(gradient, self._atoms.ravel(), g.reshape(-1, 3))
        return self.scale * value, self.scale * gradient


def residues_with_phi_psi(model):
    """(atoms (R, 5) int, classes (R,) str) of the residues cctbx gives
    Ramachandran restraints, in cctbx's classes (the keys of TABLES)."""
    params = ramachandran.master_phil.fetch().extract().ramachandran_plot_restraints
    params.enabled = True
    params.favored = params.allowed = params.outlier = "emsley8k"
    params.inject_emsley8k_into_oldfield_favored = False
    # On a copy of the hierarchy: the model's own restraints manager, which
    # validation uses, stays as it is.
    manager = ramachandran.ramachandran_manager(
        pdb_hierarchy=model.get_hierarchy().deep_copy(), params=params, log=io.StringIO())
    proxies = manager._emsley8k_proxies  # no public accessor in cctbx
    atoms = np.array([tuple(p.get_i_seqs()) for p in proxies], dtype=int).reshape(-1, 5)
    kinds = np.array([p.residue_type for p in proxies], dtype=object)
    return atoms, kinds


def splines_for(kind):
    """Periodic bicubic spline of -ln(density + FLOOR) over (phi, psi) in
    degrees for one residue class; read once per process."""
    with _LOCK:
        if kind not in _SPLINES:
            _SPLINES[kind] = _spline(_table_path(TABLES[kind]))
        return _SPLINES[kind]


def _table_path(name):
    path = libtbx.env.find_in_repositories(
        relative_path=os.path.join("chem_data", "rotarama_data", name), test=os.path.isfile)
    if not path:
        raise QRefineError("Top8000 Ramachandran table chem_data/rotarama_data/%s not found; "
                           "install the chemistry data with qr.setup" % name)
    return path


def _spline(path):
    data = np.loadtxt(path, comments="#")
    # grid centres at odd degrees, -179 .. 179; points not listed have density 0
    grid = np.zeros((180, 180))
    i = np.rint((data[:, 0] + 179) / 2).astype(int)
    j = np.rint((data[:, 1] + 179) / 2).astype(int)
    grid[i, j] = data[:, 2] / data[:, 2].max()
    energy = -np.log(grid + FLOOR)
    padded = np.pad(energy, _PAD, mode="wrap")
    axis = np.arange(-179 - 2 * _PAD, 180 + 2 * _PAD, 2.0)
    return _Wrapped(RectBivariateSpline(axis, axis, padded, kx=3, ky=3, s=0))


class _Wrapped(object):
    """The spline, evaluated at angles brought into [-180, 180)."""

    def __init__(self, spline):
        self.spline = spline

    def ev(self, phi, psi, dx=0, dy=0):
        return self.spline.ev(_wrap(phi), _wrap(psi), dx=dx, dy=dy)


def _wrap(degrees):
    return (np.asarray(degrees) + 180.0) % 360.0 - 180.0


def dihedral_and_gradient(p):
    """Dihedral angles (radians, IUPAC sign) of the atom quadruples ``p``
    (R, 4, 3) and their gradients (R, 4, 3) with respect to the four sites
    (Blondel and Karplus 1996, J. Comput. Chem. 17, 1132)."""
    f = p[:, 0] - p[:, 1]
    g = p[:, 1] - p[:, 2]
    h = p[:, 3] - p[:, 2]
    a = np.cross(f, g)
    b = np.cross(h, g)
    gn = np.linalg.norm(g, axis=1)
    a2 = np.maximum((a * a).sum(axis=1), 1e-12)
    b2 = np.maximum((b * b).sum(axis=1), 1e-12)
    angle = np.arctan2((np.cross(b, a) * g).sum(axis=1) / gn, (a * b).sum(axis=1))
    fg = (f * g).sum(axis=1)
    hg = (h * g).sum(axis=1)
    d0 = -(gn / a2)[:, None] * a
    d3 = (gn / b2)[:, None] * b
    d1 = -d0 + (fg / (a2 * gn))[:, None] * a - (hg / (b2 * gn))[:, None] * b
    d2 = -d3 - (fg / (a2 * gn))[:, None] * a + (hg / (b2 * gn))[:, None] * b
    return angle, np.stack([d0, d1, d2, d3], axis=1)
