"""Weight trials on part of the model (qrefine.weights.part, weights.part_atoms)."""

import os

import numpy as np
import pytest

from common import refine_3j63, xtb_or_skip
from qrefine.weights import part as trial_part

pytestmark = pytest.mark.usefixtures("test_data")


def test_part_is_a_ball_of_whole_residues_around_the_centre():
    """A chain of 20 residues of 10 atoms along x: the part is the residues
    nearest the middle one, whole, until the atom count is reached."""
    residues = [np.arange(10 * i, 10 * (i + 1)) for i in range(20)]
    rng = np.random.default_rng(0)
    sites = rng.normal(0.0, 0.3, (200, 3))
    sites[:, 0] += np.repeat(np.arange(20) * 3.8, 10)
    chosen = trial_part.part_residues(residues, sites, 45)
    assert list(chosen) == [8, 9, 10, 11, 12]
    mask = trial_part.part_mask(residues, chosen, 200)
    assert mask.sum() == 50 and mask[80:130].all()
    # never more residues than there are
    assert len(trial_part.part_residues(residues, sites, 10 ** 6)) == 20
    assert trial_part.wanted(4001, 1000) and not trial_part.wanted(4000, 1000)
    assert not trial_part.wanted(10 ** 6, 0)


def test_held_still_atoms_do_not_move_in_a_minimisation(structures):
    """L-BFGS on library restraints + 3j63_A's map with the gradient held at
    zero outside the part moves the part and leaves every other atom exactly
    where it was."""
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.model.io import read_model
    from qrefine.refine.macro_cycles import refine
    from qrefine.restraints.cctbx_geometry import CctbxGeometry
    d = os.path.join(structures, "cryo_em", "3j63_A")
    model = read_model(os.path.join(d, "3j63_A_box_complete.pdb"))
    data = RealSpaceTarget(model, read_map(os.path.join(d, "3j63_A_box.ccp4")), 3.8)
    sites = np.array(model.get_sites_cart())
    residues = trial_part.residue_atoms(model.get_hierarchy())
    chosen = trial_part.part_residues(residues, sites, 300)
    mask = trial_part.part_mask(residues, chosen, len(sites))
    restraints = trial_part.HeldStill(CctbxGeometry(model), mask)
    held_data = trial_part.HeldStill(data, mask)
    assert held_data.kind == "map"  # everything but the gradient is the term's
    value, grad = restraints.value_and_gradient(sites)
    assert not grad[~mask].any() and grad[mask].any()
    refined, _ = refine(sites, restraints, held_data, macro_cycles=1, max_iterations=30,
                        weight=5.0)
    assert np.array_equal(refined[~mask], sites[~mask])
    assert np.abs(refined[mask] - sites[mask]).max() > 0.01


def test_part_qm_restraints_compute_only_the_part(helix_model):
    """part_as_one: the part is one fragment (its buffer around it), and with
    a buffer holding the whole helix its atoms get the whole model's
    gradient (up to GFN-FF's dependence on the atom order); every other
    atom gets zero.  part with clusters: only the
    clusters holding a part residue are computed."""
    xtb_or_skip()
    from qrefine.fragments.graph import residue_graph
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.restraints.qm import QMRestraints
    sites = np.array(helix_model.get_sites_cart())
    residues = trial_part.residue_atoms(helix_model.get_hierarchy())
    chosen = trial_part.part_residues(residues, sites, 30)
    mask = trial_part.part_mask(residues, chosen, len(sites))
    g = residue_graph(helix_model)
    whole = QMRestraints([e.capitalize() for e in g.elements], "xtb", "GFN-FF", charge=0)
    reference = whole.value_and_gradient(sites)[1]
    one = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", buffer=30.0, part=chosen,
                               part_as_one=True)
    grad = one.value_and_gradient(sites)[1]
    assert len(one.fragments) == 1 and list(one.clusters[0]) == list(chosen)
    assert not grad[~mask].any()
    # the same atoms in another order: GFN-FF's gradient depends on the
    # order a little (measured max 0.12 kcal/mol/A, gradient RMS 31)
    assert np.abs(grad[mask] - reference[mask]).max() < 0.5
    clustered = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=4,
                                     buffer=3.0, part=chosen[:1])
    clustered.value_and_gradient(sites)
    assert len(clustered.fragments) == 1 and chosen[0] in clustered.clusters[0]


def test_qr_refine_trials_on_a_part(tmp_path, structures, test_data):
    """weights.part_atoms=300 on 3j63_A (1436 atoms), GFN-FF: the trials move
    a part of at least 300 atoms with QM restraints for it alone, the
    summary and log say so, and the final model is refined whole."""
    xtb_or_skip()
    code, summary = refine_3j63(tmp_path, structures, test_data, "part", "restraints=qm",
                                "engine=xtb", "method=GFN-FF", "weights.part_atoms=300",
                                "weights.grid_below=0", "weights.grid_above=1",
                                "weights.extend_below=0", "weights.trial_macro_cycles=1",
                                "refine.max_iterations=15", "refine.macro_cycles=1")
    assert code == 0
    part = summary["weight_search_part"]
    assert 300 <= part["atoms"] < 400 and part["qm_restraints_for_part"] is True
    assert summary["weight_search"] and summary["chosen_weight"] is not None
    log = (tmp_path / "part.log").read_text()
    assert "trials refine a part of the model" in log
    # The final refinement is of the whole model, and its result stands: no
    # geometry guard may hand back the part trial, whose atoms outside the
    # part are where they started (5ly6 got clashscore 67 that way).
    assert summary["geometry_guard"] is None
    import iotbx.pdb
    start, final = (iotbx.pdb.input(path).atoms().extract_xyz().as_numpy_array() for path in (
        os.path.join(structures, "cryo_em", "3j63_A", "3j63_A_box_complete.pdb"),
        str(tmp_path / "part_refined.pdb")))
    moved = np.linalg.norm(final - start, axis=1) > 0.002
    assert moved.sum() > part["atoms"] + 500
    # library restraints: trials refine the whole model
    code, summary = refine_3j63(tmp_path, structures, test_data, "whole",
                                "weights.part_atoms=300", "weights.grid_below=0",
                                "weights.grid_above=0", "weights.extend_below=0",
                                "refine.macro_cycles=1")
    assert code == 0 and summary["weight_search_part"] is None
