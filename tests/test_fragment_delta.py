"""Delta-corrected fragments (fragments.correction=whole_model): the
fragment gradient plus the whole-model minus fragment gradient at a
reference point (GFN-FF, 1us0 helix, small fragments so the correction is
large)."""

import numpy as np
import pytest

from qrefine.errors import QRefineError
from common import xtb_or_skip

SMALL = dict(max_cluster_residues=4, buffer=2.0)


def _sources(model, **kw):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    return FragmentQMRestraints(model, "xtb", "GFN-FF", correction="whole_model", **SMALL, **kw)


def _whole(source, sites):
    return source.correction.whole.value_and_gradient(sites)[1]


def _norms(a, b):
    return np.linalg.norm(a - b, axis=1)


def _direction(n, seed=0):
    """A random displacement of 1 A RMS per atom."""
    u = np.random.default_rng(seed).normal(size=(n, 3))
    return u / np.sqrt((u ** 2).sum(axis=1).mean())


def test_whole_model_gradient_at_the_reference_and_smaller_error_nearby(helix_model):
    xtb_or_skip()
    x0 = np.array(helix_model.get_sites_cart())
    source = _sources(helix_model, correction_refresh=0)
    _, g0 = source.value_and_gradient(x0)
    whole0 = _whole(source, x0)
    assert np.abs(g0 - whole0).max() < 1e-9
    x1 = x0 + 0.05 * _direction(len(x0))
    _, g1 = source.value_and_gradient(x1)
    whole1 = _whole(source, x1)
    bare = _norms(g1 - source.correction.c, whole1)
    fixed = _norms(g1, whole1)
    assert source.correction.n_refreshes == 1
    # measured, kcal/mol/A: bare RMS 0.57, max 4.0; corrected RMS 0.11, max 0.75
    assert bare.max() > 3.0
    assert fixed.max() < bare.max() / 3
    assert np.sqrt((fixed ** 2).mean()) < 0.3 * np.sqrt((bare ** 2).mean())


def test_value_is_the_fragment_value_plus_the_correction_energy(helix_model):
    """The correction's energy is c . (x - x0): the corrected value minus the
    bare one along a path, with no refresh in between."""
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    x0 = np.array(helix_model.get_sites_cart())
    source = _sources(helix_model, correction_refresh=0)
    bare = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", **SMALL)
    source.value_and_gradient(x0)
    bare.value_and_gradient(x0)
    # Along the correction itself, so that its energy is large.
    c = source.correction.c
    d = c / np.sqrt((c ** 2).sum(axis=1).mean())
    path = [x0 + 0.02 * d, x0 + 0.05 * d, x0 + 0.03 * d]
    for x in path:
        v, _ = source.value_and_gradient(x)
        vb, _ = bare.value_and_gradient(x)
    c_energy = float((c * (path[-1] - x0)).sum())
    assert source.correction.n_refreshes == 1
    assert abs(c_energy) > 1.0
    assert abs((v - vb) - c_energy) < 1e-8


@pytest.mark.parametrize("refresh_first", [False, True])
def test_value_agrees_with_the_gradient_after_a_refresh(helix_model, refresh_first):
    """Central differences of the value against the gradient, at a point
    where the correction was just taken again (start_cycle) or not."""
    xtb_or_skip()
    x0 = np.array(helix_model.get_sites_cart())
    source = _sources(helix_model, correction_refresh=0)
    source.value_and_gradient(x0)
    x1 = x0 + 0.2 * _direction(len(x0))
    source.value_and_gradient(x1)
    c_before = source.correction.c.copy()
    if refresh_first:
        source.start_cycle(x1)
    _, g1 = source.value_and_gradient(x1)
    assert source.correction.n_refreshes == (2 if refresh_first else 1)
    change = source.correction.c - c_before
    # The direction the correction changed in: where a value integrated in
    # the old field would be off by |change| / 2 per A.
    e = change / np.linalg.norm(change) if refresh_first else _direction(len(x0), 1)
    if refresh_first:
        assert np.linalg.norm(change) > 1.0   # measured: 3.3 kcal/mol/A
    h = 1e-4
    vp, _ = source.value_and_gradient(x1 + h * e)
    vm, _ = source.value_and_gradient(x1 - h * e)
    slope = float((g1 * e).sum())
    assert abs((vp - vm) / (2 * h) - slope) < 0.01


