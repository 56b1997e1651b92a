"""A clash restraint added to QM restraints (``qm.clash_restraint=``).

Why: GFN-FF and GFN2-xTB fragments put aliphatic C-H ... O contacts at
2.1-2.2 A (3j63_A: 27 of the 29 clashes of a GFN-FF refinement,
benchmarks/README.md section 2), where MolProbity's probe sees an overlap
of more than 0.4 A between van der Waals spheres and counts a clash.  The
QM energy of such a contact is a shallow weak H-bond, so the data pull or
the model's own strain holds it there.  This term penalises only such
overlaps, as a stiff harmonic wall, and is zero for every pair that is not
within ``ONSET`` of the clash line, so at a clash-free model the QM
energy surface is untouched.

Pairs: atoms more than three bonds apart (four when one is H), as probe2
counts them; a polar H (on N or O) facing an N or O acceptor is an H-bond,
not a clash, and is left alone (probe2 does the same).  Radii: those of
the rotamer fit, close to probe2's with H at nuclear distances
(:data:`qrefine.model.elements.CONTACT_RADII`), with probe2's smaller
polar H and carbonyl C.
"""

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from qrefine.model.elements import CONTACT_RADII, element_of
from qrefine.restraints.added import AddedTerm

# The wall starts where two spheres overlap by this much (A): 0.1 A before
# MolProbity's clash line (0.4 A), so that a minimised pair ends outside it.
ONSET = 0.3
# qm.clash_restraint=None with a map: the force constant (kcal/mol/A^2) that
# took 3j63_A's GFN-FF clashscore from 20.2 to 0.0 and 5fn5_C's to 0.3-0.5
# (benchmarks/README.md section 2, "The QM clash restraint").
MAP_DEFAULT_WEIGHT = 100.0
POLAR_H_RADIUS = 1.05
CARBONYL_C_RADIUS = 1.65


class ClashRestraint(AddedTerm):
    """``inner`` (a QM restraint source) plus ``weight`` * sum over pairs of
    (overlap - ONSET)^2 where the overlap r_i + r_j - d_ij exceeds ONSET;
    ``weight`` in kcal/mol/A^2, as the QM value is in kcal/mol.  Everything
    but the value and gradient is ``inner``'s."""

    def __init__(self, inner, model, weight):
        super().__init__(inner)
        self.weight = float(weight)
        hierarchy = model.get_hierarchy()
        elements = [element_of(a) for a in hierarchy.atoms()]
        self.n_atoms = len(elements)
        self.radii = np.array([CONTACT_RADII.get(e, 1.7) for e in elements])
        is_h = np.array([e == "H" for e in elements])
        bonds = _bond_pairs(model)
        self._excluded = _within_bonds(self.n_atoms, bonds, is_h)
        polar_n_o = np.array([e in ("N", "O") for e in elements])
        polar_h = np.zeros(self.n_atoms, dtype=bool)
        for i, j in bonds:
            polar_h[i] |= is_h[i] and polar_n_o[j]
            polar_h[j] |= is_h[j] and polar_n_o[i]
        self._polar_h, self._acceptor = polar_h, polar_n_o
        # probe2's radii for a polar H (1.05) and a carbonyl or carboxyl C
        # (1.65): with the 1.17 and 1.7 of other H and C, backbone C ... H-N
        # contacts it does not count would be pushed apart
        self.radii[polar_h] = POLAR_H_RADIUS
        n_bonds = np.bincount(np.array(bonds, dtype=int).ravel(), minlength=self.n_atoms) \
            if bonds else np.zeros(self.n_atoms, dtype=int)
        for i, j in bonds:
            for c, o in ((i, j), (j, i)):
                if elements[c] == "C" and elements[o] == "O" and n_bonds[o] == 1:
                    self.radii[c] = CARBONYL_C_RADIUS
        self._reach = 2 * self.radii.max() - ONSET
        self.pairs_last = 0  # pairs inside the wall at the last call

    def describe_term(self):
        return "a clash restraint (%g kcal/mol/A^2 beyond %.1f A overlap)" % (
            self.weight, ONSET)

    def term(self, sites_cart):
        return self.wall(sites_cart)

    def wall(self, sites_cart):
        """(value, gradient) of the clash term alone."""
        xyz = np.asarray(sites_cart, dtype=float).reshape(self.n_atoms, 3)
        gradient = np.zeros_like(xyz)
        pairs = cKDTree(xyz).query_pairs(self._reach, output_type="ndarray")
        if len(pairs) == 0:
            self.pairs_last = 0
            return 0.0, gradient
        i, j = pairs[:, 0], pairs[:, 1]
        delta = xyz[i] - xyz[j]
        d = np.sqrt((delta ** 2).sum(axis=1))
        depth = self.radii[i] + self.radii[j] - ONSET - d
        keep = depth > 0
        keep &= ~((self._polar_h[i] & self._acceptor[j]) | (self._polar_h[j] & self._acceptor[i]))
        if keep.any():
            keep[keep] &= ~np.asarray(self._excluded[i[keep], j[keep]]).ravel().astype(bool)
        i, j, delta, d, depth = i[keep], j[keep], delta[keep], d[keep], depth[keep]
        self.pairs_last = len(i)
        if not len(i):
            return 0.0, gradient
        value = self.weight * float((depth ** 2).sum())
        # d(depth)/d(x_i) = -delta / d
        g = (-2.0 * self.weight * depth / np.maximum(d, 1e-6))[:, None] * delta
        np.add.at(gradient, i, g)
        np.add.at(gradient, j, -g)
        return value, gradient


def _bond_pairs(model):
    """(i, j) of every bond of the model's restraints (cctbx's bond proxies)."""
    geometry = model.get_restraints_manager().geometry
    proxies = geometry.pair_proxies(sites_cart=model.get_sites_cart()).bond_proxies
    pairs = [p.i_seqs for p in proxies.simple]
    pairs += [(p.i_seq, p.j_seq) for p in proxies.asu]
    return pairs


def _within_bonds(n, bonds, is_h):
    """Sparse (n, n) matrix, nonzero where two atoms are at most three bonds
    apart, or four when one of them is an H (probe2's exclusions)."""
    if not bonds:
        return sparse.csr_matrix((n, n), dtype=bool)
    b = np.array(bonds)
    a = sparse.csr_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.int32)
    reach = a.copy()
    step = a
    for _ in range(2):  # up to three bonds
        step = (step @ a > 0).astype(np.int32)
        reach = ((reach + step) > 0).astype(np.int32)
    four = (step @ a > 0).astype(np.int32)  # four bonds
    h = sparse.diags(is_h.astype(np.int32), dtype=np.int32)
    with_h = ((h @ four + four @ h) > 0).astype(np.int32)
    return ((reach + with_h) > 0).tocsr()
