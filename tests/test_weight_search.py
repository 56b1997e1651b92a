"""The monotonic weight search on synthetic trial outcomes."""

import pytest

from qrefine.weights.search import (WeightSearch, default_limits, default_max_r_gap,
                                    geometric_grid)


def fake_trials(table):
    """run_trial from a {weight: metrics} table; records the weights asked for."""
    asked = []

    def run_trial(weight):
        asked.append(weight)
        nearest = min(table, key=lambda w: abs(w - weight))
        return None, dict(table[nearest])
    return run_trial, asked


def map_metrics(bond, fav, cc, clash=1.0):
    return {"bond_rmsd": bond, "angle_rmsd": 1.0, "rama_favored": fav, "rama_outliers": 0.0,
            "rotamer_outliers": 1.0, "cbeta_deviations": 0, "clashscore": clash, "cc_mask": cc}


def test_stops_at_bond_limit_and_picks_best_fit():
    table = {1: map_metrics(0.005, 97, 0.60), 2: map_metrics(0.008, 97, 0.65),
             4: map_metrics(0.030, 97, 0.70), 8: map_metrics(0.05, 90, 0.72)}
    run_trial, asked = fake_trials(table)
    chosen, trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0,
                                  refine_bracket=False).run(run_trial)
    assert asked == [1, 2, 4]            # nothing after the first rejected trial
    assert [t.accepted for t in trials] == [True, True, False]
    assert "bond RMSD" in trials[-1].reason
    assert chosen.weight == 2


def test_worsening_metric_stops_and_bracket_is_refined():
    table = {1: map_metrics(0.005, 97, 0.60), 2: map_metrics(0.006, 97, 0.63),
             2 ** 1.5: map_metrics(0.007, 96.5, 0.64), 4: map_metrics(0.008, 94, 0.66)}
    run_trial, asked = fake_trials(table)
    chosen, trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0).run(run_trial)
    assert asked[:3] == [1, 2, 4] and asked[3] == pytest.approx(2 ** 1.5)
    assert "rama_favored worsened" in trials[2].reason
    assert chosen.weight == pytest.approx(2 ** 1.5)  # accepted, better CC than w=2


def test_xray_picks_lowest_r_free_within_gap():
    def m(rw, rf, bond=0.005):
        return {"bond_rmsd": bond, "angle_rmsd": 1.0, "r_work": rw, "r_free": rf}
    table = {1: m(0.20, 0.25), 2: m(0.15, 0.22), 4: m(0.08, 0.21), 8: m(0.05, 0.30, 0.03)}
    run_trial, _ = fake_trials(table)
    chosen, _ = WeightSearch([1, 2, 4, 8], "reflections", 0.02, 2.0, max_r_gap=0.1,
                             refine_bracket=False).run(run_trial)
    assert chosen.weight == 2            # w=4 has the lowest R-free but a gap of 0.13


def test_finished_trials_are_not_rerun():
    table = {1: map_metrics(0.005, 97, 0.60), 2: map_metrics(0.008, 97, 0.65),
             4: map_metrics(0.030, 97, 0.70)}
    run_trial, asked = fake_trials(table)
    first, trials = WeightSearch([1, 2, 4], "map", 0.02, 2.0, refine_bracket=False).run(run_trial)
    run_trial2, asked2 = fake_trials(table)
    again, _ = WeightSearch([1, 2, 4], "map", 0.02, 2.0, refine_bracket=False).run(
        run_trial2, done=trials[:2])
    assert asked2 == [4] and again.weight == first.weight


def test_defaults():
    assert geometric_grid(10, 2, 2, 1) == [2.5, 5, 10, 20]
    assert default_limits(4.0) == (0.015, 2.0) and default_limits(1.5) == (0.025, 2.7)
    assert default_max_r_gap(4.0) == pytest.approx(0.09)


def test_tolerances_are_never_finer_than_one_residue():
    from qrefine.weights.search import MONITORED, one_step_tolerances
    helix = one_step_tolerances(13, 94)           # the 1us0 helix
    assert helix["rama_favored"][1] > 100.0 / 11 and helix["rama_favored"][1] < 200.0 / 11
    assert helix["clashscore"][1] > 1000.0 / 94
    big = one_step_tolerances(2000, 30000)
    assert big == MONITORED                       # large models keep the defaults
    # One residue of the helix's 11 (phi, psi) residues flipping is tolerated.
    search = WeightSearch([1, 2], "map", 0.02, 2.0, monitored=helix)
    before = {"rama_favored": 100.0, "clashscore": 0.0}
    assert search.judge({"rama_favored": 90.91, "clashscore": 10.64}, before) == ""
    assert "rama_favored" in search.judge({"rama_favored": 81.8, "clashscore": 0.0}, before)


def test_extends_below_the_grid_while_the_lowest_weight_fits_best():
    def m(rw, rf):
        return {"bond_rmsd": 0.01, "angle_rmsd": 1.0, "r_work": rw, "r_free": rf}
    # 5bmi-like: R-free falls with the weight below the grid, until w = 0.25.
    table = {0.125: m(0.25, 0.262), 0.25: m(0.25, 0.259), 0.5: m(0.23, 0.278),
             1: m(0.21, 0.28), 2: m(0.20, 0.29), 4: m(0.19, 0.30)}
    run_trial, asked = fake_trials(table)
    chosen, trials = WeightSearch([1, 2, 4], "reflections", 0.02, 2.0, max_r_gap=0.1,
                                  refine_bracket=False, extend_below=3).run(run_trial)
    assert asked == [1, 2, 4, 0.5, 0.25, 0.125]   # stops once w=0.125 fits worse
    assert chosen.weight == 0.25
    run_trial, asked = fake_trials(table)
    chosen, _ = WeightSearch([1, 2, 4], "reflections", 0.02, 2.0, max_r_gap=0.1,
                             refine_bracket=False, extend_below=1).run(run_trial)
    assert asked == [1, 2, 4, 0.5] and chosen.weight == 0.5
    # Not when a grid weight above the lowest fits best; never with 0.
    table[1], table[2] = m(0.21, 0.25), m(0.20, 0.24)
    for extend in (0, 3):
        run_trial, asked = fake_trials(table)
        chosen, _ = WeightSearch([1, 2, 4], "reflections", 0.02, 2.0, max_r_gap=0.1,
                                 refine_bracket=False, extend_below=extend).run(run_trial)
        assert asked == [1, 2, 4] and chosen.weight == 2


