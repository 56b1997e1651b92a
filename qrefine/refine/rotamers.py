"""Rotamer outliers refitted into the map.

L-BFGS moves a side chain only downhill, so a rotamer outlier stays an
outlier: between it and a good rotamer lie eclipsed chi angles that every
restraint source, library or QM, makes a barrier.  Phenix's real-space
refinement fits rotamers for this reason, and the published 3j63_A models
show it: every run of the paper keeps the start's rotamer outliers.

Here each rotamer outlier (Top8000 score < 0.3 %, MolProbity's line) of a
single-conformer residue is turned to the candidate that fits the map best
among those that are not outliers, clash no more than the outlier (with
other residues and with its own backbone) and sit in at least the
outlier's density less ``DENSITY_TOLERANCE``.  Candidates: the Top8000
rotamers of mmtbx's side-chain table and the start's chis, each with chi1
and chi2 offsets of up to 30 degrees.  A candidate turns every atom beyond
each chi bond, H included, rigidly, so bond lengths and angles stay as they
were; the refinement that follows settles the rest.  Only maps: the
density is the map value at the side chain's heavy atoms (sigma units of
the box, cubic B-spline).
"""

import itertools

import numpy as np
from scipy.spatial import cKDTree
from scitbx.array_family import flex

from qrefine.model.elements import CONTACT_RADII, element_of
from qrefine.validation.validator import rotamer_evaluator

OUTLIER = 0.003      # MolProbity's Top8000 rotamer outlier line
FAVORED = 0.02       # and its favored line
# sigma the fitted side chain may sit lower in the map than the outlier did:
# at 3-4 A a side chain's density is weak (0.5-2 sigma on 3j63_A), and the
# outlier is often the model of noise.
DENSITY_TOLERANCE = 0.3
# an atom pair overlapping by more than this (A) is a clash; radii near
# probe2's (H at nuclear distances 1.17, O 1.40), so that what the fit calls
# clash-free, the clashscore does too
CLASH_OVERLAP = 0.4  # MolProbity's clash line
CLASH_PENALTY = 0.5  # sigma of density one clash is worth
FAVORED_BONUS = 0.2  # sigma of density a favored (not only allowed) rotamer is worth
_BACKBONE = {"N", "CA", "C", "O", "CB", "H", "HA", "HA2", "HA3", "OXT", "H1", "H2", "H3"}


class RotamerFit(object):
    """One refitted residue."""

    def __init__(self, residue, score_before, score_after, density_before, density_after,
                 clashes_before, clashes_after):
        self.residue = residue
        self.score_before, self.score_after = score_before, score_after
        self.density_before, self.density_after = density_before, density_after
        self.clashes_before, self.clashes_after = clashes_before, clashes_after

    def as_dict(self):
        return {"residue": self.residue,
                "rotamer_score_before": round(self.score_before, 4),
                "rotamer_score_after": round(self.score_after, 4),
                "density_before": round(self.density_before, 3),
                "density_after": round(self.density_after, 3),
                "clashes_before": self.clashes_before, "clashes_after": self.clashes_after}

    def __str__(self):
        return ("%s: rotamer score %.1f%% -> %.1f%%, side-chain density %.2f -> %.2f sigma, "
                "clashes %d -> %d" % (self.residue, 100 * self.score_before,
                                      100 * self.score_after, self.density_before,
                                      self.density_after, self.clashes_before,
                                      self.clashes_after))


