"""The residue interaction graph that clustering cuts into pieces.

Nodes are the residues of the first model (amino acids, ligands, waters,
ions: every residue group), edges join residues that interact, weighted by
how much a cut through them would perturb a fragment calculation:

=====================  =======  ===============================================
interaction            weight   detected as
=====================  =======  ===============================================
covalent link          10       atoms closer than the sum of covalent radii
                                + 0.45 A (peptide bonds, links)
disulfide              15       the same test between two S atoms: cutting one
                                would cap two thiols, so it costs more than a
                                peptide bond (a ring through it is then cut
                                at its peptide bonds)
metal coordination     10       the same test with a metal atom; never capped
hydrogen bond          2 each   H (on N/O) ... N/O acceptor <= 2.5 A; in a model
                                without H, N/O ... N/O <= 3.5 A
close contact          0.1 each heavy-atom pairs within ``contact_cutoff``,
                                at most 1.0 per residue pair
=====================  =======  ===============================================

Covalent links between residues are kept as atom pairs (:attr:`links`):
these are the bonds a fragment boundary may cut and capping must close.
Everything is computed from coordinates alone (no monomer library), and pairs
are sorted before use, so the same model always gives the same graph.
"""

import collections

from ase.data import atomic_numbers, covalent_radii
from iotbx.pdb import common_residue_names_get_class
import numpy as np
from scipy.spatial import cKDTree

from qrefine.errors import QRefineError
from qrefine.model.elements import element_of

COVALENT = 10.0
DISULFIDE = 15.0
METAL = 10.0
HBOND = 2.0
CONTACT = 0.1
CONTACT_MAX = 1.0
COVALENT_TOLERANCE = 0.45   # A beyond the sum of covalent radii
HBOND_H_CUTOFF = 2.5        # A, H ... acceptor
HBOND_HEAVY_CUTOFF = 3.5    # A, donor ... acceptor when the model has no H

NONMETALS = {"H", "B", "C", "N", "O", "F", "SI", "P", "S", "CL", "AS", "SE", "BR",
              "TE", "I", "HE", "NE", "AR", "KR", "XE"}
_POLAR = {"N", "O"}


def is_amino_acid(resname):
    return common_residue_names_get_class(resname) in (
        "common_amino_acid", "modified_amino_acid", "d_amino_acid")


def is_amino_acid_link(ea, eb):
    """Whether a bond between atoms of elements ``ea`` and ``eb`` (upper
    case) of two amino acids can be covalent: a peptide (C-N) or disulfide
    (S-S) link."""
    return {ea, eb} == {"C", "N"} or (ea == "S" and eb == "S")


def _plausible_link(residues, res_of, ea, eb, a, b):
    """Whether a short inter-residue contact can be a covalent bond.  Two
    amino acids bond only through a peptide (C-N) or disulfide (S-S) link;
    any other short contact between them is a clash in the model (5fn5 chain
    C: GLU 106 OE1 ... ARG 109 O at 1.27 A), and capping it as a bond would
    give its fragments an odd electron count."""
    if ea in ("H", "D") or eb in ("H", "D"):
        return True  # H contacts are handled (and never linked) by the caller
    ra, rb = residues[int(res_of[a])], residues[int(res_of[b])]
    if not (is_amino_acid(ra.resname) and is_amino_acid(rb.resname)):
        return True  # ligands, nucleotides, metals: trust the distance
    return is_amino_acid_link(ea, eb)


class Residue(collections.namedtuple("Residue", "index label resname atoms")):
    """One node: ``index`` in the graph, ``label`` (``"A  12 "`` = chain,
    resseq, icode), ``resname`` and ``atoms`` (model atom indices, ascending)."""