def test_weight_plot_shows_limits_start_and_plain_ticks():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from qrefine.weights.plot import plot_weight_search, weight_search_figure
    trials = [{"weight": w, "accepted": w < 1e5,
               "metrics": {"bond_rmsd": b, "rama_favored": f}}
              for w, b, f in ((5534, 0.003, 90.9), (2.2e4, 0.006, 81.8), (1.77e5, 0.021, 63.6))]
    fig = weight_search_figure(trials, 2.2e4, start={"bond_rmsd": 0.0134, "rama_favored": 72.7},
                               limits={"bond_rmsd": 0.015})
    bond, fav = fig.axes[0], fig.axes[1]
    flat = [l for l in bond.lines if len(set(l.get_ydata())) == 1 and len(l.get_ydata()) == 2]
    assert {round(l.get_ydata()[0], 4) for l in flat} == {0.015, 0.0134}
    assert {l.get_color() for l in flat} == {"red", "grey"}
    assert [l.get_ydata()[0] for l in fav.lines if l.get_color() == "grey"] == [72.7]
    fig.canvas.draw()
    labels = [t.get_text() for t in bond.get_xticklabels()
              if 5534 <= t.get_position()[0] <= 1.77e5]
    assert {"1e+04", "2e+04", "5e+04", "1e+05"} <= set(labels), labels
    plt.close(fig)
    assert plot_weight_search(trials, 2.2e4)[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_gate_stops_a_slide_of_tolerated_steps():
    """The 1us0 helix (13 residues): Rama favored 90.9 -> 81.8 -> 72.7 %
    as the weight rises, each step one residue.  Against the previous trial
    every step is tolerated, down to 63.6 %; against the best accepted trial the third is
    two residues worse and stops the search."""
    from qrefine.weights.search import one_step_tolerances
    helix = one_step_tolerances(13, 94)
    fav = {1: 90.91, 2: 81.82, 4: 72.73, 8: 63.64}

    def run_trial(w):
        return None, {"bond_rmsd": 0.005, "angle_rmsd": 1.0, "rama_favored": fav[w],
                      "cc_mask": 0.5 + 0.01 * w}

    _, trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0, monitored=helix,
                             refine_bracket=False, gate="previous").run(run_trial)
    assert [t.accepted for t in trials] == [True, True, True, True]   # 90.9 -> 63.6
    # best: the default
    chosen, trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0, monitored=helix,
                                  refine_bracket=False).run(run_trial)
    assert [t.accepted for t in trials] == [True, True, False]
    assert trials[2].reason == "rama_favored worsened 90.91 (best trial) -> 72.73"
    assert chosen.weight == 2
    with pytest.raises(ValueError):
        WeightSearch([1], "map", 0.02, 2.0, gate="start")


def test_trial_validation_computes_every_gating_metric():
    """Weight trials skip what no gate reads (qrefine.validation.NOT_GATING):
    never a monitored metric or the bond/angle RMSDs."""
    from qrefine.validation import NOT_GATING
    from qrefine.weights.search import MONITORED
    skipped = {name for name, on in NOT_GATING.items() if not on}
    assert skipped
    gated = set(MONITORED) | {"bond_rmsd", "angle_rmsd"}
    assert not any(g == s or g.startswith(s + "_") for g in gated for s in skipped)


def test_costly_metrics_only_for_trials_that_pass_the_others():
    """run_trial may return the clashscore as a callable: it is called for
    trials the other metrics accept (then judged on too), never for one they
    reject; the choice is the one a search with every metric up front makes."""
    table = {1: map_metrics(0.005, 97, 0.60, clash=1.0), 2: map_metrics(0.006, 97, 0.63, clash=1.5),
             4: map_metrics(0.008, 94, 0.66, clash=9.0),
             2 ** 1.5: map_metrics(0.007, 97, 0.64, clash=5.0)}
    full, _ = fake_trials(table)
    reference, reference_trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0).run(full)
    costly = []

    def run_trial(w):
        metrics = dict(table[w])
        clash = metrics.pop("clashscore")
        return None, metrics, lambda: costly.append(w) or {"clashscore": clash}

    chosen, trials = WeightSearch([1, 2, 4, 8], "map", 0.02, 2.0).run(run_trial)
    assert [t.weight for t in trials][:3] == [1, 2, 4]
    assert costly[:2] == [1, 2] and 4 not in costly       # w=4: Rama favored fell
    assert trials[2].metrics.get("clashscore") is None and not trials[2].accepted
    assert costly[2] == pytest.approx(2 ** 1.5)
    assert "clashscore worsened" in trials[3].reason      # judged on the clashscore too
    assert chosen.weight == reference.weight == 2
    assert [t.accepted for t in trials] == [t.accepted for t in reference_trials]
