"""Adaptive force scaling (seed 004; qrefine.weights.adaptive): the rule on
known similarity streams, the stops on synthetic steps, a resume that
replays a checkpoint exactly, and qr.refine end to end on the 3j63_A map."""

import os

import pytest

from common import refine_3j63
from qrefine.weights.adaptive import AdaptiveProtocol, ForceScaling, StepOutcome
from qrefine.weights.search import MONITORED


def test_k_falls_while_similarity_rises_and_rises_twice_as_fast_when_it_falls():
    f = ForceScaling(100.0, alpha=0.1, smoothing=0.0)
    assert f.observe(1.0) == "first" and f.k == 100.0
    assert f.observe(2.0) == "rose" and f.k == pytest.approx(100.0 / 1.1)
    assert f.observe(1.5) == "fell" and f.k == pytest.approx(100.0 / 1.1 * 1.2)
    assert f.observe(1.5) == "stalled" and f.k == pytest.approx(100.0 / 1.1 * 1.2 ** 2)
    assert f.observe(1.55) == "stalled"  # 0.05 < 0.1 x the largest rise (1.0)
    assert f.observe(1.8) == "rose"


def test_a_similarity_that_never_moves_leaves_k_alone():
    f = ForceScaling(5.0, alpha=0.1, smoothing=0.5)
    assert [f.observe(2.0) for _ in range(3)] == ["first", "flat", "flat"] and f.k == 5.0


def test_the_moving_average_hides_a_single_dip():
    """With smoothing 0.8 one dip after a long rise leaves the average rising."""
    f = ForceScaling(1.0, alpha=0.5, smoothing=0.8)
    for s in (0.0, 1.0, 2.0, 3.0):
        f.observe(s)
    assert f.observe(2.5) == "rose"  # 0.8 * avg(~1.2) + 0.2 * 2.5 > avg
    g = ForceScaling(1.0, alpha=0.5, smoothing=0.0)
    for s in (0.0, 1.0, 2.0, 3.0):
        g.observe(s)
    assert g.observe(2.5) == "fell"


def metrics(bond=0.005, fav=98.0, clash=2.0):
    return {"bond_rmsd": bond, "angle_rmsd": 1.0, "rama_favored": fav, "rama_outliers": 0.0,
            "rotamer_outliers": 0.0, "cbeta_deviations": 0, "clashscore": clash}


def protocol(steps=10, max_force=10.0):
    return AdaptiveProtocol(10.0, 0.25, 0.0, steps, max_force, MONITORED, 0.02, 2.0)


def scripted(outcomes):
    """run_step from a list of (similarity, force, metrics); records the k asked for."""
    asked = []

    def run_step(k, sites):
        asked.append(k)
        s, force, m = outcomes[len(asked) - 1]
        return StepOutcome(sites=len(asked), similarity=s, max_restraint_force=force, metrics=m)
    return run_step, asked


def test_a_failing_gate_undoes_its_step_lowers_k_and_three_in_a_row_stop():
    bad = metrics(fav=96.0)
    run_step, asked = scripted([(1.0, 5.0, metrics()), (2.0, 5.0, metrics()),
                                (1.0, 5.0, bad), (1.0, 5.0, bad), (1.0, 5.0, bad)])
    kept, steps, why = protocol().run(run_step, 0, metrics())
    assert asked == [10.0, 10.0, pytest.approx(8.0), pytest.approx(8.0 / 1.5),
                     pytest.approx(8.0 / 1.5 ** 2)]   # rose: 10 / 1.25; undone: / 1.5
    assert [s.accepted for s in steps] == [True, True, False, False, False]
    assert kept[-1].sites == 2 and "3 steps in a row: rama_favored" in why


def test_after_an_undone_step_it_goes_on_from_the_last_kept_model():
    seen = []
    outcomes = [(1.0, 5.0, metrics()), (2.0, 5.0, metrics(fav=96.0)), (2.0, 5.0, metrics())]

    def run_step(k, sites):
        seen.append(sites)
        s, f, m = outcomes[len(seen) - 1]
        return StepOutcome(sites=len(seen), similarity=s, max_restraint_force=f, metrics=m)
    kept, steps, _ = protocol(steps=3).run(run_step, 0, metrics())
    assert seen == [0, 1, 1] and [s.sites for s in kept] == [1, 3]


