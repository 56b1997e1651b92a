"""Crystal symmetry for QM restraints: the environment of the asymmetric unit.

In a crystal each molecule touches its symmetry copies.  The environment of
the model is every symmetry copy (space-group operator combined with a
lattice translation) of every whole residue that has an atom within
``radius`` A of a model atom (the Q|R #2 / AQuaRef super-cell truncation).
Copies are rigid images of the model: environment sites are always computed
from the current model sites through their operators,
``x_copy = R x_model + t`` (Cartesian ``R``, ``t``), so they move with the
model.  Which residue copies belong to the environment is decided once, at
construction; refinement moves atoms by a fraction of the radius, so only
residues at its edge could change membership.

Gradient rule ("direct").  The refinement target per asymmetric unit is the
lattice energy per ASU, ``U = U_intra + 1/2 sum_g U_inter(ASU, g ASU)``.
Moving the model moves every copy with it, and the two halves of each
ASU-copy interaction then contribute equally, so
``dU/dx = dU_intra/dx + sum_g dU_inter/dx_ASU``: exactly the gradient on the
*model* atoms of a calculation of model + environment.  This is also the
force on an atom of the central copy of an infinite crystal.  Gradients on
copy atoms are therefore not added: mapping them back (``R^T g``,
:meth:`SymmetryEnvironment.map_gradient`) would add copy-copy and
copy-internal forces that U does not contain, and copy atoms at the edge of
the environment see a truncated surrounding.  Measured (tests/test_symmetry.py):
with a pair potential of range 5 A and radius 5 A, the direct gradient
equals the central copy's in an explicit P1 super-cell to 1e-14
kcal/mol/A (5bmi P2_1, 1aie P422), while 1/2 (direct + mapped) and
direct + mapped are off by 10^2-10^3; with GFN-FF on the whole 5c11 model
(I432, radius 6 A against 10 A) the direct rule's largest per-atom error
was 8.3 kcal/mol/A (RMS 1.15), the two others' 62 and 188 (RMS 12 and 33).
``GRADIENT_RULES`` keeps them selectable for such comparisons.  (GFN-FF is
itself not local and depends on the atom order, see README "Crystal
symmetry".)  Against a complete environment (every residue of an explicit
super-cell within 30 A, GFN2-xTB in GBSA water, small asymmetric units of
uncharged residues), the direct gradient at radius 24 A agrees to 0.027
kcal/mol/A per atom on 5c11 (I432) and 0.016 on 3ds1 (P4_12_12); at the
default 6 A, to 0.25 and 0.052.

Caps.  A copied residue whose covalent neighbour is not copied with the
same operator gets an H cap on that bond, placed as in
:mod:`qrefine.fragments.capping` in the model's frame and carried by the
operator, so the environment is closed-shell and moves rigidly too.

Special positions.  An atom on (or within ``MIN_SPECIAL_DISTANCE`` of) a
special position coincides with its own symmetry copy; a QM calculation of
the two overlapping atoms is meaningless, so it is refused with a
:class:`~qrefine.errors.QRefineError` naming the atom (remove the atom, or
refine with ``symmetry.expand=false``).
"""

import collections

from ase.data import atomic_numbers, covalent_radii
from cctbx import crystal
import numpy as np
from scipy.spatial import cKDTree
from scitbx.array_family import flex

from qrefine.errors import QRefineError
from qrefine.fragments.capping import cap_distance, cap_jacobians
from qrefine.fragments.graph import COVALENT_TOLERANCE, NONMETALS, is_amino_acid, is_amino_acid_link
from qrefine.model.elements import element_of
from qrefine.restraints.base import RestraintSource
from qrefine.restraints.qm import PathValue

DEFAULT_RADIUS = 6.0  # A; symmetry.radius, see README "Crystal symmetry"
MIN_SPECIAL_DISTANCE = 0.5  # A, as cctbx's min_distance_sym_equiv
GRADIENT_RULES = ("direct", "half", "sum")


class Operator(collections.namedtuple("Operator", "rotation translation label")):
    """A Cartesian symmetry operator ``x' = rotation @ x + translation``;
    ``label``: the cctbx operator in xyz notation plus the lattice shift."""


