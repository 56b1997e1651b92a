"""Short geometry regularisation of the added atoms only.

Target: the cctbx library restraints (bonds, angles, dihedrals, planes,
chirality, non-bonded repulsion) plus a contact term that keeps atom pairs
apart by the probe (MolProbity) van der Waals radii, so that the result is
judged by the same measure as the clashscore.  L-BFGS moves only the atoms
qr.finalise added; every atom of the input stays fixed.

A clash is an overlap of the probe radii of at least 0.4 A between atoms
more than three bonds apart (four when one is H), other than a polar H and
an acceptor, as in probe.  The contact term pushes overlaps below 0.3 A.

Riding H of an input heavy atom can only leave a contact by bending its
angles, which the library restraints resist; with one weight for every pair
some such H end up just over 0.4 A (3dtj: six clashes, 1.3 of its 3.91
clashscore).  So after the first rounds, each pair still at a clash gets its
own weight raised (x4 per round, at most x16) and the minimisation goes on;
pairs that do not clash keep the base weight, so the rest of the added atoms
see the same target as before.
"""

from dataclasses import dataclass

import iotbx.phil
from mmtbx.probe import Helpers
import numpy as np
from scipy.spatial import cKDTree
from scitbx.array_family import flex

from qrefine.refine.minimizer import lbfgs
from qrefine.restraints.cctbx_geometry import CctbxGeometry

CLASH_OVERLAP = 0.4      # A; MolProbity clash
TARGET_OVERLAP = 0.3     # A; what the contact term allows
CONTACT_WEIGHT = 1000.0  # per A^2, comparable to a bond restraint of sigma 0.03 A
_PAIR_MARGIN = 1.0       # A; pairs this far beyond contact are tracked too
_ROUNDS = 3              # pair lists are rebuilt between rounds
_ESCALATION_ROUNDS = 2   # further rounds with the still-clashing pairs weighted up
_ESCALATION = 4.0        # weight factor per such round for a still-clashing pair
_MAX_BOOST = 16.0        # largest factor on CONTACT_WEIGHT for one pair
_ESCALATE_OVERLAP = CLASH_OVERLAP - 0.02  # escalate pairs this close to a clash


@dataclass
class Regularisation:
    n_movable: int
    start_target: float
    final_target: float
    iterations: int


