"""qrefine.validation: published MolProbity numbers, backbone H-bonds, result."""

import glob
import json
import math
import os

import numpy as np
import pytest

from qrefine.errors import QRefineError

pytestmark = pytest.mark.usefixtures("test_data")

KEYS = ["bond_rmsd", "angle_rmsd", "rama_favored", "rama_allowed", "rama_outliers",
        "rama_z_whole", "rama_z_helix", "rama_z_sheet", "rama_z_loop",
        "rotamer_outliers", "cbeta_deviations", "clashscore", "hbonds", "cc_mask",
        "fsc_avg", "r_work", "r_free", "notes"]


def _read(structures, rel, **kwargs):
    from qrefine.model.io import read_model
    return read_model(os.path.join(structures, rel), **kwargs)


@pytest.fixture(scope="module")
def model_3j63(structures):
    return _read(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb")


@pytest.fixture(scope="module")
def result_3j63(model_3j63):
    from qrefine.validation import validate
    return validate(model_3j63)


@pytest.fixture
def helix(structures):
    # Built with nuclear X-H distances (MANIFEST 3.1).
    return _read(structures, "xray/1us0_helix/a87_99_h.pdb", use_neutron_distances=True)


# --- published values (MANIFEST 3.2, README_qrefine-cryo-EM.md "initial") ----

def test_3j63_published_values(result_3j63):
    r = result_3j63
    assert round(r.rama_favored, 2) == 85.39
    assert round(r.rama_outliers, 2) == 4.49
    assert round(r.rotamer_outliers, 2) == 5.48
    assert r.rama_favored + r.rama_allowed + r.rama_outliers == pytest.approx(100)
    # Heavy-atom geometry, MANIFEST: 0.0042 A / 1.216 deg with H excluded.
    assert r.bond_rmsd == pytest.approx(0.0042, abs=2e-4)
    assert r.angle_rmsd == pytest.approx(1.216, abs=2e-3)
    # mmtbx.clashscore2 keep_hydrogens=True gives 45.96 (original probe: 50.84).
    assert math.isfinite(r.clashscore)
    assert r.clashscore == pytest.approx(45.96, abs=0.1)
    # MANIFEST: Rama-Z whole -4.46; the model is helical, no sheet.
    assert r.rama_z_whole == pytest.approx(-4.46, abs=0.01)
    assert r.rama_z_helix is not None and r.rama_z_loop is not None
    assert r.rama_z_sheet is None
    assert any("Rama-Z sheet" in n for n in r.notes)
    assert r.cbeta_deviations == 0
    assert r.hbonds == 26   # 21 with the file's 0.86 A riding N-H (NH_LENGTH)


def test_5fn5_published_values(structures):
    from qrefine.validation import validate
    model = _read(structures, "cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb")
    r = validate(model, clashscore=False)
    assert round(r.rama_favored, 2) == 90.87
    assert round(r.rama_outliers, 2) == 2.07
    assert round(r.rotamer_outliers, 2) == 18.13
    assert r.rama_z_whole == pytest.approx(0.79, abs=0.01)
    assert r.clashscore is None
    assert any(n.startswith("clashscore: not computed") for n in r.notes)


# --- validate() behaviour ---------------------------------------------------

def test_validate_leaves_model_untouched_and_follows_new_coordinates(helix):
    from qrefine.validation import validate
    sites = helix.get_sites_cart().deep_copy()
    grm = helix.get_restraints_manager()
    first = validate(helix)
    assert helix.get_restraints_manager() is grm
    assert np.allclose(np.array(helix.get_sites_cart()), np.array(sites))
    assert first.hbonds == 9
    assert first.clashscore == pytest.approx(0.0)
    assert first.rama_favored == pytest.approx(100.0)
    assert first.rotamer_outliers is None  # poly-GLY
    assert first.cbeta_deviations is None

    # Move one heavy atom by 0.3 A and one H-bonded amide H away from its O.
    moved = sites.deep_copy()
    i_ca = _atom_index(helix, "A", 93, "CA")
    i_h = _atom_index(helix, "A", 95, "H")
    moved[i_ca] = tuple(np.array(moved[i_ca]) + (0.3, 0, 0))
    moved[i_h] = tuple(np.array(moved[i_h]) + _unit(moved[i_h], _xyz(helix, "A", 91, "O")) * 1.0)
    helix.set_sites_cart(moved)
    second = validate(helix)
    assert second.bond_rmsd > first.bond_rmsd + 1e-3
    assert second.hbonds == 8

    helix.set_sites_cart(sites)
    third = validate(helix)
    assert third.as_dict() == first.as_dict()


def test_no_hydrogens_gives_no_clashscore(helix):
    from qrefine.validation import validate
    heavy = helix.select(~helix.get_hd_selection())
    r = validate(heavy)
    assert r.clashscore is None
    assert r.hbonds is None
    assert any(n.startswith("clashscore:") and "no hydrogens" in n for n in r.notes)
    assert r.bond_rmsd is not None and r.rama_favored is not None


def test_data_statistics_are_copied(helix):
    from qrefine.validation import validate
    r = validate(helix, data_statistics={"r_work": 0.048, "r_free": 0.051},
                 clashscore=False)
    assert (r.r_work, r.r_free, r.cc_mask) == (0.048, 0.051, None)
    r = validate(helix, data_statistics={"cc_mask": 0.7}, clashscore=False)
    assert r.cc_mask == 0.7
    with pytest.raises(ValueError):
        validate(helix, data_statistics={"rfree": 0.2}, clashscore=False)


# --- ValidationResult -------------------------------------------------------

def test_as_dict_keys_and_json(result_3j63):
    from qrefine.validation import ValidationResult
    d = result_3j63.as_dict()
    assert list(d) == KEYS
    assert json.loads(json.dumps(d)) == d
    assert d["rama_z_sheet"] is None
    assert isinstance(d["hbonds"], int) and isinstance(d["cbeta_deviations"], int)

    empty = ValidationResult(clashscore=float("nan"))
    d = empty.as_dict()
    assert list(d) == KEYS
    assert d["clashscore"] is None and d["notes"] == []
    json.dumps(d)


def test_format_table(result_3j63):
    from qrefine.validation import ValidationResult
    one = result_3j63.format_table()
    assert "Clashscore" in one and "45.96" in one and "85.39" in one
    assert "R_free" not in one  # no data statistics, no data rows
    final = ValidationResult(bond_rmsd=0.003, r_free=0.25, notes=["clashscore: x"])
    two = result_3j63.format_table(final)
    header = two.splitlines()[0]
    assert "start" in header and "final" in header
    assert "0.0042" in two and "0.0030" in two and "0.2500" in two
    assert "final: clashscore: x" in two
    assert "n/a" in two


# --- backbone H-bonds -------------------------------------------------------

def test_helix_hbonds_are_the_i_i4_pairs(helix):
    from qrefine.validation.hbonds import backbone_hbonds, count_backbone_hbonds
    bonds = backbone_hbonds(helix)
    # README_qr-tests-1us0 / run_analyze.py: 9 H...O pairs within (1.7, 2.2) A.
    assert count_backbone_hbonds(helix) == 9
    assert {(b.donor, b.acceptor) for b in bonds} == {
        ("A %d" % i, "A %d" % (i - 4)) for i in range(91, 100)}
    assert all(1.7 < b.distance < 2.2 for b in bonds)
    # A hierarchy works as well as a model.
    assert backbone_hbonds(helix.get_hierarchy()) == bonds


def test_moving_an_h_makes_and_breaks_hbonds(helix):
    from qrefine.validation.hbonds import NH_LENGTH, backbone_hbonds
    h = helix.get_hierarchy().deep_copy()
    atoms = {(a.parent().parent().resseq_as_int(), a.name.strip()): a for a in h.atoms()}

    # Break: turn N-H(95) away from its acceptor O(91).
    h95, n95, o91 = atoms[(95, "H")], atoms[(95, "N")], atoms[(91, "O")]
    h95.xyz = tuple(np.array(n95.xyz) - _unit(o91.xyz, n95.xyz) * NH_LENGTH)
    pairs = {(b.donor, b.acceptor) for b in backbone_hbonds(h)}
    assert len(pairs) == 8 and ("A 95", "A 91") not in pairs

    # Make: an acceptor O 2.0 A from H(88) along its N-H direction.  The H is
    # taken at NH_LENGTH from N wherever the file puts it along that line.
    h88, n88, o93 = atoms[(88, "H")], atoms[(88, "N")], atoms[(93, "O")]
    u = _unit(h88.xyz, n88.xyz)          # N -> H
    for written in (0.86, 1.01, 1.2):   # N-H length in the file
        h88.xyz = tuple(np.array(n88.xyz) + u * written)
        o93.xyz = tuple(np.array(n88.xyz) + u * (NH_LENGTH + 2.0))
        found = {(b.donor, b.acceptor): b.distance for b in backbone_hbonds(h)}
        assert found[("A 88", "A 93")] == pytest.approx(2.0)

    # The window is strict: exactly 2.2 A is not a bond.
    o93.xyz = tuple(np.array(n88.xyz) + u * (NH_LENGTH + 2.2))
    assert ("A 88", "A 93") not in {(b.donor, b.acceptor) for b in backbone_hbonds(h)}

    # H(i+1)...O(i) across the peptide bond never counts, however close.
    h94, n94, o93 = atoms[(94, "H")], atoms[(94, "N")], atoms[(93, "O")]
    o93.xyz = tuple(np.array(n94.xyz) + _unit(h94.xyz, n94.xyz) * (NH_LENGTH + 1.9))
    assert ("A 94", "A 93") not in {(b.donor, b.acceptor) for b in backbone_hbonds(h)}


def test_hbond_count_does_not_depend_on_the_written_nh_length(helix):
    """Riding H at the X-ray N-H distance (0.86 A) count as at 1.01 A."""
    from qrefine.validation.hbonds import count_backbone_hbonds
    h = helix.get_hierarchy().deep_copy()
    by_key = {(a.parent().parent().resseq_as_int(), a.name.strip()): a for a in h.atoms()}
    for (resseq, name), atom in by_key.items():
        if name == "H":
            n = np.array(by_key[(resseq, "N")].xyz)
            atom.xyz = tuple(n + _unit(atom.xyz, n) * 0.86)
    assert count_backbone_hbonds(h) == count_backbone_hbonds(helix) == 9


def test_recovered_fraction(helix, structures):
    import iotbx.pdb
    from qrefine.validation.hbonds import recovered_fraction
    assert recovered_fraction(helix, helix) == 1.0
    # run_analyze.dat (Q|R): refine_cctbx, 0.3 A perturbation -> 90.00 %
    # recovered, with H where the files put them (nh_length=None); with the
    # H at 1.01 A from N (qrefine's rule) one more pair counts in one run.
    runs = sorted(glob.glob(os.path.join(
        structures, "xray/1us0_helix/final_results_cctbx/refine_cctbx/0.3/*_refined.pdb")))
    assert len(runs) == 10
    models = [iotbx.pdb.input(f).construct_hierarchy() for f in runs]
    as_written = [recovered_fraction(helix, m, nh_length=None) for m in models]
    assert 100 * np.mean(as_written) == pytest.approx(90.00, abs=0.005)
    fixed = [recovered_fraction(helix, m) for m in models]
    assert 100 * np.mean(fixed) == pytest.approx(91.11, abs=0.005)

    heavy = helix.select(~helix.get_hd_selection())
    with pytest.raises(QRefineError):
        recovered_fraction(heavy, helix)
    with pytest.raises(QRefineError):
        recovered_fraction(helix, heavy)


# --- helpers ------------------------------------------------------------------

def _atom_index(model, chain, resseq, name):
    for i, a in enumerate(model.get_hierarchy().atoms()):
        rg = a.parent().parent()
        if (rg.parent().id == chain and rg.resseq_as_int() == resseq
                and a.name.strip() == name):
            return i
    raise KeyError((chain, resseq, name))


def _xyz(model, chain, resseq, name):
    return model.get_hierarchy().atoms()[_atom_index(model, chain, resseq, name)].xyz


def _unit(to_xyz, from_xyz):
    """Unit vector pointing from ``from_xyz`` to ``to_xyz``."""
    v = np.array(to_xyz) - np.array(from_xyz)
    return v / np.linalg.norm(v)


def test_clashscore_reuses_probe_topology_only_for_the_same_atoms(helix):
    """A weight search validates one model at many sites: probe2's processed
    copy is kept for the model and gets its new sites (the same clashscore as
    a fresh copy), and is rebuilt when the atoms themselves change."""
    from qrefine.validation import validator
    sites = helix.get_sites_cart().deep_copy()
    assert validator.clashscore(helix) == pytest.approx(0.0)
    kept = validator._PROBE_MODELS[helix][0]
    # squeeze the helix along its axis: H atoms of stacked turns clash
    moved = np.array(sites)
    moved[:, 2] = moved[:, 2].mean() + 0.8 * (moved[:, 2] - moved[:, 2].mean())
    from scitbx.array_family import flex
    helix.set_sites_cart(flex.vec3_double(moved))
    squeezed = validator.clashscore(helix)
    assert validator._PROBE_MODELS[helix][0] is kept
    validator._PROBE_MODELS.pop(helix)
    assert validator.clashscore(helix) == squeezed > 10
    fresh = validator._PROBE_MODELS[helix][0]
    atoms = helix.get_hierarchy().atoms()
    atoms[0].set_occ(0.5)   # other atoms: a new copy
    validator.clashscore(helix)
    assert validator._PROBE_MODELS[helix][0] is not fresh
    atoms[0].set_occ(1.0)
    helix.set_sites_cart(sites)


def _full_clashscore(model, monkeypatch):
    """The clashscore with probe2 taking every atom as a source."""
    from qrefine.validation import validator
    with monkeypatch.context() as m:
        m.setattr(validator, "_clash_candidates", lambda copy: None)
        return validator.clashscore(model)


@pytest.mark.parametrize("amplitude", [0.0, 0.15, 0.3, 0.7])
def test_clash_candidates_give_probe2s_full_clashscore(helix, monkeypatch, amplitude):
    """Later calls on a model give probe2 only the atoms that could clash as
    sources; the count is the full run's, from a refined model to a torn one
    (0.7 A noise: bonds so long that probe2 scores pairs three bonds apart)."""
    from scitbx.array_family import flex
    from qrefine.validation import validator
    sites = helix.get_sites_cart().deep_copy()
    validator.clashscore(helix)  # the first call processes probe2's copy
    rng = np.random.default_rng(7)
    try:
        for _ in range(3):
            helix.set_sites_cart(flex.vec3_double(
                np.array(sites) + rng.normal(0.0, amplitude, (sites.size(), 3))))
            copy = validator._PROBE_MODELS[helix][0]
            filtered = validator.clashscore(helix)
            mask = validator._clash_candidates(copy)
            assert mask is not None
            if amplitude < 0.5:
                assert mask.sum() < sites.size()
            assert filtered == _full_clashscore(helix, monkeypatch)
    finally:
        helix.set_sites_cart(sites)


def test_no_clash_candidates_means_no_probe2_run(helix, monkeypatch):
    """Atoms spread far apart: no pair is close enough to clash, the
    clashscore is 0 and probe2 does not run."""
    from scitbx.array_family import flex
    from mmtbx.validation import clashscore2
    from qrefine.validation import validator
    sites = helix.get_sites_cart().deep_copy()
    validator.clashscore(helix)
    try:
        helix.set_sites_cart(flex.vec3_double(np.array(sites) * 3.0))
        with monkeypatch.context() as m:
            m.setattr(clashscore2.probe_clashscore_manager, "run_probe_clashscore",
                      lambda *a, **k: pytest.fail("probe2 ran"))
            assert validator.clashscore(helix) == 0.0
    finally:
        helix.set_sites_cart(sites)


def test_rama_z_and_hbonds_can_be_left_out(helix):
    """validate(..., rama_z=False, hbonds=False), as weight trials call it:
    those two are None with a note, the rest as in a full validation."""
    from qrefine.validation import NOT_GATING, validate
    full = validate(helix, clashscore=False).as_dict()
    part = validate(helix, clashscore=False, **NOT_GATING).as_dict()
    assert full["hbonds"] is not None and full["rama_z_whole"] is not None
    assert part["hbonds"] is None and all(part["rama_z_" + p] is None
                                          for p in ("whole", "helix", "sheet", "loop"))
    assert any(n.startswith("Rama-Z: not computed") for n in part["notes"])
    assert any(n.startswith("hbonds: not computed") for n in part["notes"])
    for key in ("bond_rmsd", "angle_rmsd", "rama_favored", "rama_outliers",
                "rotamer_outliers", "cbeta_deviations"):
        assert part[key] == full[key]



def test_clash_radii_follow_where_the_h_sit(structures, monkeypatch):
    """H at nuclear distances (QM-optimised) get probe2's nuclear van der
    Waals radii, H at electron-cloud distances (riding) the electron-cloud
    ones, whatever the file was read with.  Q|R's TeraChem 3j63_A model
    (C-H 1.08 A): 0.00 (published 0.7); probed with electron-cloud radii, as
    before this rule, 6.27; the start (C-H 0.97 A) keeps 45.96."""
    from qrefine.validation import validator
    tc = _read(structures, "cryo_em/3j63_A/qr3_results/TeraChem_HF61G_refinement/"
                           "3j63_tc_real_space_refined.pdb")
    assert validator.h_at_nuclear_distances(tc)
    assert validator.clashscore(tc) == pytest.approx(0.0, abs=0.05)
    with monkeypatch.context() as m:
        m.setattr(validator, "h_at_nuclear_distances", lambda model: False)
        assert validator.clashscore(tc) == pytest.approx(6.27, abs=0.05)
    start = _read(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb")
    assert not validator.h_at_nuclear_distances(start)
    neutron = _read(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb",
                    use_neutron_distances=True)
    assert validator.clashscore(neutron) == pytest.approx(36.21, abs=0.05)
    assert validator.clashscore(start) == pytest.approx(45.96, abs=0.05)



def test_geometry_is_measured_and_refined_against_the_cdl_of_the_current_conformation(
        structures, monkeypatch):
    """The backbone CDL ideals follow the model's (phi, psi): the start model
    moved onto Q|R's cctbx-tight 3j63_A coordinates gets the bond and angle
    RMSD of that file read afresh, not those against the start's CDL; and a
    CctbxGeometry cycle sets them for its own start sites, so its target is
    the fresh file's."""
    from qrefine.restraints.cctbx_geometry import CctbxGeometry
    from qrefine.validation import validator
    start = _read(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb")
    tight = _read(structures, "cryo_em/3j63_A/qr3_results/cctbx_tight_refinement/"
                              "3j63_cctbx_real_space_refined_tight.pdb")
    assert [a.id_str() for a in start.get_hierarchy().atoms()] == \
        [a.id_str() for a in tight.get_hierarchy().atoms()]
    sites = np.array(tight.get_sites_cart())
    reference = CctbxGeometry(tight)
    reference.start_cycle(sites)
    target = reference.value_and_gradient(sites)[0]
    with monkeypatch.context() as m:
        m.setattr(validator.cdl, "uses_cdl", lambda model: False)
        frozen = CctbxGeometry(start)   # the start's CDL, never refreshed
        frozen.start_cycle(sites)
        assert abs(frozen.value_and_gradient(sites)[0] - target) > 1e-3 * target
        start.set_sites_cart(tight.get_sites_cart())
        stale = validator._geometry_rmsd(start, [])
    restraints = CctbxGeometry(start)
    restraints.start_cycle(sites)
    assert restraints.value_and_gradient(sites)[0] == pytest.approx(target, rel=1e-9)
    fresh = validator._geometry_rmsd(tight, [])
    assert abs(stale[1] - fresh[1]) > 0.02
    assert validator._geometry_rmsd(start, []) == pytest.approx(fresh, abs=1e-9)
