"""L-BFGS over all atom sites.

Only arrays cross in: a function of flat coordinates returning a value and a
gradient.  The minimiser knows nothing of models, data or engines.

Two implementations behind one function:

* ``max_step=None``: scipy's L-BFGS-B.  Its line search may try points far
  along the search direction; harmless for library restraints and data
  terms, which are defined everywhere.
* ``max_step=d``: our own L-BFGS whose every trial point moves no atom more
  than ``d`` A from the current point (as ASE's optimisers and Q|R's
  ``stpmax`` do), with a backtracking (Armijo) line search.  A QM engine
  asked for a geometry with overlapping atoms fails or returns garbage
  (seen with MOPAC on the 1us0 helix: a heat of formation of +165516
  kcal/mol after a long line-search step), so QM restraints use this.
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
          callback=None, max_step=None, gradient_tolerance=None):
    """Minimise ``value_and_gradient`` from ``sites_cart`` (N, 3) with L-BFGS.

    ``tolerance`` is the relative decrease of the target between iterations
    below which the run counts as converged (scipy's ``ftol``).  ``callback``
    receives (iteration, value) after each iteration, for progress display.
    ``max_step`` (A): largest displacement of any atom in one trial step;
    None leaves steps to scipy's line search.  ``gradient_tolerance``: also
    converged when no atom's gradient (norm of its 3 components) exceeds
    this, in target units (ASE's ``fmax``); None: the target change only.
    """
    if gradient_tolerance is not None and not gradient_tolerance > 0:
        raise ValueError("gradient_tolerance must be > 0, got %s" % gradient_tolerance)
    if max_step is not None:
        return _capped_lbfgs(value_and_gradient, sites_cart, max_iterations, tolerance,
                             callback, float(max_step), gradient_tolerance)
    shape = np.asarray(sites_cart).shape
    x0 = np.asarray(sites_cart, dtype=float).ravel()
    state = {"iteration": 0, "grad": None, "small_gradient": False}

    def fun(x):
        value, grad = value_and_gradient(x.reshape(shape))
        state["grad"] = np.asarray(grad, dtype=float).ravel()
        return value, state["grad"]

    def on_iteration(intermediate_result):
        state["iteration"] += 1
        if callback is not None:
            callback(state["iteration"], intermediate_result.fun)
        if gradient_tolerance is not None and state["grad"] is not None and \
                _largest_atom_gradient(state["grad"]) <= gradient_tolerance:
            state["small_gradient"] = True
            raise StopIteration

    start_value, _ = value_and_gradient(x0.reshape(shape))
    result = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
        options={"maxiter": int(max_iterations), "ftol": float(tolerance),
                 "gtol": 1e-8, "maxcor": 10})
    # scipy reports "converged" for ftol/gtol stops; hitting maxiter is not.
    converged, message = bool(result.success), str(result.message)
    if state["small_gradient"]:
        converged, message = True, "largest atom gradient <= gradient_tolerance"
    return MinimizationResult(
        sites_cart=result.x.reshape(shape), value=float(result.fun),
        start_value=float(start_value), iterations=int(result.nit),
        evaluations=int(result.nfev) + 1, converged=converged, message=message)


def _largest_atom_gradient(grad):
    return float(np.sqrt((np.asarray(grad).reshape(-1, 3) ** 2).sum(axis=1)).max())


# Armijo sufficient-decrease constant, backtracking factor bounds, memory.
_C1 = 1e-4
_MEMORY = 10
_MAX_BACKTRACKS = 12


def _capped_lbfgs(value_and_gradient, sites_cart, max_iterations, tolerance, callback,
                  max_step, gradient_tolerance=None):
    if not max_step > 0:
        raise ValueError("max_step must be > 0 A, got %s" % max_step)
    shape = np.asarray(sites_cart).shape
    x = np.asarray(sites_cart, dtype=float).ravel().copy()
    evaluations = [0]

    def evaluate(point):
        evaluations[0] += 1
        value, grad = value_and_gradient(point.reshape(shape))
        return float(value), np.asarray(grad, dtype=float).ravel()

    f, g = evaluate(x)
    start_value = f
    s_list, y_list = [], []
    iteration, converged, message = 0, False, "maximum number of iterations reached"
    while iteration < max_iterations:
        if not np.any(g):
            converged, message = True, "zero gradient"
            break
        d = _two_loop(g, s_list, y_list)
        slope = float(g @ d)
        if not slope < 0:  # not a descent direction: forget the curvature pairs
            s_list, y_list = [], []
            d, slope = -g, -float(g @ g)
        longest = np.sqrt((d.reshape(-1, 3) ** 2).sum(axis=1)).max()
        alpha = min(1.0, max_step / longest) if longest > 0 else 1.0
        for _ in range(_MAX_BACKTRACKS):
            x_new = x + alpha * d
            f_new, g_new = evaluate(x_new)
            if f_new <= f + _C1 * alpha * slope:
                break
            # Minimum of the quadratic through f, slope and f_new, kept within
            # [0.1, 0.5] of the step so the search neither stalls nor creeps.
            denom = 2.0 * (f_new - f - slope * alpha)
            shrink = (-slope * alpha / denom) if denom > 0 else 0.5
            alpha *= min(0.5, max(0.1, shrink))
        else:
            if s_list:  # a bad curvature model; retry once from steepest descent
                s_list, y_list = [], []
                continue
            message = "line search failed to decrease the target"
            break
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-10 * float(y @ y):
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > _MEMORY:
                s_list.pop(0)
                y_list.pop(0)
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        iteration += 1
        if callback is not None:
            callback(iteration, f)
        if decrease <= tolerance * max(abs(f), abs(f + decrease), 1.0):
            converged, message = True, "relative reduction of the target <= tolerance"
            break
        if gradient_tolerance is not None and _largest_atom_gradient(g) <= gradient_tolerance:
            converged, message = True, "largest atom gradient <= gradient_tolerance"
            break
    return MinimizationResult(
        sites_cart=x.reshape(shape), value=f, start_value=start_value,
        iterations=iteration, evaluations=evaluations[0], converged=converged,
        message=message)


def _two_loop(g, s_list, y_list):
    """-H g for the L-BFGS inverse Hessian H of the stored pairs."""
    q = g.copy()
    alphas = []
    for s, y in zip(reversed(s_list), reversed(y_list)):
        a = float(s @ q) / float(y @ s)
        alphas.append(a)
        q -= a * y
    if s_list:
        s, y = s_list[-1], y_list[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y), a in zip(zip(s_list, y_list), reversed(alphas)):
        b = float(y @ q) / float(y @ s)
        q += (a - b) * s
    return -q