class ContactTerm:
    """Probe-radius repulsion between non-bonded atom pairs with a movable atom."""

    def __init__(self, model, movable):
        self.movable = np.asarray(movable, dtype=bool)
        atoms = model.get_atoms()
        sites = model.get_sites_cart()
        bonds = model.get_restraints_manager().geometry.get_all_bond_proxies(
            sites_cart=sites)[0]
        self._neighbours = Helpers.getBondedNeighborLists(atoms, bonds)
        self._extra = _probe_atom_info(model, atoms, self._neighbours)
        info = [self._extra.getMappingFor(a) for a in atoms]
        self.radius = np.array([i.vdwRadius for i in info])
        self.donor_h = np.array([a.element_is_hydrogen() and i.isDonor
                                 for a, i in zip(atoms, info)], dtype=bool)
        self.acceptor = np.array([i.isAcceptor for i in info], dtype=bool)
        self._atoms = atoms
        self._excluded = {}
        self._boost = {}   # (i, j) -> factor on CONTACT_WEIGHT
        self.pairs = np.zeros((0, 2), dtype=int)
        self.contact = np.zeros(0)
        self.weight = np.zeros(0)

    def _excluded_for(self, i):
        if i not in self._excluded:
            atom = self._atoms[i]
            self._excluded[i] = {a.i_seq for a in Helpers.getAtomsWithinNBonds(
                atom, self._neighbours, self._extra, 0.25, 4, 3)}
        return self._excluded[i]

    def update_pairs(self, sites):
        """Track the pairs near contact at ``sites`` (N, 3)."""
        cutoff = 2 * self.radius.max() + _PAIR_MARGIN
        pairs = cKDTree(sites).query_pairs(r=cutoff, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            keep = self.movable[i] | self.movable[j]
            hbond = (self.donor_h[i] & self.acceptor[j]) | (self.donor_h[j] & self.acceptor[i])
            keep &= ~hbond
            d = np.linalg.norm(sites[i] - sites[j], axis=1)
            keep &= d < self.radius[i] + self.radius[j] + _PAIR_MARGIN
            pairs = pairs[keep]
        kept = [(i, j) for i, j in pairs if j not in self._excluded_for(i)
                and i not in self._excluded_for(j)]
        self.pairs = np.array(kept, dtype=int).reshape(-1, 2)
        self.contact = self.radius[self.pairs[:, 0]] + self.radius[self.pairs[:, 1]]
        self.weight = CONTACT_WEIGHT * np.array(
            [self._boost.get((int(i), int(j)), 1.0) for i, j in self.pairs])

    def escalate(self, sites):
        """Raise the weight of the tracked pairs still at (nearly) a clash at
        ``sites``; returns how many were raised (0: none left to raise)."""
        raised = 0
        for (i, j), overlap in zip(self.pairs, self.overlaps(sites)):
            key = (int(i), int(j))
            boost = self._boost.get(key, 1.0)
            if overlap >= _ESCALATE_OVERLAP and boost < _MAX_BOOST:
                self._boost[key] = min(boost * _ESCALATION, _MAX_BOOST)
                raised += 1
        return raised

    def overlaps(self, sites):
        if len(self.pairs) == 0:
            return np.zeros(0)
        d = np.linalg.norm(sites[self.pairs[:, 0]] - sites[self.pairs[:, 1]], axis=1)
        return self.contact - d

    def value_and_gradient(self, sites):
        grad = np.zeros_like(sites)
        if len(self.pairs) == 0:
            return 0.0, grad
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        v = sites[i] - sites[j]
        d = np.linalg.norm(v, axis=1)
        excess = np.clip(self.contact - TARGET_OVERLAP - d, 0.0, None)
        value = float((self.weight * excess ** 2).sum())
        # dE/dd = -2 w excess; dd/dsite_i = v/d
        g = (-2 * self.weight * excess / np.maximum(d, 1e-6))[:, None] * v
        np.add.at(grad, i, g)
        np.add.at(grad, j, -g)
        return value, grad


def _probe_atom_info(model, atoms, neighbours):
    """probe2's radii and H-bond roles for ``atoms``.

    getExtraAtomInfo needs the probe PHIL parameters: without them it stops
    at each atom before the H-bond types and leaves no donor or acceptor, so
    every polar H - acceptor pair would be pushed apart like a clash.  With
    explicit H the polar H, not their N/O/S, are the donors (as in probe2).
    """
    probe_params = iotbx.phil.parse(Helpers.probe_phil_parameters).extract().probe
    extra = Helpers.getExtraAtomInfo(model, neighbours, probePhil=probe_params).extraAtomInfo
    Helpers.fixupExplicitDonors(atoms, neighbours, extra)
    return extra


def clashes_involving(model, movable, overlap=CLASH_OVERLAP):
    """[(i_seq, j_seq, overlap)] of probe-radius clashes with a movable atom."""
    term = ContactTerm(model, movable)
    sites = model.get_sites_cart().as_numpy_array()
    term.update_pairs(sites)
    over = term.overlaps(sites)
    return [(int(i), int(j), float(o)) for (i, j), o in zip(term.pairs, over) if o >= overlap]


def regularise(model, movable, max_iterations=100):
    """Minimise library geometry + contact term over the movable sites, in place."""
    movable = np.asarray(movable, dtype=bool)
    index = np.nonzero(movable)[0]
    geometry = CctbxGeometry(model)
    contact = ContactTerm(model, movable)
    sites = model.get_sites_cart().as_numpy_array()

    def value_and_gradient(free):
        full = sites.copy()
        full[index] = free
        value, gradient = geometry.value_and_gradient(full)
        c_value, c_gradient = contact.value_and_gradient(full)
        return value + c_value, (gradient + c_gradient)[index]

    start = None
    iterations = 0
    per_round = max(1, max_iterations // _ROUNDS)
    for round_ in range(_ROUNDS + _ESCALATION_ROUNDS):
        contact.update_pairs(sites)
        if round_ >= _ROUNDS and not contact.escalate(sites):
            break
        result = lbfgs(value_and_gradient, sites[index], max_iterations=per_round,
                       tolerance=1e-6)
        start = result.start_value if start is None else start
        iterations += result.iterations
        sites[index] = result.sites_cart
    model.set_sites_cart(flex.vec3_double(sites))
    return Regularisation(len(index), start, result.value, iterations)
