"""L-BFGS over all atom sites.

Only arrays cross in: a function of flat coordinates returning a value and a
gradient.  The minimiser knows nothing of models, data or engines.
"""

from dataclasses import dataclass

import numpy as np
import scipy.optimize


@dataclass
class MinimizationResult:
    sites_cart: np.ndarray
    value: float
    start_value: float
    iterations: int
    evaluations: int
    converged: bool
    message: str


def lbfgs(value_and_gradient, sites_cart, max_iterations=100, tolerance=1e-5,
          callback=None):
    """Minimise ``value_and_gradient`` from ``sites_cart`` (N, 3) with L-BFGS.

    ``tolerance`` is the relative decrease of the target between iterations
    below which the run counts as converged (scipy's ``ftol``).  ``callback``
    receives (iteration, value) after each iteration, for progress display.
    """
    shape = np.asarray(sites_cart).shape
    x0 = np.asarray(sites_cart, dtype=float).ravel()
    state = {"iteration": 0, "value": None}

    def fun(x):
        value, grad = value_and_gradient(x.reshape(shape))
        state["value"] = value
        return value, np.asarray(grad, dtype=float).ravel()

    def on_iteration(xk):
        state["iteration"] += 1
        if callback is not None:
            callback(state["iteration"], state["value"])

    start_value, _ = value_and_gradient(x0.reshape(shape))
    result = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
        options={"maxiter": int(max_iterations), "ftol": float(tolerance),
                 "gtol": 1e-8, "maxcor": 10})
    # scipy reports "converged" for ftol/gtol stops; hitting maxiter is not.
    return MinimizationResult(
        sites_cart=result.x.reshape(shape), value=float(result.fun),
        start_value=float(start_value), iterations=int(result.nit),
        evaluations=int(result.nfev) + 1, converged=bool(result.success),
        message=str(result.message))
