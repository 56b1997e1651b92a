"""Backbone N-H...O=C hydrogen bonds from explicit H positions.

Criterion (the one of the Q|R 1us0 helix analysis, ``run_analyze.py`` in
qrefine/qr-tests-1us0): an amide H (atom name ``H``, or ``D``) and a carbonyl
O (atom name ``O``) of amino-acid residues are H-bonded when
``DMIN < d(H...O) < DMAX`` with DMIN = 1.7 A and DMAX = 2.2 A (strict).
No angle criterion.  N-terminal H1/H2/H3 and C-terminal OXT are not
considered, again as in that analysis.

The H is placed at ``NH_LENGTH`` = 1.01 A from its N along the N-H direction
of the file, whatever the N-H length there: riding H written at the X-ray
distance (0.86 A, cctbx's default) sit 0.15 A further from their O than
QM's or neutron H, and with the file's own positions 3j63_A's count fell
from 21 to 9 after a cctbx refinement only for that reason (26 -> 26 with
N-H at 1.01 A).  So the count says where the N-H points, not how long the
bond was written.

Pairs within one residue and H(i+1)...O(i) across a peptide bond are always
skipped; they are not inter-residue H-bonds.  In sane geometry they are
outside the window anyway (trans peptide O...H about 3.1 A, cis about 2.5 A),
so for good models the count equals the plain distance criterion.  Measured
on the shared test structures, the exclusion changes the count only for
(a) fully extended residues, where the intra-residue "C5" contact H(i)...O(i)
reaches 2.10-2.17 A (1 pair each in 3a5x, 3ds1; 3 in 3j8x_A), and (b) models
with amide H on the wrong side of N (1va7_complete, 3dtj_complete), where
H(i+1)...O(i) drops to 1.5 A (76 -> 42 and 57 -> 15 pairs).  a87_99_h: 9
either way.

:func:`intercopy_hbonds` counts, with its own criterion, the H-bonds between
the model and its crystal symmetry copies (any N/O donor and acceptor).

Pairs are identified by residue ids ("A 88", with ":B" appended for an
alternate conformer), so two models with the same atoms can be compared
(:func:`recovered_fraction`) whatever their atom order.
"""

from collections import namedtuple

import numpy as np
from scipy.spatial import cKDTree

from qrefine.errors import QRefineError
from qrefine.model.elements import element_of
from qrefine.restraints.symmetry import atom_labels, model_environment

DMIN = 1.7
DMAX = 2.2
NH_LENGTH = 1.01  # A: nuclear N-H distance (cctbx's neutron value)
# Upper limit for a C-N peptide bond (1.33 A ideal); generous for distorted models.
_PEPTIDE_CN_MAX = 2.0

HBond = namedtuple("HBond", "donor acceptor distance")
HBond.__doc__ = "Backbone H-bond: donor and acceptor residue ids, H...O distance (A)."

_Site = namedtuple("_Site", "res_id rg_index xyz partner")  # partner: N for H, C for O


def _hierarchy(model_or_hierarchy):
    if hasattr(model_or_hierarchy, "get_hierarchy"):
        return model_or_hierarchy.get_hierarchy()
    return model_or_hierarchy


def _backbone_sites(hierarchy, nh_length=NH_LENGTH):
    """Amide H and carbonyl O sites of the first model, with their N / C;
    each H at ``nh_length`` from its N (None: where the file puts it)."""
    donors, acceptors = [], []
    models = hierarchy.models()
    if len(models) == 0:
        return donors, acceptors
    rg_index = 0
    for chain in models[0].chains():
        for rg in chain.residue_groups():
            rg_index += 1
            base = "%s %s" % (chain.id.strip() or "_", rg.resid().strip())
            # name -> {altloc: xyz}; blank-altloc atoms are shared by all conformers.
            by_name = {}
            for ag in rg.atom_groups():
                for atom in ag.atoms():
                    by_name.setdefault(atom.name.strip(), {})[ag.altloc.strip()] = atom.xyz
            if "CA" not in by_name:  # not an amino acid (water, ligand, nucleotide)
                continue
            for h_name, partner_name, out in (("H", "N", donors), ("D", "N", donors),
                                              ("O", "C", acceptors)):
                for altloc, xyz in sorted(by_name.get(h_name, {}).items()):
                    partners = by_name.get(partner_name)
                    if not partners:
                        continue
                    partner = partners.get(altloc, partners.get("", next(iter(partners.values()))))
                    res_id = base + (":" + altloc if altloc else "")
                    if out is donors and nh_length is not None:
                        xyz = _at_nh_length(xyz, partner, nh_length)
                    out.append(_Site(res_id, rg_index, xyz, partner))
    return donors, acceptors


def _at_nh_length(h_xyz, n_xyz, nh_length):
    """The amide H moved along N->H to ``nh_length`` from N (unchanged if on N)."""
    bond = np.subtract(h_xyz, n_xyz)
    length = float(np.linalg.norm(bond))
    if length < 1e-6:
        return tuple(h_xyz)
    return tuple(np.asarray(n_xyz, dtype=float) + bond * (nh_length / length))


