"""qr.refine end to end on real data: outputs, summary contents, fit improves."""

import json
import os

import pytest

from qrefine.scripts.refine import main

VALIDATION_KEYS = {"bond_rmsd", "angle_rmsd", "rama_favored", "rama_outliers", "rama_z_whole",
                   "rotamer_outliers", "cbeta_deviations", "clashscore", "hbonds", "cc_mask",
                   "r_work", "r_free"}


def load_summary(out, prefix):
    with open(os.path.join(out, prefix + "_summary.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_xray_refinement_of_the_helix(tmp_path, structures):
    d = os.path.join(structures, "xray/1us0_helix")
    model = os.path.join(d, "perturbed/1.5/0.pdb")
    out = str(tmp_path)
    assert main([model, os.path.join(d, "data.mtz"), "refine.macro_cycles=3",
                 "output.prefix=helix", "output.dir=%s" % out]) == 0
    for name in ("helix_refined.pdb", "helix_refined.cif", "helix.log", "helix_summary.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    s = load_summary(out, "helix")
    assert VALIDATION_KEYS <= set(s["start"]) and VALIDATION_KEYS <= set(s["final"])
    assert s["final"]["cc_mask"] is None
    assert s["final"]["r_work"] < s["start"]["r_work"] - 0.2
    assert s["final"]["r_work"] < 0.15
    assert s["final"]["hbonds"] is not None
    assert 1 <= len(s["macro_cycles"]) <= 3 and all(c["weight"] > 0 for c in s["macro_cycles"])
    assert s["parameters"]["refine.macro_cycles"] == 3
    assert s["timings"]["total_s"] > 0 and "refinement_s" in s["timings"]
    trials = s["weight_search"]
    assert len(trials) >= 2 and s["chosen_weight"] in [t["weight"] for t in trials]
    weights = [t["weight"] for t in trials]
    top = weights.index(max(weights)) + 1   # the grid rises; then a bracket or lower weights
    assert weights[:top] == sorted(weights[:top])
    # no temporary, partial or checkpoint files are left behind
    assert sorted(os.listdir(out)) == ["helix.log", "helix_refined.cif", "helix_refined.pdb",
                                       "helix_summary.json", "helix_weights.png"]


@pytest.mark.slow
def test_map_refinement_of_3j63(tmp_path, structures):
    d = os.path.join(structures, "cryo_em/3j63_A")
    out = str(tmp_path)
    assert main([os.path.join(d, "3j63_A_box_complete.pdb"), os.path.join(d, "3j63_A_box.ccp4"),
                 "resolution=3.8", "refine.macro_cycles=2", "refine.max_iterations=40",
                 "weights.search=false",
                 "output.prefix=emap", "output.dir=%s" % out]) == 0
    s = load_summary(out, "emap")
    assert s["start"]["cc_mask"] is not None and s["final"]["cc_mask"] is not None
    assert s["final"]["r_work"] is None
    assert s["final"]["bond_rmsd"] <= 0.02
    assert s["final"]["rama_outliers"] <= s["start"]["rama_outliers"]


def test_geometry_regularisation_without_data(tmp_path, structures):
    model = os.path.join(structures, "xray/1us0_helix/perturbed/1.5/0.pdb")
    out = str(tmp_path)
    assert main([model, "mode=opt", "use_neutron_distances=true", "refine.macro_cycles=1",
                 "output.prefix=opt", "output.dir=%s" % out]) == 0
    s = load_summary(out, "opt")
    assert s["final"]["bond_rmsd"] < s["start"]["bond_rmsd"]
    assert s["final"]["r_work"] is None and s["final"]["cc_mask"] is None
    assert s["macro_cycles"][0]["final_target"] < s["macro_cycles"][0]["start_target"]
