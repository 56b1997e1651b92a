"""Maps: the final macro cycles may not undo the chosen trial's geometry
(qrefine.refine.protocol._guard_geometry)."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("test_data")


def _params():
    return NS(resolution=3.8, restraints="cctbx",
              weights=NS(max_bond_rmsd=None, max_angle_rmsd=None))


class _Log(object):
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def _trial(sites, **metrics):
    from qrefine.weights.search import Trial
    t = Trial(weight=3.5, metrics=metrics, seconds=0.0, sites=sites)
    t.accepted = True
    return t


def test_final_cycles_that_worsen_the_geometry_give_way_to_the_chosen_trial(map_3j63):
    from qrefine.refine.protocol import ProtocolResult, _guard_geometry
    model, data = map_3j63
    start = model.get_sites_cart().as_numpy_array()
    trial_sites = start + 0.001
    # the "final cycles" are the start model: 4.49 % Rama outliers, 85.4 % favored
    chosen = _trial(trial_sites, bond_rmsd=0.002, angle_rmsd=0.5, rama_favored=97.75,
                    rama_outliers=0.0, rotamer_outliers=5.48, cbeta_deviations=0)
    result, log = ProtocolResult(sites=start, cycles=[]), _Log()
    out = _guard_geometry(model, start, start, data, _params(), result, chosen, log)
    assert np.array_equal(out, trial_sites)
    assert result.geometry_guard["reason"].startswith("rama_favored worsened 97.75 -> 85.39")
    assert "chosen trial's model" in result.notes[0] and log.lines
    assert np.array_equal(model.get_sites_cart().as_numpy_array(), start)  # model put back


def test_final_cycles_within_the_tolerances_are_kept(map_3j63):
    from qrefine.refine.protocol import ProtocolResult, _guard_geometry
    model, data = map_3j63
    start = model.get_sites_cart().as_numpy_array()
    # one residue of 89 worse than the trial (1.12 %) is within the 1.65 % tolerance
    chosen = _trial(start + 0.001, bond_rmsd=0.005, angle_rmsd=1.3, rama_favored=86.5,
                    rama_outliers=4.49, rotamer_outliers=5.48, cbeta_deviations=0,
                    clashscore=46.0)
    result = ProtocolResult(sites=start, cycles=[])
    out = _guard_geometry(model, start, start, data, _params(), result, chosen, _Log())
    assert np.array_equal(out, start) and result.geometry_guard is None and not result.notes


def test_final_cycles_may_add_no_ramachandran_outlier(map_3j63):
    """One residue more in the outlier region is within the search's
    one-residue tolerance (1.65 %), but the guard allows no new outlier."""
    from qrefine.refine.protocol import ProtocolResult, _guard_geometry
    model, data = map_3j63
    start = model.get_sites_cart().as_numpy_array()
    trial_sites = start + 0.001
    # the start has 4 outliers of 89 (4.49 %); the trial one fewer
    chosen = _trial(trial_sites, bond_rmsd=0.005, angle_rmsd=1.3, rama_favored=85.39,
                    rama_outliers=3.37, rotamer_outliers=5.48, cbeta_deviations=0,
                    clashscore=46.0)
    result = ProtocolResult(sites=start, cycles=[])
    out = _guard_geometry(model, start, start, data, _params(), result, chosen, _Log())
    assert np.array_equal(out, trial_sites)
    assert result.geometry_guard["reason"] == "rama_outliers worsened 3.37 -> 4.49"