class ResidueGraph:
    """Residues, weighted edges and inter-residue covalent links of a model.

    ``residues``: [:class:`Residue`]; ``elements``: element symbol per model
    atom (upper case); ``residue_of_atom``: residue index per model atom;
    ``edges``: {(i, j): weight} with i < j; ``links``: (n, 2) int array of
    inter-residue covalent bonds (model atom indices, not metal bonds);
    ``kinds``: {(i, j): set of "covalent"/"disulfide"/"metal"/"hbond"/"contact"}.
    """

    def __init__(self, residues, elements, edges, links, kinds):
        self.residues = residues
        self.elements = elements
        self.edges = edges
        self.links = links
        self.kinds = kinds
        self.residue_of_atom = np.empty(len(elements), dtype=int)
        for r in residues:
            self.residue_of_atom[r.atoms] = r.index

    @property
    def n_residues(self):
        return len(self.residues)

    def weight_matrix(self):
        """Dense symmetric (n, n) array of edge weights."""
        n = self.n_residues
        w = np.zeros((n, n))
        for (i, j), x in self.edges.items():
            w[i, j] = w[j, i] = x
        return w

    def atoms_of(self, residue_indices):
        """Model atom indices of the given residues, ascending."""
        if len(residue_indices) == 0:
            return np.zeros(0, dtype=int)
        return np.sort(np.concatenate([self.residues[i].atoms for i in residue_indices]))


def model_residues(model):
    """(residues, elements, symbols) of the first model of ``model``.

    ``model``: an ``mmtbx.model.manager`` or an ``iotbx.pdb`` hierarchy.
    Atom indices are the hierarchy's ``i_seq`` (the order of
    ``model.get_sites_cart()``).  Alternate conformations are refused: a
    fragment calculation needs one set of atoms.
    """
    hierarchy = model.get_hierarchy() if hasattr(model, "get_hierarchy") else model
    models = hierarchy.models()
    if not models:
        raise QRefineError("the model has no atoms to fragment")
    if len(models) > 1:
        raise QRefineError("fragmentation needs a single-model file; this one has %d models"
                           % len(models))
    n_atoms = hierarchy.atoms_size()
    elements = [None] * n_atoms
    residues = []
    for chain in models[0].chains():
        for rg in chain.residue_groups():
            if len(rg.atom_groups()) > 1:
                raise QRefineError(
                    "residue %s %s%s has alternate conformations; QM fragments need one "
                    "conformer (keep one with finalise or pdbtools)"
                    % (chain.id, rg.resseq.strip(), rg.icode.strip()))
            idx = []
            for atom in rg.atoms():
                elements[atom.i_seq] = element_of(atom)
                idx.append(atom.i_seq)
            label = "%s %s%s" % (chain.id.strip() or "_", rg.resseq.strip(), rg.icode.strip())
            residues.append(Residue(len(residues), label, rg.atom_groups()[0].resname.strip(),
                                    np.array(sorted(idx), dtype=int)))
    if any(e is None for e in elements):
        raise QRefineError("the hierarchy's atom indices are not in order; "
                           "call hierarchy.atoms().reset_i_seq() first")
    return residues, elements