def test_a_slow_slide_is_stopped_by_the_start():
    """Each step loses 0.6 % favored (tolerance 1 %): the previous step never
    objects, the start does after the second."""
    run_step, _ = scripted([(i, 1.0, metrics(fav=98.0 - 0.6 * (i + 1))) for i in range(5)])
    kept, steps, why = protocol().run(run_step, 0, metrics())
    assert len(kept) == 1 and "than at the start" in steps[1].reason


def test_bond_rmsd_above_the_limit_is_allowed_while_it_falls():
    run_step, _ = scripted([(1.0, 1.0, metrics(bond=0.04)), (2.0, 1.0, metrics(bond=0.03))]
                           + [(3.0, 1.0, metrics(bond=0.035))] * 3)
    kept, steps, why = protocol().run(run_step, 0, metrics(bond=0.05))
    assert len(kept) == 2 and "bond_rmsd 0.0350 > 0.0200 and rising" in steps[2].reason


def test_growing_restraint_forces_stop_the_protocol_and_keep_the_step():
    run_step, _ = scripted([(1.0, 2.0, metrics()), (0.5, 10.0, metrics()),
                            (0.2, 30.0, metrics())])
    kept, steps, why = protocol(max_force=10.0).run(run_step, 0, metrics())
    assert len(kept) == 3 and steps[-1].accepted and "15.0-fold" in why


def test_a_step_that_does_not_move_ends_it():
    outcomes = [(1.0, 1.0, metrics()), (1.0, 1.0, metrics())]
    asked = []

    def run_step(k, sites):
        asked.append(k)
        s, f, m = outcomes[len(asked) - 1]
        return StepOutcome(sites=sites, similarity=s, max_restraint_force=f, metrics=m,
                           moved=len(asked) == 1)
    kept, steps, why = protocol().run(run_step, 0, metrics())
    assert len(asked) == 2 and why.startswith("converged")


def test_resuming_from_finished_steps_replays_k_exactly():
    outcomes = [(1.0, 1.0, metrics()), (3.0, 1.0, metrics()), (2.0, 1.0, metrics()),
                (2.5, 1.0, metrics()), (2.7, 1.0, metrics())]
    full, asked_full = scripted(outcomes)
    _, all_steps, _ = protocol(steps=5).run(full, 0, metrics())
    rest, asked_rest = scripted(outcomes[3:])

    def resumed_step(k, sites):
        if not asked_rest:
            assert sites == 3  # the last finished step's sites come back in
        return rest(k, sites)
    _, steps, _ = protocol(steps=5).run(resumed_step, 0, metrics(), done=all_steps[:3])
    assert asked_rest == asked_full[3:]
    assert [s.next_k for s in steps] == [s.next_k for s in all_steps]


def test_qr_refine_adaptive_end_to_end(tmp_path, structures, test_data):
    code, s = refine_3j63(tmp_path, structures, test_data, "ad", "map.target=relative_entropy",
                          "weights.protocol=adaptive", "weights.adaptive_steps=2",
                          "weights.adaptive_iterations=3")
    assert code == 0
    assert 0.7 < s["start"]["fsc_avg"] < 0.8 and s["final"]["fsc_avg"] is not None
    steps = s["adaptive"]
    assert [a["step"] for a in steps] == [1, 2] and steps[0]["change"] == "first"
    assert all(a["k"] > 0 and a["similarity"] < 0 for a in steps)  # log p < 0
    assert steps[1]["similarity"] > steps[0]["similarity"]          # it climbs into the map
    assert [c["weight"] for c in s["macro_cycles"]] == [a["k"] for a in steps]
    assert s["weight_search"] == [] and not (tmp_path / "ad.checkpoint").exists()
    log = (tmp_path / "ad.log").read_text()
    assert "Adaptive force scaling (seed 004)" in log and "step  2  k" in log


def test_adaptive_needs_a_map(tmp_path, structures, capsys):
    from qrefine.scripts.refine import main
    d = os.path.join(structures, "cryo_em", "3j63_A")
    code = main([os.path.join(d, "3j63_A_box_complete.pdb"), "weights.protocol=adaptive",
                 "output.dir=%s" % tmp_path])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "weights.protocol=adaptive" in err
    assert os.listdir(tmp_path) == []