def test_refresh_when_an_atom_moves_past_the_threshold(helix_model):
    xtb_or_skip()
    x0 = np.array(helix_model.get_sites_cart())
    source = _sources(helix_model, correction_refresh=0.1)
    source.value_and_gradient(x0)
    step = np.zeros_like(x0)
    step[10, 0] = 1.0
    near = x0 + 0.09 * step + 0.01 * _direction(len(x0)) / 10
    assert np.linalg.norm(near - x0, axis=1).max() < 0.1
    _, g = source.value_and_gradient(near)
    assert source.correction.n_refreshes == 1
    assert np.abs(g - _whole(source, near)).max() > 1e-3   # not the whole model here
    far = x0 + 0.11 * step
    _, g = source.value_and_gradient(far)
    assert source.correction.n_refreshes == 2
    assert np.abs(g - _whole(source, far)).max() < 1e-9
    np.testing.assert_array_equal(source.correction.x0, far)


def test_start_cycle_refreshes_without_a_new_fragment_gradient(helix_model):
    """At a point already computed, a new cycle's refresh reuses its
    fragment gradient: one engine call, the whole model's."""
    xtb_or_skip()
    x0 = np.array(helix_model.get_sites_cart())
    source = _sources(helix_model, correction_refresh=0)
    source.value_and_gradient(x0)
    x1 = x0 + 0.05 * _direction(len(x0))
    v1, _ = source.value_and_gradient(x1)
    calls = source.timing()["engine_calls"]
    whole_calls = source.correction.whole.calls
    source.start_cycle(x1)
    v, g = source.value_and_gradient(x1)
    assert source.timing()["engine_calls"] == calls          # fragments not recomputed
    assert source.correction.whole.calls == whole_calls + 1
    assert v == v1
    assert np.abs(g - _whole(source, x1)).max() < 1e-9


def test_bad_settings_are_one_line_errors(helix_model):
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    with pytest.raises(QRefineError, match="fragments.correction must be one of"):
        FragmentQMRestraints(helix_model, "xtb", "GFN-FF", correction="whole")
    with pytest.raises(QRefineError, match="correction_refresh must be >= 0"):
        _sources(helix_model, correction_refresh=-1.0)


def test_refinement_takes_the_correction_each_macro_cycle(tmp_path, structures):
    """qr.refine with fragments.correction=whole_model: the parameters reach
    the source, and each macro cycle starts with a refresh."""
    xtb_or_skip()
    import json
    import os
    from qrefine.scripts.refine import main
    d = os.path.join(structures, "xray/1us0_helix")
    out = str(tmp_path)
    assert main([os.path.join(d, "perturbed/1.5/0.pdb"), "mode=opt", "restraints=qm",
                 "engine=xtb", "method=GFN-FF", "qm.clustering=true",
                 "fragments.max_cluster_residues=4", "fragments.buffer=2",
                 "fragments.correction=whole_model", "fragments.correction_refresh=0",
                 "refine.macro_cycles=2", "refine.max_iterations=15",
                 "output.prefix=delta", "output.dir=%s" % out]) == 0
    with open(os.path.join(out, "delta_summary.json")) as f:
        s = json.load(f)
    assert "corrected by the whole-model gradient" in s["restraints"]
    assert s["timings"]["correction_refreshes"] == 2
    cycles = s["macro_cycles"]
    assert cycles[1]["final_target"] < cycles[0]["start_target"] - 20


def test_describe_names_the_refresh(helix_model):
    xtb_or_skip()
    assert _sources(helix_model, correction_refresh=0.15).describe().endswith(
        "corrected by the whole-model gradient each macro cycle and after 0.15 A of atom shift")
    assert _sources(helix_model, correction_refresh=0).describe().endswith(
        "corrected by the whole-model gradient each macro cycle")