def residue_graph(model, sites_cart=None, contact_cutoff=4.0, links=None, residues=None):
    """The :class:`ResidueGraph` of ``model`` at ``sites_cart`` (default: the
    model's own coordinates).

    ``links``: the inter-residue covalent bonds to use, as (n, 2) atom
    indices (e.g. ``graph.links`` of the starting model), instead of finding
    them from distances.  Re-clustering a distorted model must keep its
    covalent topology: a stretched bond missed would leave a fragment with
    an odd electron count.

    ``residues``: ``(residues, elements)`` of a system that is not a model
    (e.g. :func:`extended_residues`, the model with its symmetry copies);
    ``sites_cart`` is then required and ``model`` is not used.
    """
    if residues is None:
        residues, elements = model_residues(model)
    else:
        residues, elements = residues
        if sites_cart is None:
            raise QRefineError("residue_graph needs sites_cart with residues=")
    if sites_cart is None:
        sites_cart = model.get_sites_cart() if hasattr(model, "get_sites_cart") \
            else model.get_hierarchy().atoms().extract_xyz()
    xyz = np.array(sites_cart, dtype=float).reshape(-1, 3)
    if len(xyz) != len(elements):
        raise QRefineError("%d sites for %d atoms" % (len(xyz), len(elements)))
    res_of = np.empty(len(elements), dtype=int)
    for r in residues:
        res_of[r.atoms] = r.index
    elements = np.array(elements)
    radii = np.array([covalent_radii[atomic_numbers.get(e.capitalize(), 0)] for e in elements])
    is_h = elements == "H"
    is_metal = np.array([e not in NONMETALS for e in elements])
    has_h = bool(is_h.any())

    tree = cKDTree(xyz)
    reach = max(contact_cutoff, 2 * radii.max() + COVALENT_TOLERANCE, HBOND_HEAVY_CUTOFF)
    pairs = tree.query_pairs(reach, output_type="ndarray")
    pairs = pairs[res_of[pairs[:, 0]] != res_of[pairs[:, 1]]]
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    d = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)

    # Covalent bonds of every atom (intra-residue too), for H-bond donors.
    all_pairs = tree.query_pairs(2 * radii.max() + COVALENT_TOLERANCE, output_type="ndarray")
    all_d = np.linalg.norm(xyz[all_pairs[:, 0]] - xyz[all_pairs[:, 1]], axis=1)
    bonded = all_d < radii[all_pairs[:, 0]] + radii[all_pairs[:, 1]] + COVALENT_TOLERANCE
    bonded &= ~(is_h[all_pairs[:, 0]] & is_h[all_pairs[:, 1]])
    h_parent = {}
    for a, b in all_pairs[bonded]:
        if is_h[a] and not is_h[b]:
            h_parent.setdefault(int(a), int(b))
        elif is_h[b] and not is_h[a]:
            h_parent.setdefault(int(b), int(a))

    weights = collections.defaultdict(float)
    contact = collections.defaultdict(float)
    kinds = collections.defaultdict(set)
    given = None
    if links is not None:
        given = set(tuple(sorted((int(a), int(b)))) for a, b in np.asarray(links).reshape(-1, 2))
    links = []
    if given is not None:
        for a, b in sorted(given):
            key = tuple(sorted((int(res_of[a]), int(res_of[b]))))
            disulfide = elements[a] == "S" and elements[b] == "S"
            weights[key] += DISULFIDE if disulfide else COVALENT
            kinds[key].add("disulfide" if disulfide else "covalent")
            links.append((a, b))
    for (a, b), dist in zip(pairs, d):
        a, b = int(a), int(b)
        key = tuple(sorted((int(res_of[a]), int(res_of[b]))))
        ea, eb = elements[a], elements[b]
        if given is not None and (a, b) in given:
            continue
        if dist < radii[a] + radii[b] + COVALENT_TOLERANCE and not (is_h[a] and is_h[b]) \
                and (given is None or is_metal[a] or is_metal[b]) \
                and _plausible_link(residues, res_of, ea, eb, a, b):
            if is_metal[a] or is_metal[b]:
                weights[key] += METAL
                kinds[key].add("metal")
            elif not (is_h[a] or is_h[b]):
                disulfide = ea == "S" and eb == "S"
                weights[key] += DISULFIDE if disulfide else COVALENT
                kinds[key].add("disulfide" if disulfide else "covalent")
                links.append((a, b))
            continue
        if has_h:
            for h, acc in ((a, b), (b, a)):
                if (is_h[h] and elements[acc] in _POLAR and dist <= HBOND_H_CUTOFF
                        and h in h_parent and elements[h_parent[h]] in _POLAR):
                    weights[key] += HBOND
                    kinds[key].add("hbond")
        elif ea in _POLAR and eb in _POLAR and dist <= HBOND_HEAVY_CUTOFF:
            weights[key] += HBOND
            kinds[key].add("hbond")
        if not (is_h[a] or is_h[b]) and dist <= contact_cutoff:
            contact[key] += CONTACT
            kinds[key].add("contact")
    for key, x in contact.items():
        weights[key] += min(x, CONTACT_MAX)
    edges = {k: round(weights[k], 6) for k in sorted(weights)}
    links = np.array(links, dtype=int).reshape(-1, 2)
    return ResidueGraph(residues, [str(e) for e in elements], edges, links,
                        {k: kinds[k] for k in sorted(kinds)})


def extended_residues(model, environment):
    """``(residues, elements)`` of the model followed by its symmetry copies
    (a :class:`~qrefine.restraints.symmetry.SymmetryEnvironment`): model residues keep
    their indices and atom indices; copy residue ``c`` is node ``R + c``
    with atoms ``N + ...`` in the order of ``environment.sites``, labelled
    with its operator, its H caps included (they are part of the copy)."""
    residues, elements = model_residues(model)
    n_model, n_res = len(elements), len(residues)
    out = list(residues)
    for c, (r, k) in enumerate(environment.copies):
        res = residues[r]
        atoms = n_model + np.nonzero(environment.copy_of_atom == c)[0]
        out.append(Residue(n_res + c, "%s [%s]" % (res.label, environment.operators[k].label),
                           res.resname, atoms))
    return out, list(elements) + environment.symbols(elements)
