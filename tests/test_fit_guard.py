"""The X-ray fit guard (issue 16): a refinement never leaves R-free worse
than it found it by more than weights.max_r_free_rise."""

import json
import os

import numpy as np

from qrefine.model.io import read_model
from qrefine.scripts.refine import main


def test_a_well_refined_start_keeps_its_fit(tmp_path, structures):
    """2ona (deposited, refined against these data): at a fixed data weight
    of 4335 the library restraints improve bond and angle RMSD but R-free
    rises 0.2979 -> 0.311.  The guard writes the start model instead, says
    so in the log, and records why in the summary."""
    d = os.path.join(structures, "xray", "2ona")
    out = str(tmp_path)
    assert main([os.path.join(d, "2ona.pdb"), os.path.join(d, "2ona.mtz"), "data_weight=4335",
                 "output.prefix=g", "output.dir=%s" % out]) == 0
    s = json.load(open(os.path.join(out, "g_summary.json")))
    guard = s["fit_guard"]
    assert guard["start_r_free"] == s["start"]["r_free"]
    assert guard["refined_r_free"] > guard["bound"] == s["start"]["r_free"] + 0.005
    assert guard["kept"] == "start" and "bond RMSD" in guard["geometry_better"]
    assert s["final"]["r_free"] == s["start"]["r_free"]
    assert s["final"]["bond_rmsd"] == s["start"]["bond_rmsd"]
    start = read_model(os.path.join(d, "2ona.pdb"), make_restraints=False)
    written = read_model(os.path.join(out, "g_refined.pdb"), make_restraints=False)
    assert np.abs(np.array(written.get_sites_cart()) -
                  np.array(start.get_sites_cart())).max() < 1e-3
    assert any(n.startswith("fit guard:") and "the start model, unchanged" in n
               for n in s["notes"])
    assert "fit guard: the final refinement ended at R-free" in open(
        os.path.join(out, "g.log")).read()
