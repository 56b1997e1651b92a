"""The Top8000 Ramachandran term added to QM restraints
(ramachandran_restraints=true with restraints=qm,
qrefine.restraints.ramachandran): MolProbity's angles, an exact gradient,
energies that follow the Top8000 density, and its place in the source
qr.refine builds."""

import math
import os

import numpy as np
import pytest
from mmtbx.validation import ramalyze

from common import ZeroSource, added_term_value

from qrefine.config import phil as params_mod
from qrefine.model import io as model_io
from qrefine.restraints import ramachandran as rama
from qrefine.restraints.clash import ClashRestraint
from qrefine.restraints.factory import build_restraints
from qrefine.restraints.qm import QMRestraints
from qrefine.restraints.ramachandran import RamachandranRestraint


def test_angles_and_classes_are_molprobitys(start_3j63):
    """Every residue ramalyze judges is restrained, with ramalyze's (phi, psi)."""
    atoms, kinds = rama.residues_with_phi_psi(start_3j63)
    x = start_3j63.get_sites_cart().as_numpy_array()[atoms]
    phi = np.degrees(rama.dihedral_and_gradient(x[:, 0:4])[0])
    psi = np.degrees(rama.dihedral_and_gradient(x[:, 1:5])[0])
    judged = [r for r in ramalyze.ramalyze(start_3j63.get_hierarchy(), outliers_only=False).results]
    assert len(judged) == len(atoms) == 89
    assert np.allclose(phi, [r.phi for r in judged], atol=1e-3)
    assert np.allclose(psi, [r.psi for r in judged], atol=1e-3)
    assert sorted(set(kinds)) == ["general", "glycine", "isoleucine or valine", "pre-proline",
                                  "trans-proline"]


def test_gradient_is_the_derivative_of_the_value(start_3j63):
    term = RamachandranRestraint(ZeroSource(), start_3j63, 1.0)
    x = start_3j63.get_sites_cart().as_numpy_array()
    value, g = term.value_and_gradient(x)
    moving = np.flatnonzero(np.abs(g).sum(axis=1) > 0)
    assert value > 0 and len(moving) >= 3 * 89  # N, CA, C of each residue (shared)
    h = 1e-5
    for i in moving[::41]:
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd = (term.value_and_gradient(xp)[0] - term.value_and_gradient(xm)[0]) / (2 * h)
            assert fd == pytest.approx(g[i, k], rel=1e-5, abs=1e-6)
    half = RamachandranRestraint(ZeroSource(), start_3j63, 0.5)
    v2, g2 = half.value_and_gradient(x)
    assert v2 == pytest.approx(0.5 * value) and np.allclose(g2, 0.5 * g)


def test_energy_is_minus_log_of_the_top8000_density():
    """The general-case spline: ~0 at the alpha peak, a little higher where
    GFN-FF puts helices, higher in the beta region and left-handed helix,
    near ln(1/FLOOR) where hardly any Top8000 residue lies; periodic."""
    s = rama.splines_for("general")
    alpha = float(s.ev(-63.0, -43.0))
    assert abs(alpha) < 0.05
    assert 0.1 < float(s.ev(-66.0, -35.0)) < 0.5
    assert 0.3 < float(s.ev(-120.0, 130.0)) < 1.0
    assert 1.5 < float(s.ev(60.0, 45.0)) < 3.0
    assert 8.0 < float(s.ev(-60.0, 60.0)) <= -math.log(rama.FLOOR) + 0.05
    assert float(s.ev(-179.0, 170.0)) == pytest.approx(float(s.ev(181.0, -190.0)), abs=1e-9)


def test_downhill_brings_outliers_back_into_allowed_regions(start_3j63):
    """Minimising the term alone moves the start's four Ramachandran
    outliers out of the outlier region."""
    from scipy.optimize import minimize
    term = RamachandranRestraint(ZeroSource(), start_3j63, 1.0)
    x0 = start_3j63.get_sites_cart().as_numpy_array()
    result = minimize(lambda f: term.value_and_gradient(f.reshape(-1, 3))[0], x0.ravel(),
                      jac=lambda f: term.value_and_gradient(f.reshape(-1, 3))[1].ravel(),
                      method="L-BFGS-B", options={"maxiter": 200})
    model = start_3j63.deep_copy()
    from scitbx.array_family import flex
    model.set_sites_cart(flex.vec3_double(result.x.reshape(-1, 3)))
    before = ramalyze.ramalyze(start_3j63.get_hierarchy(), outliers_only=False)
    after = ramalyze.ramalyze(model.get_hierarchy(), outliers_only=False)
    assert before.n_outliers == 4 and after.n_outliers == 0
    assert after.percent_favored > before.percent_favored + 10


def test_qr_refine_adds_it_to_qm_restraints_after_the_clash_wall(structures, tmp_path):
    """ramachandran_restraints=true with restraints=qm wraps the QM source
    (and a clash wall, when set): value and gradient are the sum, the log
    line says so, and the model's library restraints stay without it."""
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    model = model_io.read_model(path)
    p, _ = params_mod.parse(["restraints=qm", "engine=xtb", "method=GFN-FF",
                             "qm.clash_restraint=50", "ramachandran_restraints=true",
                             "qm.ramachandran_scale=0.5"])
    source = build_restraints(model, path, p, str(tmp_path), data_kind="reflections")
    try:
        assert isinstance(source, RamachandranRestraint)
        assert isinstance(source.inner, ClashRestraint)
        assert isinstance(source.inner.inner, QMRestraints)
        assert "Top8000 Ramachandran term (11 residues, 0.5 kcal/mol" in source.describe()
        assert source.method == "GFN-FF" and not source.is_dual_level
        assert added_term_value(source, model.get_sites_cart().as_numpy_array()) > 0
    finally:
        source.close()
    assert model.get_restraints_manager().geometry.ramachandran_manager is None
    library, _ = params_mod.parse(["ramachandran_restraints=true"])
    assert not isinstance(build_restraints(model, path, library, str(tmp_path)),
                          RamachandranRestraint)


def test_on_by_default_with_a_map_only(structures, tmp_path):
    """ramachandran_restraints=None (default): the term joins QM restraints
    with a map, as library restraints get cctbx's; not with reflections or
    no data, and never when switched off."""
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    model = model_io.read_model(path)
    default, _ = params_mod.parse(["restraints=qm", "engine=xtb", "method=GFN-FF"])
    off, _ = params_mod.parse(["restraints=qm", "engine=xtb", "method=GFN-FF",
                               "ramachandran_restraints=false"])
    for p, data_kind, wanted in [(default, "map", True), (default, "reflections", False),
                                 (default, None, False), (off, "map", False)]:
        source = build_restraints(model, path, p, str(tmp_path), data_kind=data_kind)
        try:
            assert isinstance(source, RamachandranRestraint) is wanted, (data_kind, wanted)
        finally:
            source.close()
