"""Dual-level QM restraints: GFN-FF steps between GFN2-xTB calls."""

import io
import json

import numpy as np
import pytest
from ase.io import read

from common import ACE_GLY_NME, central_difference, xtb_or_skip
from qrefine.restraints.base import RestraintSource


@pytest.fixture
def capped_gly():
    xtb_or_skip()
    return read(io.StringIO(ACE_GLY_NME), format="proteindatabank")


def _sources(atoms):
    from qrefine.restraints.dual_level import DualLevelRestraints
    from qrefine.restraints.qm import QMRestraints
    symbols = atoms.get_chemical_symbols()
    high = QMRestraints(symbols, "xtb", "GFN2-xTB", options={"solvent": None})
    low = QMRestraints(symbols, "xtb", "GFN-FF", options={"solvent": None})
    return DualLevelRestraints(high, low), high


def test_equals_the_qm_target_at_its_centre(capped_gly):
    dual, high = _sources(capped_gly)
    x0 = capped_gly.positions.copy()
    x0[3] += 0.05  # off the cached start, so both levels really compute
    dual.recentre(x0)
    value, grad = dual.value_and_gradient(x0)
    e_high, g_high = high.value_and_gradient(x0)
    assert value == pytest.approx(e_high, abs=1e-8)
    assert np.abs(grad - g_high).max() < 1e-8
    # GFN-FF alone is a different surface: the correction is not small.
    assert np.abs(dual.correction).max() > 1.0  # kcal/mol/A


def test_gradient_matches_finite_differences_inside_and_beyond_the_radius(capped_gly):
    from qrefine.restraints import dual_level
    dual, _ = _sources(capped_gly)
    x0 = capped_gly.positions.copy()
    dual.recentre(x0)
    x = x0.copy()
    x[7] += [dual_level.START_RADIUS + 0.1, 0.0, 0.0]   # CA of GLY beyond the wall
    x[2] += [0.05, -0.03, 0.02]                         # an H inside it
    _, grad = dual.value_and_gradient(x)
    idx = [(7, 0), (7, 1), (2, 0), (2, 2), (13, 1)]
    numeric = central_difference(lambda s: dual.value_and_gradient(s)[0], x, idx, step=1e-4)
    analytic = np.array([grad[i, k] for i, k in idx])
    assert np.abs(numeric - analytic).max() < 1e-3, (numeric, analytic)
    assert grad[7, 0] > 2.0 * dual_level.WALL * 0.09   # the wall pulls it back


def test_qr_refine_opt_reaches_the_gfn2_minimum(capped_gly, tmp_path, test_data):
    """mode=opt with qm.low_level=GFN-FF ends where GFN2-xTB alone is at a
    minimum: the largest GFN2 force at the written model is small."""
    from qrefine.engines import xtb_engine
    from qrefine.scripts.refine import main
    model = tmp_path / "ace_gly_nme.pdb"
    model.write_text(ACE_GLY_NME)
    assert main([str(model), "mode=opt", "restraints=qm", "engine=xtb", "qm.solvent=none",
                 "qm.low_level=GFN-FF", "qm.low_level_cycles=40", "refine.gradient_tolerance=1.0",
                 "output.prefix=dual", "output.dir=%s" % tmp_path]) == 0
    summary = json.loads((tmp_path / "dual_summary.json").read_text())
    timings = summary["timings"]
    # One QM call per macro cycle, all steps on GFN-FF: 20 GFN2 calls here,
    # where GFN2 alone takes 211 to the same minimum.
    assert timings["engine_calls"] <= 40
    assert timings["low_level_calls"] > 3 * timings["engine_calls"]

    def largest_force(path):
        atoms = read(str(path), format="proteindatabank")
        atoms.calc = xtb_engine.make_calculator(method="GFN2-xTB", solvent=None)
        return np.linalg.norm(atoms.get_forces(), axis=1).max()
    start, final = largest_force(model), largest_force(tmp_path / "dual_refined.pdb")
    # eV/A; the written coordinates are rounded to 1e-3 A.
    assert start > 0.5 and final < 0.1, (start, final)


def test_low_level_must_be_a_force_field():
    """Refused with the other parameter checks, before any file is read."""
    from qrefine.config import phil as params_mod
    from qrefine.config.checks import check_refine
    from qrefine.errors import QRefineError

    p, _ = params_mod.parse(["restraints=qm", "qm.low_level=GFN2-xTB"])
    with pytest.raises(QRefineError) as e:
        check_refine(p, ["does_not_exist.pdb"])
    assert "only GFN-FF" in str(e.value) and "\n" not in str(e.value)


class _Quadratic(RestraintSource):
    """E = k/2 |x - centre|^2 (kcal/mol): a stand-in method whose curvature
    is known exactly."""

    def __init__(self, k, centre):
        self.k, self.centre, self.calls = k, centre, 0

    def value_and_gradient(self, x):
        self.calls += 1
        d = np.asarray(x) - self.centre
        return 0.5 * self.k * float((d ** 2).sum()), self.k * d


def test_a_last_cycle_that_raises_the_qm_target_is_undone():
    """The cheap level is 100 times too soft, so its first cycle runs to the
    trust radius and overshoots the QM minimum: the QM energy rises.  With
    one macro cycle that rise is only seen by the check after the loop,
    which must return the start (one more QM call); with more cycles the
    refinement still ends below the start."""
    from qrefine.refine.macro_cycles import refine
    from qrefine.restraints.dual_level import DualLevelRestraints
    start = np.full((2, 3), 0.05)
    for cycles in (1, 4):
        high, low = _Quadratic(100.0, 0.0), _Quadratic(1.0, 0.0)
        dual = DualLevelRestraints(high, low)
        sites, records = refine(start, dual, macro_cycles=cycles, max_iterations=50)
        e_start = high.value_and_gradient(start)[0]
        e_end = high.value_and_gradient(sites)[0]
        assert e_end <= e_start
        if cycles == 1:
            assert np.array_equal(sites, start) and dual.rejected == 1
            assert high.calls == 2 + 2  # centre + check, and the two calls above