class SymmetryEnvironment:
    """Symmetry copies of residues around the model.

    ``crystal_symmetry``: a ``cctbx.crystal.symmetry``; ``sites_cart``: (N, 3)
    model sites; ``residues``: a list of model atom index arrays, one per
    residue (copies are made of whole residues); ``radius``: A; ``labels``:
    optional atom labels for error messages; ``elements``: element symbol per
    model atom.  With ``elements``, covalent bonds between residues of the
    model are found from distances (as in
    :mod:`qrefine.fragments.graph`; metal bonds excepted), and a copied
    residue whose bonded neighbour is not copied with the same operator gets
    an H cap on that bond (:mod:`qrefine.fragments.capping` distances), so the
    environment has no dangling bonds.  Without ``elements``, no caps.
    ``resnames`` (optional, one per residue): lets clashes between amino
    acids be told from bonds (:func:`inter_residue_bonds`).

    Attributes: ``operators`` ([:class:`Operator`], identity excluded);
    ``copies`` ([(residue index, operator index)]); per environment atom:
    ``source`` (the model atom it is an image of; for a cap, the capped
    atom), ``cap_outside`` (for a cap, the model atom toward which it
    points; -1 for real atoms), ``cap_distance`` and ``op_of_atom``
    (operator index); ``copy_of_atom`` (index into ``copies``).  Atoms are
    laid out copy by copy: the residue's atoms (ascending), then its caps.
    """

    def __init__(self, crystal_symmetry, sites_cart, residues, radius=DEFAULT_RADIUS,
                 labels=None, elements=None, resnames=None):
        if radius <= 0:
            raise QRefineError("symmetry.radius must be > 0 A, got %s" % radius)
        self.radius = float(radius)
        self.crystal_symmetry = crystal_symmetry
        sites = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
        self.n_model = len(sites)
        uc = crystal_symmetry.unit_cell()
        orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)
        frac = np.array(uc.fractionalization_matrix()).reshape(3, 3)
        check_special_positions(crystal_symmetry, sites, labels)
        residue_of = np.full(len(sites), -1, dtype=int)
        for k, atoms in enumerate(residues):
            residue_of[np.asarray(atoms, dtype=int)] = k
        if (residue_of < 0).any():
            raise QRefineError("every model atom must belong to a residue")
        tree = cKDTree(sites)
        sites_frac = sites @ frac.T
        lo_m, hi_m = sites_frac.min(axis=0), sites_frac.max(axis=0)
        # Fractional reach of the radius along each axis: radius / plane spacing.
        reach = self.radius * np.linalg.norm(frac, axis=1)
        self.operators = []
        self.copies = []
        for op in crystal_symmetry.space_group().all_ops():
            r_frac = np.array(op.r().as_double()).reshape(3, 3)
            t_frac = np.array(op.t().as_double())
            image = sites_frac @ r_frac.T + t_frac
            lo_i, hi_i = image.min(axis=0), image.max(axis=0)
            first = np.ceil(lo_m - reach - hi_i).astype(int)
            last = np.floor(hi_m + reach - lo_i).astype(int)
            identity = op.is_unit_mx()
            rot = orth @ r_frac @ frac
            for shift in _shifts(first, last):
                if identity and not any(shift):
                    continue
                trans = orth @ (t_frac + shift)
                copy = sites @ rot.T + trans
                d, _ = tree.query(copy, distance_upper_bound=self.radius)
                near = np.unique(residue_of[np.isfinite(d)])
                if len(near) == 0:
                    continue
                label = "%s%s" % (op.as_xyz(), "" if not any(shift) else
                                  " +(%d,%d,%d)" % tuple(int(s) for s in shift))
                self.operators.append(Operator(rot, trans, label))
                k = len(self.operators) - 1
                self.copies.extend((int(r), k) for r in near)
        links = inter_residue_bonds(sites, residue_of, elements, resnames) \
            if elements is not None else np.zeros((0, 2), dtype=int)
        bonded = collections.defaultdict(list)  # residue -> [(inside, outside atom)]
        for a, b in links:
            bonded[residue_of[a]].append((int(a), int(b)))
            bonded[residue_of[b]].append((int(b), int(a)))
        present = set(self.copies)
        source, outside, dist, op_of, copy_of = [], [], [], [], []
        for c, (r, k) in enumerate(self.copies):
            atoms = np.sort(np.asarray(residues[r], dtype=int))
            caps = sorted((a, b) for a, b in bonded[r] if (int(residue_of[b]), k) not in present)
            source.append(atoms)
            outside.append(np.full(len(atoms), -1, dtype=int))
            dist.append(np.zeros(len(atoms)))
            if caps:
                source.append(np.array([a for a, _ in caps], dtype=int))
                outside.append(np.array([b for _, b in caps], dtype=int))
                dist.append(np.array([cap_distance(elements[a]) for a, _ in caps]))
            op_of.append(np.full(len(atoms) + len(caps), k, dtype=int))
            copy_of.append(np.full(len(atoms) + len(caps), c, dtype=int))

        def joined(parts, dtype):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        self.source = joined(source, int)
        self.cap_outside = joined(outside, int)
        self.cap_distance = joined(dist, float)
        self.op_of_atom = joined(op_of, int)
        self.copy_of_atom = joined(copy_of, int)
        self.is_cap = self.cap_outside >= 0
        if self.operators:
            self._rot = np.array([o.rotation for o in self.operators])
            self._trans = np.array([o.translation for o in self.operators])
        else:
            self._rot = np.zeros((0, 3, 3))
            self._trans = np.zeros((0, 3))
        self._check_overlaps(sites, labels)

    @property
    def n_atoms(self):
        """Environment atoms, caps included."""
        return len(self.source)

    @property
    def n_caps(self):
        return int(self.is_cap.sum())

    def symbols(self, model_symbols):
        """Element symbols of the environment atoms (caps are H)."""
        out = [model_symbols[i] for i in self.source]
        for i in np.nonzero(self.is_cap)[0]:
            out[i] = "H"
        return out

    def _model_frame(self, x):
        """Positions before the operator: model sites, or cap positions."""
        pos = x[self.source]
        caps = self.is_cap
        if caps.any():
            u = x[self.cap_outside[caps]] - pos[caps]
            pos[caps] += self.cap_distance[caps, None] * u / np.linalg.norm(
                u, axis=1)[:, None]
        return pos

    def sites(self, sites_cart):
        """(n_atoms, 3) environment sites for model sites ``sites_cart``."""
        x = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
        rot = self._rot[self.op_of_atom]
        return np.einsum("nij,nj->ni", rot, self._model_frame(x)) + self._trans[self.op_of_atom]

    def map_gradient(self, gradient, sites_cart=None):
        """Gradient on environment atoms carried back onto the model atoms
        they are images of (``R^T g``, summed per model atom): the chain rule
        for sites that move rigidly with the model.  Caps go through their
        Jacobian onto the two atoms of the capped bond, which needs the
        model ``sites_cart``.  (N, 3)."""
        g = np.asarray(gradient, dtype=float).reshape(-1, 3)
        rot = self._rot[self.op_of_atom]
        back = np.einsum("nji,nj->ni", rot, g)
        out = np.zeros((self.n_model, 3))
        real = ~self.is_cap
        np.add.at(out, self.source[real], back[real])
        if self.is_cap.any():
            if sites_cart is None:
                raise QRefineError("map_gradient needs the model sites to carry cap gradients")
            x = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
            for i in np.nonzero(self.is_cap)[0]:
                a, b = self.source[i], self.cap_outside[i]
                jx, jy = cap_jacobians(x[a], x[b], self.cap_distance[i])
                out[a] += jx.T @ back[i]
                out[b] += jy.T @ back[i]
        return out

    def _check_overlaps(self, sites, labels):
        """Refuse copies that overlap model atoms (disorder across a
        symmetry axis, or an atom near a special position)."""
        if not self.n_atoms:
            return
        env = self.sites(sites)
        real = np.nonzero(~self.is_cap)[0]
        d, i = cKDTree(sites).query(env[real], distance_upper_bound=MIN_SPECIAL_DISTANCE)
        bad = np.nonzero(np.isfinite(d))[0]
        if len(bad):
            j = int(bad[0])
            raise QRefineError(
                "atom %s overlaps the symmetry copy (%s) of atom %s (%.2f A apart); QM "
                "restraints with crystal symmetry need atoms off special positions and no "
                "disorder across symmetry axes: remove one, or set symmetry.expand=false"
                % (_label(labels, int(i[j])), self.operators[self.op_of_atom[real[j]]].label,
                   _label(labels, int(self.source[real[j]])), d[j]))

    def summary(self):
        return {"radius": self.radius, "operators": len(self.operators),
                "residue_copies": len(self.copies), "environment_atoms": int(self.n_atoms),
                "caps": self.n_caps}