def fit_rotamer_outliers(model, sites, density_at):
    """(new sites, [RotamerFit], [residues left as outliers, with why]).

    ``sites``: (n, 3) Cartesian sites of ``model``'s atoms; ``density_at``:
    a function of (m, 3) sites giving the map value at each.  The model is
    not changed.
    """
    evaluator = rotamer_evaluator()
    hierarchy = model.get_hierarchy().deep_copy()
    atoms = hierarchy.atoms()
    atoms.set_xyz(flex.vec3_double(np.asarray(sites, dtype=float)))
    xyz = np.array(sites, dtype=float)
    elements = [element_of(a) for a in atoms]
    radii = np.array([CONTACT_RADII.get(e, 1.7) for e in elements])
    polar_h = _polar_hydrogens(hierarchy, elements)
    acceptor = np.array([e in ("N", "O") for e in elements])
    tree = cKDTree(xyz)
    fitted, kept = [], []
    for rg in hierarchy.residue_groups():
        if len(rg.atom_groups()) != 1:
            continue
        residue = rg.atom_groups()[0]
        name = residue.resname.strip().upper()
        if name in ("GLY", "ALA", "PRO"):
            continue
        score = _score(evaluator, residue)
        if score is None or score >= OUTLIER:
            continue
        label = "%s %s%s" % (name, rg.parent().id.strip(), rg.resid().strip())
        chis = _ChiTorsions(evaluator, residue, elements)
        if not chis.ok:
            kept.append("%s: its chi angles cannot be set (atoms missing)" % label)
            continue
        index = chis.index
        side = np.zeros(len(index), dtype=bool)
        side[list(chis.moved_by[0])] = True
        moving = side & np.array([elements[i] != "H" for i in index])
        # own atoms a side-chain atom can clash with (probe2: MET SD against
        # its own C and O): not side chain, more than three bonds away
        intra = (chis.hops[side] > 3) & ~side[None, :]
        start = xyz[index].copy()

        d0 = float(np.mean(density_at(start[moving])))
        c0 = int(_clash_counts(start[None, side], index[side], index, tree, radii, acceptor,
                               polar_h, intra)[0])
        found = chis.candidates(evaluator, name)
        if not found:
            kept.append("%s: no rotamer that is not an outlier" % label)
            continue
        values = np.array([v for v, _ in found])
        stack = chis.set_many(start, [angles for _, angles in found])
        d = density_at(stack[:, moving].reshape(-1, 3)).reshape(len(found), -1).mean(axis=1)
        c = _clash_counts(stack[:, side], index[side], index, tree, radii, acceptor,
                          polar_h, intra)
        key = d - CLASH_PENALTY * c + np.where(values >= FAVORED, FAVORED_BONUS, 0.0)
        # the best of the candidates that clash no more than the outlier and
        # sit in no less density than it, less the tolerance
        acceptable = (c <= c0) & (d >= d0 - DENSITY_TOLERANCE)
        if not acceptable.any():
            k = int(np.argmax(key))
            kept.append("%s: the best rotamer fits worse (density %.2f -> %.2f sigma, "
                        "clashes %d -> %d)" % (label, d0, d[k], c0, c[k]))
            continue
        k = int(np.argmax(np.where(acceptable, key, -np.inf)))
        value, candidate = float(values[k]), stack[k]
        d, c = float(d[k]), int(c[k])
        xyz[index] = candidate
        tree = cKDTree(xyz)
        fitted.append(RotamerFit(label, score, value, d0, d, c0, c))
    return xyz, fitted, kept


# chi offsets (degrees) tried around each library rotamer and the start: the
# map, not the library's mean, decides where in the rotamer's well a side
# chain sits.  Only chi1 and chi2, which move the most atoms furthest (with
# chi3 and chi4 too a lysine had 13,000 candidates).
_OFFSETS_NEAR = (-30.0, -15.0, 0.0, 15.0, 30.0)
_OFFSETS_FAR = (-15.0, 0.0, 15.0)


