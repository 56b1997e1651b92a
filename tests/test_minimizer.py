"""L-BFGS and the composite target on analytic functions."""

import numpy as np
import pytest

from qrefine.minimizer import lbfgs
from qrefine.target import CompositeTarget
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