def inter_residue_bonds(sites, residue_of, elements, resnames=None):
    """(n, 2) covalent bonds between atoms of different residues: distance
    below the sum of covalent radii + 0.45 A, as in
    :mod:`qrefine.fragments.graph`.  Never to an H or a metal: an H bonds
    within its own residue, so a short inter-residue contact of an H is a
    clash (3ds1: ALA A 228 H ... HOH S 88 O at 1.26 A).  With ``resnames``
    (per residue), two amino acids bond only by a peptide or disulfide
    link, as in the fragment graph."""
    el = np.array([str(e).strip().upper() for e in elements])
    radii = np.array([covalent_radii[atomic_numbers.get(e.capitalize(), 0)] for e in el])
    pairs = cKDTree(sites).query_pairs(2 * radii.max() + COVALENT_TOLERANCE,
                                       output_type="ndarray")
    if not len(pairs):
        return np.zeros((0, 2), dtype=int)
    a, b = pairs[:, 0], pairs[:, 1]
    d = np.linalg.norm(sites[a] - sites[b], axis=1)
    metal = np.array([e not in NONMETALS for e in el])
    keep = ((residue_of[a] != residue_of[b]) & (d < radii[a] + radii[b] + COVALENT_TOLERANCE)
            & (el[a] != "H") & (el[b] != "H") & ~metal[a] & ~metal[b])
    if resnames is not None:
        amino = np.array([is_amino_acid(n) for n in resnames])
        both = amino[residue_of[a]] & amino[residue_of[b]]
        link = np.array([is_amino_acid_link(x, y) for x, y in zip(el[a], el[b])], dtype=bool)
        keep &= ~both | link
    out = np.sort(pairs[keep], axis=1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _shifts(first, last):
    for a in range(first[0], last[0] + 1):
        for b in range(first[1], last[1] + 1):
            for c in range(first[2], last[2] + 1):
                yield np.array((a, b, c), dtype=float)


def _label(labels, i):
    return labels[i] if labels is not None else "#%d" % i


def check_special_positions(crystal_symmetry, sites_cart, labels=None):
    """Raise :class:`QRefineError` naming the first atom on a special
    position (cctbx site symmetry with ``MIN_SPECIAL_DISTANCE``)."""
    settings = crystal.special_position_settings(
        crystal_symmetry, min_distance_sym_equiv=MIN_SPECIAL_DISTANCE)
    frac = crystal_symmetry.unit_cell().fractionalize(
        flex.vec3_double(np.asarray(sites_cart, dtype=float).reshape(-1, 3)))
    table = settings.site_symmetry_table(sites_frac=frac)
    special = list(table.special_position_indices())
    if special:
        i = int(special[0])
        raise QRefineError(
            "atom %s is on a special position (site symmetry %s; %d such atom(s)); QM "
            "restraints with crystal symmetry cannot compute an atom and its own copy: "
            "remove it, or set symmetry.expand=false"
            % (_label(labels, i), table.get(i).special_op_simplified(), len(special)))


def atom_labels(model):
    """Short labels ("A 12 CA") per model atom, for error messages."""
    hierarchy = model.get_hierarchy() if hasattr(model, "get_hierarchy") else model
    return ["%s %s %s" % (a.parent().parent().parent().id.strip() or "_",
                          a.parent().parent().resid().strip(), a.name.strip())
            for a in hierarchy.atoms()]


def model_environment(model, radius=DEFAULT_RADIUS, sites_cart=None, caps=True):
    """The :class:`SymmetryEnvironment` of an ``mmtbx.model.manager``;
    ``caps``: close bonds cut at the environment's edge with H."""
    cs = model.crystal_symmetry()
    if cs is None or cs.unit_cell() is None or cs.space_group() is None:
        raise QRefineError("the model has no crystal symmetry (CRYST1); symmetry.expand "
                           "needs the unit cell and space group")
    if sites_cart is None:
        sites_cart = model.get_sites_cart().as_numpy_array()
    elements = None
    if caps:
        hierarchy = model.get_hierarchy() if hasattr(model, "get_hierarchy") else model
        elements = [element_of(a) for a in hierarchy.atoms()]
    return SymmetryEnvironment(cs, sites_cart, residue_atoms(model), radius,
                               labels=atom_labels(model), elements=elements,
                               resnames=residue_names(model))


def residue_names(model):
    """Residue name of each residue of :func:`residue_atoms` (its first
    conformer's)."""
    hierarchy = model.get_hierarchy() if hasattr(model, "get_hierarchy") else model
    return [rg.atom_groups()[0].resname.strip()
            for chain in hierarchy.models()[0].chains() for rg in chain.residue_groups()]


def residue_atoms(model):
    """Model atom indices (i_seq) of each residue group of the first model
    (alternate conformers included: a copy is always a whole residue)."""
    hierarchy = model.get_hierarchy() if hasattr(model, "get_hierarchy") else model
    models = hierarchy.models()
    if len(models) != 1:
        raise QRefineError("crystal symmetry needs a single-model file; this one has %d "
                           "models" % len(models))
    return [np.array(sorted(a.i_seq for a in rg.atoms()), dtype=int)
            for chain in models[0].chains() for rg in chain.residue_groups()]


class SymmetryQMRestraints(RestraintSource):
    """Whole-model QM restraints in the crystal: the engine computes the
    model plus its :class:`SymmetryEnvironment`, and the model's gradient
    is taken by ``rule`` (default ``"direct"``, see the module docstring;
    ``"half"``: 1/2 (direct + mapped copies), ``"sum"``: direct + mapped).

    ``qm``: a :class:`~qrefine.restraints.qm.QMRestraints` over the
    model's atoms followed by the environment's atoms.  The value is the
    energy of that whole system (kcal/mol, relative to the first), whose
    gradient with respect to the model sites, copies moving with it, is
    direct + mapped ("sum" rule); with the other rules the value is the line
    integral of the gradient (:class:`~qrefine.restraints.qm.PathValue`),
    so that value and gradient agree along search lines.  ``charge`` and
    ``multiplicity``: the model's own (reported as ``.charge`` and
    ``.multiplicity``; default: the whole system's).
    """

    def __init__(self, qm, environment, rule="direct", charge=None, multiplicity=None):
        if rule not in GRADIENT_RULES:
            raise QRefineError("gradient rule must be one of %s, got %r"
                               % (", ".join(GRADIENT_RULES), rule))
        self.qm = qm
        self.environment = environment
        self.rule = rule
        # The model's own charge and multiplicity (for logs); the engine
        # computes the whole system with qm.charge and qm.multiplicity.
        self.charge = qm.charge if charge is None else int(charge)
        self.multiplicity = qm.multiplicity if multiplicity is None else int(multiplicity)
        self.method = qm.method
        self.requests = 0
        self._last_sites = None
        self._last_grad = None
        self._value = 0.0
        self._path = PathValue()

    def gradient(self, sites_cart):
        """(value of the whole system in kcal/mol, (N, 3) gradient by rule)."""
        sites = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
        n = len(sites)
        full = np.concatenate([sites, self.environment.sites(sites)])
        value, g = self.qm.value_and_gradient(full)
        direct = g[:n]
        if self.rule == "direct":
            return value, direct
        mapped = self.environment.map_gradient(g[n:], sites)
        return value, (direct + mapped) * (0.5 if self.rule == "half" else 1.0)

    def value_and_gradient(self, sites_cart):
        sites = np.array(sites_cart, dtype=float).reshape(-1, 3)
        self.requests += 1
        if self._last_sites is not None and np.array_equal(sites, self._last_sites):
            return self._value, self._last_grad.copy()
        energy, grad = self.gradient(sites)
        self._value = energy if self.rule == "sum" else self._path.value(sites, grad)
        self._last_sites = sites
        self._last_grad = grad
        return self._value, grad.copy()

    def describe(self):
        return "%s, the model with its crystal symmetry copies (%d atoms)" % (
            self.qm.describe(), self.environment.n_atoms)

    def symmetry_summary(self):
        return self.environment.summary()

    def timing(self):
        out = dict(self.qm.timing())
        out["engine_requests"] = self.requests
        return out

    def close(self):
        self.qm.close()