class _ChiTorsions(object):
    """The chi angles of one residue: which atoms each turns, and how to set
    them (rigid rotations about the chi bonds, bond geometry unchanged)."""

    def __init__(self, evaluator, residue, elements):
        self.residue = residue
        self.index = np.array(residue.atoms().extract_i_seq(), dtype=int)
        names = [a.name.strip() for a in residue.atoms()]
        where = dict((n, k) for k, n in enumerate(names))
        xyz = residue.atoms().extract_xyz().as_numpy_array()
        aa = residue.resname.strip().lower()
        aa = "met" if aa == "mse" else aa
        angles = evaluator.sidechain_angles
        self.torsions, self.moved_by, self.ok = [], [], True
        bonds = _bonds(xyz, [elements[i] for i in self.index])
        self.hops = _hops(bonds)
        for angle in angles.anglesForAA.get(aa, []):
            if not angle.startswith("chi"):
                continue
            # a name may list alternatives: " SD ;SD  " (MET)
            four = [[n.strip() for n in spec.split(";") if n.strip() in where]
                    for spec in angles.atomsForAngle[aa + "." + angle]]
            if not all(four):
                self.ok = False
                return
            k = [where[n[0]] for n in four]
            self.torsions.append(k)
            self.moved_by.append(_beyond(bonds, k[1], k[2]))
        self.ok = bool(self.torsions)

    def measure(self, xyz):
        return [_dihedral(*xyz[k]) for k in self.torsions]

    def set(self, start, angles):
        """Sites of the residue with its chis at ``angles`` (degrees)."""
        return self.set_many(start, [angles])[0]

    def set_many(self, start, angles):
        """(K, n, 3) sites of the residue, one copy per row of ``angles``
        (K chi sets, degrees); all K turned at once, chi by chi."""
        angles = np.asarray(angles, dtype=float).reshape(len(angles), -1)
        xyz = np.repeat(start[None], len(angles), axis=0)
        for t, ((a, b, c, d), moved) in enumerate(zip(self.torsions, self.moved_by)):
            delta = np.radians(angles[:, t] - _dihedrals(xyz[:, a], xyz[:, b], xyz[:, c],
                                                         xyz[:, d]))
            axis = xyz[:, c] - xyz[:, b]
            axis /= np.linalg.norm(axis, axis=1)[:, None]
            m = np.array(sorted(moved), dtype=int)
            v = xyz[:, m] - xyz[:, c][:, None]
            cos, sin = np.cos(delta)[:, None, None], np.sin(delta)[:, None, None]
            k = axis[:, None, :]
            xyz[:, m] = (v * cos + np.cross(k, v) * sin
                         + k * (v * k).sum(axis=2)[:, :, None] * (1.0 - cos)
                         + xyz[:, c][:, None])
        return xyz

    def candidates(self, evaluator, name):
        """[(Top8000 score, chis)] not outliers: library rotamers and the
        start, each with offsets."""
        aa = "met" if name.lower() == "mse" else name.lower()
        bases = list((evaluator.sidechain_angles.get_rotamers(aa) or {}).values())
        bases.append(self.measure(self.residue.atoms().extract_xyz().as_numpy_array()))
        n = len(self.torsions)
        grids = [_OFFSETS_NEAR if k < 2 else _OFFSETS_FAR for k in range(n)]
        seen, out = set(), []
        for base in bases:
            base = list(base)[:n]
            if len(base) < n:
                continue
            for offsets in itertools.product(*grids):
                angles = [((b + o + 180.0) % 360.0) - 180.0 for b, o in zip(base, offsets)]
                key = tuple(int(round(a / 5.0)) for a in angles)
                if key in seen:
                    continue
                seen.add(key)
                value = evaluator.evaluate(aa, angles)
                if value is not None and value >= OUTLIER:
                    out.append((value, angles))
        return out


def _bonds(xyz, elements):
    """Intra-residue covalent bonds by distance (1.9 A, 1.3 A with an H)."""
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
    h = np.array([e == "H" for e in elements])
    limit = np.where(h[:, None] | h[None], 1.3, 1.9)
    np.fill_diagonal(d, np.inf)
    return [set(np.flatnonzero(row < lim).tolist()) for row, lim in zip(d, limit)]


