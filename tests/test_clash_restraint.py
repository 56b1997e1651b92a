"""The QM clash restraint (qm.clash_restraint, qrefine.restraints.clash):
a consistent gradient, the pairs MolProbity would call clashes and no
others, and its place in the restraint source qr.refine builds."""

import os

import numpy as np
from scipy import sparse

from common import ZeroSource, added_term_value

from qrefine.config import phil as params_mod
from qrefine.model import io as model_io
from qrefine.restraints import clash
from qrefine.restraints.clash import ClashRestraint
from qrefine.restraints.factory import build_restraints
from qrefine.restraints.qm import QMRestraints
from qrefine.validation import clashscore


def test_gradient_matches_finite_differences(start_3j63):
    wall = ClashRestraint(ZeroSource(), start_3j63, 100.0)
    x = start_3j63.get_sites_cart().as_numpy_array()
    value, g = wall.value_and_gradient(x)
    assert value > 0 and wall.pairs_last > 50
    moving = np.flatnonzero(np.abs(g).sum(axis=1) > 1.0)[:8]
    assert len(moving) == 8
    h = 1e-5
    for a in moving:
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[a, k] += h
            xm[a, k] -= h
            fd = (wall.wall(xp)[0] - wall.wall(xm)[0]) / (2 * h)
            assert abs(fd - g[a, k]) < 1e-5 * max(1.0, abs(g[a, k]))


def test_pairs_beyond_the_clash_line_are_molprobitys_clashes(start_3j63):
    """The start of 3j63_A: probe2 counts 66 clashes (clashscore 45.96 of
    1436 atoms); the wall's radii and exclusions find about as many pairs
    overlapping by more than 0.4 A."""
    wall = ClashRestraint(ZeroSource(), start_3j63, 100.0)
    x = start_3j63.get_sites_cart().as_numpy_array()
    probe = clashscore(start_3j63) * start_3j63.get_number_of_atoms() / 1000.0
    assert abs(probe - 66) < 1
    deep = _pairs_deeper_than(wall, x, 0.4)
    assert 0.85 * probe <= deep <= 1.25 * probe


def _pairs_deeper_than(wall, x, overlap):
    """Pairs the wall acts on whose overlap exceeds ``overlap``: the wall's
    value at unit weight counts them once its onset is moved there."""
    onset, clash.ONSET = clash.ONSET, overlap
    try:
        wall.wall(x)
        return wall.pairs_last
    finally:
        clash.ONSET = onset


def test_bonded_neighbours_and_hydrogen_bonds_are_left_alone(start_3j63):
    """Atoms up to three bonds apart (N ... HA at 2.1 A) and an amide H on
    its helix partner's O (1.9-2.1 A) are no clashes: without the
    exclusions the wall would act on hundreds more pairs."""
    wall = ClashRestraint(ZeroSource(), start_3j63, 100.0)
    x = start_3j63.get_sites_cart().as_numpy_array()
    wall.wall(x)
    pairs = wall.pairs_last
    n = start_3j63.get_number_of_atoms()
    bonded = wall._excluded
    wall._excluded = sparse.csr_matrix((n, n), dtype=bool)
    wall.wall(x)
    assert wall.pairs_last > pairs + 1000
    wall._excluded = bonded
    polar = wall._polar_h.copy()
    assert polar.sum() > 90  # backbone N-H, side-chain N-H and O-H
    wall._polar_h[:] = False
    wall.wall(x)
    assert wall.pairs_last > pairs + 20
    wall._polar_h[:] = polar


def test_zero_away_from_clashes(start_3j63):
    """Far apart, every pair is outside the wall: value and gradient 0."""
    wall = ClashRestraint(ZeroSource(), start_3j63, 100.0)
    x = start_3j63.get_sites_cart().as_numpy_array() * 3.0  # every distance x3
    value, g = wall.value_and_gradient(x)
    assert value == 0.0 and not g.any() and wall.pairs_last == 0


def test_qr_refine_adds_it_to_qm_restraints_only(helix_model, structures, tmp_path):
    """qm.clash_restraint=K wraps the QM source: the value is the QM
    value plus the wall, the log line says so; library restraints never
    get it (their own non-bonded repulsion is the library's)."""
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    model = model_io.read_model(path)
    p, _ = params_mod.parse(["restraints=qm", "engine=xtb", "method=GFN-FF",
                             "qm.clash_restraint=50"])
    source = build_restraints(model, path, p, str(tmp_path))
    try:
        assert isinstance(source, ClashRestraint) and isinstance(source.inner, QMRestraints)
        assert "clash restraint (50 kcal/mol/A^2" in source.describe()
        assert source.method == "GFN-FF" and not source.is_dual_level
        x = model.get_sites_cart().as_numpy_array()
        x[5] = x[40] + [0.0, 0.0, 1.5]  # an atom pushed onto a distant one
        assert added_term_value(source, x) > 0
        assert source.term(x)[0] == source.wall(x)[0]
    finally:
        source.close()
    library, _ = params_mod.parse(["qm.clash_restraint=50"])
    assert not isinstance(build_restraints(model, path, library, str(tmp_path)),
                          ClashRestraint)


def test_on_by_default_with_a_map_only(structures, tmp_path):
    """qm.clash_restraint=None (default): the wall, at 100 kcal/mol/A^2,
    joins QM restraints with a map, as the Ramachandran term does; not with
    reflections or no data.  0 switches it off, a value switches it on for
    any data."""
    from qrefine.restraints.factory import clash_weight
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    model = model_io.read_model(path)
    qm = ["restraints=qm", "engine=xtb", "method=GFN-FF", "ramachandran_restraints=false"]
    default, _ = params_mod.parse(qm)
    off, _ = params_mod.parse(qm + ["qm.clash_restraint=0"])
    set50, _ = params_mod.parse(qm + ["qm.clash_restraint=50"])
    library, _ = params_mod.parse([])
    assert default.qm.clash_restraint is None
    for p, data_kind, wanted in [(default, "map", 100.0), (default, "reflections", 0.0),
                                 (default, None, 0.0), (off, "map", 0.0),
                                 (set50, "reflections", 50.0), (library, "map", 0.0)]:
        assert clash_weight(p, data_kind) == wanted, (data_kind, wanted)
        if p is library:
            continue
        source = build_restraints(model, path, p, str(tmp_path), data_kind=data_kind)
        try:
            assert isinstance(source, ClashRestraint) is (wanted > 0), (data_kind, wanted)
            if wanted:
                assert source.weight == wanted
        finally:
            source.close()


def test_weight_trials_on_a_part_feel_the_same_terms(structures, tmp_path):
    """weights.part_atoms (maps only): the part's QM restraints carry the
    map's default clash restraint and Ramachandran term too, so trials and
    the final refinement minimise one target."""
    from qrefine.restraints.factory import build_part_restraints
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.restraints.ramachandran import RamachandranRestraint
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    model = model_io.read_model(path)
    p, _ = params_mod.parse(["restraints=qm", "engine=xtb", "method=GFN-FF"])
    source = build_part_restraints(model, p, [0, 1, 2], str(tmp_path))
    try:
        assert isinstance(source, RamachandranRestraint)
        assert isinstance(source.inner, ClashRestraint)
        assert isinstance(source.inner.inner, FragmentQMRestraints)
    finally:
        source.close()