def backbone_hbonds(model_or_hierarchy, dmin=DMIN, dmax=DMAX, nh_length=NH_LENGTH):
    """List of :class:`HBond` (donor id, acceptor id, H...O distance), sorted
    by donor then acceptor.  Takes an ``mmtbx.model.manager`` or a hierarchy;
    uses the current coordinates of its first model.  ``nh_length=None``
    takes the H where the file puts it (the published Q|R analysis)."""
    donors, acceptors = _backbone_sites(_hierarchy(model_or_hierarchy), nh_length)
    if not donors or not acceptors:
        return []
    h_xyz = np.array([d.xyz for d in donors])
    o_xyz = np.array([a.xyz for a in acceptors])
    tree = cKDTree(o_xyz)
    found = []
    for i, near in enumerate(tree.query_ball_point(h_xyz, r=dmax)):
        d_site = donors[i]
        for j in near:
            a_site = acceptors[j]
            dist = float(np.linalg.norm(h_xyz[i] - o_xyz[j]))
            if not (dmin < dist < dmax):
                continue
            if a_site.rg_index == d_site.rg_index:
                continue
            if np.linalg.norm(np.subtract(d_site.partner, a_site.partner)) < _PEPTIDE_CN_MAX:
                continue  # H(i+1)...O(i) across the peptide bond
            found.append(HBond(d_site.res_id, a_site.res_id, dist))
    found.sort(key=lambda b: (b[0], b[1]))
    return found


def count_backbone_hbonds(model_or_hierarchy, dmin=DMIN, dmax=DMAX, nh_length=NH_LENGTH):
    return len(backbone_hbonds(model_or_hierarchy, dmin, dmax, nh_length))


def recovered_fraction(reference, model, dmin=DMIN, dmax=DMAX, nh_length=NH_LENGTH):
    """Fraction (0..1) of the reference's backbone H-bonds that ``model`` also
    has, pairs matched by (donor id, acceptor id).

    Both must carry amide H; the reference must have at least one H-bond.
    """
    ref_pairs = {(b.donor, b.acceptor)
                 for b in backbone_hbonds(reference, dmin, dmax, nh_length)}
    if not ref_pairs:
        raise QRefineError("reference model has no backbone N-H...O=C hydrogen bonds "
                           "(it needs amide H atoms)")
    donors, _ = _backbone_sites(_hierarchy(model))
    if not donors:
        raise QRefineError("model has no amide H atoms, so its backbone H-bonds "
                           "cannot be compared with the reference")
    pairs = {(b.donor, b.acceptor) for b in backbone_hbonds(model, dmin, dmax, nh_length)}
    return len(ref_pairs & pairs) / len(ref_pairs)


# -- hydrogen bonds between the model and its crystal symmetry copies ---------

INTERCOPY_HMAX = 2.5      # A, H...acceptor
INTERCOPY_MIN_ANGLE = 120.0  # degrees, donor-H...acceptor
_XH_MAX = 1.2             # A, an H bonded to N/O


def intercopy_hbonds(model, hmax=INTERCOPY_HMAX, min_angle=INTERCOPY_MIN_ANGLE):
    """Hydrogen bonds between the model and its crystal symmetry copies.

    Donors: H bonded (< 1.2 A) to N or O (backbone, side chains, waters,
    ligands); acceptors: N and O.  An H-bond is H...A <= ``hmax`` A with a
    D-H...A angle >= ``min_angle``.  Each H-bond of the crystal between two
    different copies is counted once per asymmetric unit: with its donor in
    the model and its acceptor in a copy (the same bond seen from the
    acceptor's side is the image of this one).  Returns a list of
    (donor atom label, acceptor atom label, operator label, H...A distance),
    sorted; needs explicit H and the model's crystal symmetry.
    """
    hierarchy = _hierarchy(model)
    elements = np.array([element_of(a) for a in hierarchy.atoms()])
    sites = np.array(hierarchy.atoms().extract_xyz())
    polar = np.isin(elements, ("N", "O"))
    h_idx = np.nonzero(elements == "H")[0]
    if not len(h_idx) or not polar.any():
        return []
    polar_idx = np.nonzero(polar)[0]
    d, j = cKDTree(sites[polar_idx]).query(sites[h_idx], distance_upper_bound=_XH_MAX)
    donor_h = h_idx[np.isfinite(d)]
    parent = polar_idx[j[np.isfinite(d)]]
    if not len(donor_h):
        return []
    env = model_environment(model, radius=hmax + 0.5, sites_cart=sites, caps=False)
    if not env.n_atoms:
        return []
    env_sites = env.sites(sites)
    acc = np.nonzero(np.isin(elements[env.source], ("N", "O")))[0]
    if not len(acc):
        return []
    labels = atom_labels(model)
    tree = cKDTree(env_sites[acc])
    found = []
    for h, p, near in zip(donor_h, parent, tree.query_ball_point(sites[donor_h], r=hmax)):
        for k in near:
            a = acc[k]
            u, v = sites[p] - sites[h], env_sites[a] - sites[h]
            cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
            if np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) < min_angle:
                continue
            found.append((labels[h], labels[env.source[a]],
                          env.operators[env.op_of_atom[a]].label,
                          float(np.linalg.norm(v))))
    found.sort()
    return found


def count_intercopy_hbonds(model, hmax=INTERCOPY_HMAX, min_angle=INTERCOPY_MIN_ANGLE):
    return len(intercopy_hbonds(model, hmax, min_angle))