def _hops(bonds):
    """(n, n) bonds on the shortest path between two atoms (n + 1: none)."""
    n = len(bonds)
    hops = np.full((n, n), n + 1, dtype=int)
    for a in range(n):
        hops[a, a], shell, depth = 0, [a], 0
        while shell:
            depth += 1
            shell = [b for s in shell for b in bonds[s] if hops[a, b] > depth]
            for b in shell:
                hops[a, b] = depth
    return hops


def _beyond(bonds, b, c):
    """Atoms reached from c without passing b: what turning b-c moves."""
    seen, todo = {c}, [c]
    while todo:
        for n in bonds[todo.pop()]:
            if n != b and n not in seen:
                seen.add(n)
                todo.append(n)
    seen.discard(c)
    return seen


def _dihedrals(p0, p1, p2, p3):
    """Dihedral angles (degrees) of (K, 3) point sets."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1, axis=-1)[..., None]
    v = b0 - (b0 * b1).sum(-1)[..., None] * b1
    w = b2 - (b2 * b1).sum(-1)[..., None] * b1
    return np.degrees(np.arctan2((np.cross(b1, v) * w).sum(-1), (v * w).sum(-1)))


def _dihedral(p0, p1, p2, p3):
    return float(_dihedrals(p0, p1, p2, p3))


def _score(evaluator, residue):
    """Top8000 rotamer score (0..1) of ``residue``, None where it has none."""
    name = residue.resname.strip().lower()
    if name == "mse":
        name = "met"
    try:
        chis = evaluator.chi_angles(residue)
        if chis is None or None in chis:
            return None
        return evaluator.evaluate(name, chis)
    except Exception:  # incomplete side chain: nothing to score
        return None


def _polar_hydrogens(hierarchy, elements):
    """Mask of H bonded (within 1.2 A) to N or O: their contacts with N/O
    acceptors are H-bonds, not clashes."""
    xyz = hierarchy.atoms().extract_xyz().as_numpy_array()
    is_h = np.array([e == "H" for e in elements])
    is_no = np.array([e in ("N", "O") for e in elements])
    mask = np.zeros(len(xyz), dtype=bool)
    if is_h.any() and is_no.any():
        tree = cKDTree(xyz[is_no])
        d, _ = tree.query(xyz[is_h], distance_upper_bound=1.2)
        mask[np.flatnonzero(is_h)[np.isfinite(d)]] = True
    return mask


_NEIGHBOURS = 40     # atoms within 3.6 A of a side-chain atom, its own residue's included


def _clash_counts(stack, index, residue, tree, radii, acceptor, polar_h, intra):
    """For each of (K, m, 3) candidate sites of the side-chain atoms
    ``index``: the pairs that overlap by more than CLASH_OVERLAP (polar H to
    N/O ``acceptor``, an H-bond, excepted down to 1.6 A), with an atom outside
    ``residue`` or one of its own that ``intra`` (m, len(residue)) allows."""
    k, m = stack.shape[:2]
    local = np.full(len(radii), -1)
    local[residue] = np.arange(len(residue))
    d, j = tree.query(stack.reshape(-1, 3), k=_NEIGHBOURS, distance_upper_bound=3.6)
    n = len(radii)
    ok = j < n
    j = np.where(ok, j, 0)
    i = np.repeat(np.tile(index, k), _NEIGHBOURS).reshape(-1, _NEIGHBOURS)
    pos = np.repeat(np.tile(np.arange(m), k), _NEIGHBOURS).reshape(-1, _NEIGHBOURS)
    own = local[j] >= 0
    ok &= ~own | intra[pos, np.where(own, local[j], 0)]
    ok &= radii[i] + radii[j] - d > CLASH_OVERLAP
    hbond = ((polar_h[i] & acceptor[j]) | (polar_h[j] & acceptor[i])) & (d > 1.6)
    ok &= ~hbond
    return ok.reshape(k, m * _NEIGHBOURS).sum(axis=1)
