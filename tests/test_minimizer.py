"""L-BFGS and the composite target on analytic functions."""

import numpy as np
import pytest

from qrefine.refine.minimizer import lbfgs
from qrefine.refine.target import CompositeTarget
from qrefine.weights.initial import gradient_norm_ratio


class Quadratic:
    def __init__(self, centre, k):
        self.centre, self.k = np.asarray(centre, float), k

    def value_and_gradient(self, x):
        d = x - self.centre
        return 0.5 * self.k * float((d * d).sum()), self.k * d


def test_lbfgs_reaches_the_weighted_minimum():
    # w*k1*(x-a) + k2*(x-b) = 0  ->  x = (w*k1*a + k2*b) / (w*k1 + k2)
    a, b = np.zeros((4, 3)), np.ones((4, 3))
    target = CompositeTarget(Quadratic(b, 2.0), Quadratic(a, 1.0), weight=3.0)
    result = lbfgs(target.value_and_gradient, np.full((4, 3), 5.0), max_iterations=50,
                   tolerance=1e-12)
    assert result.converged
    assert np.allclose(result.sites_cart, 2.0 / 5.0, atol=1e-6)
    assert result.value < result.start_value


def test_restraints_only_target():
    target = CompositeTarget(Quadratic(np.ones((2, 3)), 1.0))
    result = lbfgs(target.value_and_gradient, np.zeros((2, 3)), tolerance=1e-12)
    assert np.allclose(result.sites_cart, 1.0, atol=1e-6)


def test_iteration_limit_is_not_convergence():
    rosen = lambda x: (float(((1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2).sum()),
                       np.stack([-2 * (1 - x[:, 0]) - 400 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2),
                                 200 * (x[:, 1] - x[:, 0] ** 2), 0 * x[:, 2]], axis=1))
    result = lbfgs(rosen, np.full((1, 3), -1.5), max_iterations=3)
    assert result.iterations == 3 and not result.converged


def test_non_finite_target_raises():
    bad = type("Bad", (), {"value_and_gradient": lambda self, x: (float("nan"), x)})()
    with pytest.raises(FloatingPointError):
        CompositeTarget(bad).value_and_gradient(np.zeros((1, 3)))


def test_gradient_norm_ratio():
    assert gradient_norm_ratio(np.full((2, 3), 2.0), np.full((2, 3), 0.5)) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        gradient_norm_ratio(np.ones((1, 3)), np.zeros((1, 3)))


def _rosenbrock(x):
    value = float(((1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2).sum())
    grad = np.stack([-2 * (1 - x[:, 0]) - 400 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2),
                     200 * (x[:, 1] - x[:, 0] ** 2), 0 * x[:, 2]], axis=1)
    return value, grad


def test_capped_lbfgs_never_moves_an_atom_further_than_max_step():
    visited = []

    def recorded(x):
        visited.append(np.array(x))
        return _rosenbrock(x)

    start = np.array([[-1.5, 2.0, 0.0], [3.0, -1.0, 0.0]])
    result = lbfgs(recorded, start, max_iterations=2000, tolerance=1e-14, max_step=0.2)
    assert result.converged, result.message
    assert np.allclose(result.sites_cart[:, :2], 1.0, atol=1e-3)
    # Every trial point lies within 0.2 A (per atom) of the point it was
    # tried from; the accepted points form the path, so check consecutive
    # accepted-or-trial points against the last accepted one.
    accepted = start
    for point in visited[1:]:
        shift = np.sqrt(((point - accepted) ** 2).sum(axis=1)).max()
        assert shift <= 0.2 + 1e-12
        if _rosenbrock(point)[0] <= _rosenbrock(accepted)[0]:
            accepted = point


def test_capped_lbfgs_matches_scipy_on_a_quadratic():
    target = CompositeTarget(Quadratic(np.ones((3, 3)), 2.0), Quadratic(np.zeros((3, 3)), 1.0),
                             weight=0.5)
    capped = lbfgs(target.value_and_gradient, np.full((3, 3), 4.0), tolerance=1e-14,
                   max_step=0.5)
    free = lbfgs(target.value_and_gradient, np.full((3, 3), 4.0), tolerance=1e-14)
    assert capped.converged
    assert np.allclose(capped.sites_cart, free.sites_cart, atol=1e-6)
    # 2 (x - 1) + 0.5 x = 0
    assert np.allclose(capped.sites_cart, 0.8, atol=1e-6)
    # 4.0 -> 0.8 is 5.5 A per atom: at least 11 capped steps.
    assert capped.iterations >= 11
    with pytest.raises(ValueError):
        lbfgs(target.value_and_gradient, np.zeros((1, 3)), max_step=0.0)


@pytest.mark.parametrize("max_step", [None, 0.3])
def test_gradient_tolerance_stops_both_minimisers_at_a_small_gradient(max_step):
    start = np.array([[-1.5, 2.0, 0.0]])
    loose = lbfgs(_rosenbrock, start, max_iterations=500, tolerance=1e-16,
                  gradient_tolerance=0.5, max_step=max_step)
    assert loose.converged and "gradient" in loose.message
    assert np.linalg.norm(_rosenbrock(loose.sites_cart)[1]) <= 0.5
    tight = lbfgs(_rosenbrock, start, max_iterations=500, tolerance=1e-16,
                  gradient_tolerance=1e-4, max_step=max_step)
    assert tight.iterations > loose.iterations
    assert np.linalg.norm(_rosenbrock(tight.sites_cart)[1]) <= 1e-4
