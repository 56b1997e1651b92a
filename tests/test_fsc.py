"""Map-model FSC (qrefine.data.fsc): the known limits on synthetic grids, and
the statistic every map run reports (fsc_avg) on the 3j63_A map."""

import os

import numpy as np
import pytest

from qrefine.data.fsc import fsc_average, fsc_curve

FRAC = np.diag([1 / 32.0, 1 / 36.0, 1 / 40.0])  # a 32 x 36 x 40 A box on a 1 A grid


def test_fsc_of_identical_and_opposite_maps():
    a = np.random.default_rng(0).normal(size=(32, 36, 40))
    assert fsc_average(a, a, FRAC, 2.0) == pytest.approx(1.0, abs=1e-12)
    assert fsc_average(a, -a, FRAC, 2.0) == pytest.approx(-1.0, abs=1e-12)


def test_fsc_of_signal_plus_equal_noise_is_one_over_root_two():
    """FSC(a, a + n) = 1/sqrt(1 + N/S) per shell for independent white noise."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 36, 40))
    centres, fsc = fsc_curve(a, a + rng.normal(size=a.shape), FRAC, 2.0)
    assert centres.max() <= 0.5 and len(centres) >= 15
    assert np.abs(fsc[5:] - 2 ** -0.5).max() < 0.05  # inner shells hold few coefficients
    assert fsc.mean() == pytest.approx(2 ** -0.5, abs=0.02)
    assert fsc_average(a, a + 2 * rng.normal(size=a.shape), FRAC, 2.0) == \
        pytest.approx(5 ** -0.5, abs=0.03)


def test_fsc_stops_at_the_resolution():
    a = np.random.default_rng(2).normal(size=(32, 36, 40))
    centres, _ = fsc_curve(a, a, FRAC, 4.0)
    assert 0.25 - 1 / 32.0 < centres.max() <= 0.25


def test_fsc_avg_is_reported_and_falls_for_a_perturbed_model(structures):
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.model.io import read_model
    d = os.path.join(structures, "cryo_em", "3j63_A")
    model = read_model(os.path.join(d, "3j63_A_box_complete.pdb"), make_restraints=False)
    t = RealSpaceTarget(model, read_map(os.path.join(d, "3j63_A_box.ccp4")), 3.8)
    x = np.array(model.get_sites_cart())
    deposited = t.statistics(x)["fsc_avg"]
    perturbed = t.statistics(x + np.random.default_rng(3).normal(scale=0.8, size=x.shape))
    # measured: 0.772 and 0.67
    assert 0.74 < deposited < 0.80
    assert perturbed["fsc_avg"] < deposited - 0.05
