"""qrefine.refine.rotamers: rotamer outliers refitted into the map."""


import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("test_data")


def _outliers(model, sites):
    """Labels of the rotamer outliers of ``model`` at ``sites``."""
    from scitbx.array_family import flex
    from qrefine.refine.rotamers import OUTLIER, _score
    from qrefine.validation.validator import rotamer_evaluator
    h = model.get_hierarchy().deep_copy()
    h.atoms().set_xyz(flex.vec3_double(sites))
    ev = rotamer_evaluator()
    out = []
    for rg in h.residue_groups():
        s = _score(ev, rg.atom_groups()[0])
        if s is not None and s < OUTLIER:
            out.append("%s %s%s" % (rg.atom_groups()[0].resname, rg.parent().id,
                                    rg.resid().strip()))
    return out


def test_outliers_of_3j63_move_into_density_with_their_bonds_intact(map_3j63):
    from qrefine.refine.rotamers import DENSITY_TOLERANCE, fit_rotamer_outliers
    model, target = map_3j63
    sites = model.get_sites_cart().as_numpy_array()
    before = _outliers(model, sites)
    assert before == ["LEU A12", "LEU A28", "GLU A34", "VAL A72"]  # MolProbity: 5.48 %
    new, fitted, kept = fit_rotamer_outliers(model, sites, target.density_at)
    assert [f.residue for f in fitted] == before and kept == []
    assert _outliers(model, new) == []
    assert np.array_equal(model.get_sites_cart().as_numpy_array(), sites)  # model untouched
    for f in fitted:
        assert f.density_after >= f.density_before - DENSITY_TOLERANCE
        assert f.clashes_after <= f.clashes_before
    # only side-chain atoms of the fitted residues moved, rigidly about chi bonds
    moved = np.flatnonzero(np.linalg.norm(new - sites, axis=1) > 1e-9)
    atoms = model.get_hierarchy().atoms()
    names = {(atoms[i].parent().resname, atoms[i].parent().parent().resseq.strip(),
              atoms[i].name.strip()) for i in moved}
    assert {(r, s) for r, s, _ in names} == {("LEU", "12"), ("LEU", "28"), ("GLU", "34"),
                                             ("VAL", "72")}
    assert not {n for _, _, n in names} & {"N", "CA", "C", "O", "CB", "H", "HA"}
    grm = model.get_restraints_manager().geometry
    from scitbx.array_family import flex
    b0 = grm.get_all_bond_proxies()[0].deltas(flex.vec3_double(sites))
    b1 = grm.get_all_bond_proxies()[0].deltas(flex.vec3_double(new))
    assert np.abs(np.array(b1) - np.array(b0)).max() < 1e-9


def test_chis_are_set_exactly(map_3j63):
    from qrefine.refine.rotamers import _ChiTorsions
    from qrefine.validation.validator import rotamer_evaluator
    model, _ = map_3j63
    h = model.get_hierarchy()
    elements = [a.element.strip().upper() for a in h.atoms()]
    lys = [rg.atom_groups()[0] for rg in h.residue_groups()
           if rg.atom_groups()[0].resname == "LYS"][0]
    chis = _ChiTorsions(rotamer_evaluator(), lys, elements)
    assert chis.ok and len(chis.torsions) == 4
    start = lys.atoms().extract_xyz().as_numpy_array()
    target = [-65.0, 175.0, 60.0, -170.0]
    new = chis.set(start, target)
    assert np.allclose(chis.measure(new), target, atol=1e-6)
    d0 = np.linalg.norm(start[:, None] - start[None], axis=2)
    d1 = np.linalg.norm(new[:, None] - new[None], axis=2)
    bonded = d0 < 1.9
    assert np.abs(d1 - d0)[bonded].max() < 1e-9


def test_fitting_is_for_map_refinements_only():
    from types import SimpleNamespace as NS
    from qrefine.refine.protocol import fits_rotamers

    class Map(object):
        def density_at(self, sites):
            return sites[:, 0]

    def params(fit=True, mode="refine"):
        return NS(refine=NS(fit_rotamers=fit), mode=mode)
    assert fits_rotamers(params(), Map())
    assert not fits_rotamers(params(fit=False), Map())
    assert not fits_rotamers(params(mode="opt"), Map())
    assert not fits_rotamers(params(), None)
    assert not fits_rotamers(params(), object())  # reflections: no density anywhere


def test_a_side_chain_clashing_with_its_own_backbone_is_counted(map_3j63):
    """MET SD turned into its own carbonyl: probe2 calls that a clash, and so
    must the fit (a MET A81 fit once put SD 0.76 A into its own C)."""
    from scipy.spatial import cKDTree
    from qrefine.model.elements import CONTACT_RADII
    from qrefine.refine.rotamers import _ChiTorsions, _clash_counts, _polar_hydrogens
    from qrefine.validation.validator import rotamer_evaluator
    model, _ = map_3j63
    h = model.get_hierarchy()
    xyz = model.get_sites_cart().as_numpy_array()
    elements = [a.element.strip().upper() for a in h.atoms()]
    met = [rg.atom_groups()[0] for rg in h.residue_groups() if rg.resseq.strip() == "81"][0]
    chis = _ChiTorsions(rotamer_evaluator(), met, elements)
    names = [a.name.strip() for a in met.atoms()]
    sd, c = names.index("SD"), names.index("C")
    start = xyz[chis.index]
    grid = [(a, b, 180.0) for a in range(-180, 180, 10) for b in range(-180, 180, 10)]
    stack = chis.set_many(start, grid)
    closest = int(np.argmin(np.linalg.norm(stack[:, sd] - stack[:, c], axis=1)))
    assert np.linalg.norm(stack[closest, sd] - stack[closest, c]) < 3.0  # 1.8 + 1.7 - 0.4 = 3.1
    side = np.zeros(len(names), dtype=bool)
    side[list(chis.moved_by[0])] = True
    radii = np.array([CONTACT_RADII.get(e, 1.7) for e in elements])
    polar = _polar_hydrogens(h, elements)
    acceptor = np.array([e in ("N", "O") for e in elements])
    tree = cKDTree(xyz)
    sites = stack[[closest]][:, side]
    intra = (chis.hops[side] > 3) & ~side[None, :]
    with_own = _clash_counts(sites, chis.index[side], chis.index, tree, radii, acceptor,
                             polar, intra)[0]
    without = _clash_counts(sites, chis.index[side], chis.index, tree, radii, acceptor,
                            polar, np.zeros_like(intra))[0]
    assert with_own > without
    assert chis.hops[sd, c] == 4  # SD-CG-CB-CA-C
