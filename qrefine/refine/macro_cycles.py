"""Macro-cycle refinement at a given (or estimated) data weight.

Each macro cycle: re-fit the data term's nuisance parameters (scales, bulk
solvent), estimate the data weight from the gradient-norm ratio unless it is
fixed, then run L-BFGS on T = w * T_data + T_restraints over all sites.
"""

from dataclasses import dataclass, field, asdict
import time

import numpy as np

from qrefine.refine.minimizer import lbfgs
from qrefine.refine.target import CompositeTarget
from qrefine.weights.initial import gradient_norm_ratio


@dataclass
class CycleRecord:
    cycle: int
    weight: float
    start_target: float
    final_target: float
    iterations: int
    evaluations: int
    converged: bool
    message: str
    seconds: float
    statistics: dict = field(default_factory=dict)

    def as_dict(self):
        return asdict(self)


def estimate_weight(restraints, data, sites_cart, scale=1.0):
    """Data weight from the gradient-norm ratio at ``sites_cart``, times ``scale``."""
    _, g_r = restraints.value_and_gradient(sites_cart)
    _, g_d = data.value_and_gradient(sites_cart)
    return scale * gradient_norm_ratio(g_r, g_d)


def refine(sites_cart, restraints, data=None, macro_cycles=5, max_iterations=100,
           tolerance=1e-5, weight=None, weight_scale=1.0, reporter=None,
           first_cycle=1, on_cycle=None, label="macro cycle", max_step=None,
           gradient_tolerance=None, adjust=None):
    """Refine ``sites_cart`` and return (final sites, list of CycleRecord).

    ``weight=None`` re-estimates the weight each macro cycle; a number fixes it.
    With ``data=None`` the restraints alone are minimised (one macro cycle
    suffices, but all requested cycles are run so convergence is checked).
    ``first_cycle`` > 1 resumes a run whose earlier cycles are done;
    ``on_cycle(record, sites)`` is called after each cycle (checkpoints);
    ``max_step`` caps the displacement of any atom per L-BFGS trial step
    (see :func:`qrefine.refine.minimizer.lbfgs`), and ``gradient_tolerance`` stops
    it when no atom's gradient of the target exceeds it.  ``adjust(sites)``,
    when given, returns the sites each macro cycle starts from (rotamer
    fitting: moves L-BFGS cannot make).
    """
    sites = np.array(sites_cart, dtype=float)
    records = []
    predicted = None  # the model target's fall in the last cycle (dual level)
    for cycle in range(first_cycle, macro_cycles + 1):
        t0 = time.time()
        if restraints.is_dual_level:
            # Dual level: one QM call per macro cycle; it may step back.
            sites = restraints.recentre(sites, predicted)
        if adjust is not None:
            sites = adjust(sites)
        # Library restraints: state set from this cycle's start sites only,
        # so a resumed run repeats an uninterrupted one bit for bit.
        restraints.start_cycle(sites)
        w = 0.0
        if data is not None:
            data.update(sites)
            w = weight if weight is not None else estimate_weight(
                restraints, data, sites, weight_scale)
        target = CompositeTarget(restraints, data, w)

        def progress(iteration, value, _cycle=cycle):
            if reporter is not None:
                reporter.progress("%s %d, iteration %d, target %.6g"
                                  % (label, _cycle, iteration, value))

        result = lbfgs(target.value_and_gradient, sites, max_iterations=max_iterations,
                       tolerance=tolerance, callback=progress, max_step=max_step,
                       gradient_tolerance=gradient_tolerance)
        sites = result.sites_cart
        predicted = result.start_value - result.value
        stats = data.statistics(sites) if data is not None else {}
        record = CycleRecord(cycle=cycle, weight=w, start_target=result.start_value,
                             final_target=result.value, iterations=result.iterations,
                             evaluations=result.evaluations, converged=result.converged,
                             message=result.message, seconds=time.time() - t0,
                             statistics=stats)
        records.append(record)
        if on_cycle is not None:
            on_cycle(record, sites)
        if reporter is not None:
            reporter.end_progress()
            reporter.info("  " + _format_cycle(record, label))
        if result.converged and result.iterations <= 1 and cycle < macro_cycles:
            # Nothing moved: more cycles at this weight would repeat this one.
            if reporter is not None:
                reporter.info("  converged at the start of the cycle; remaining macro "
                              "cycles skipped")
            break
    if restraints.is_dual_level and records:
        # Dual level: the last cycle's end has not met the QM method yet.
        # One more QM call checks it; a step that raised the QM target is
        # undone (the trust region's rule), so the result is never worse
        # than the last accepted centre.
        checked = restraints.recentre(sites, predicted)
        if not np.array_equal(checked, sites):
            sites = checked
            records[-1].statistics = data.statistics(sites) if data is not None else {}
            if reporter is not None:
                reporter.info("  the last cycle raised the QM target: its step is undone")
    return sites, records


def _format_cycle(r, label):
    stats = "  ".join("%s %.4f" % (k, v) for k, v in r.statistics.items() if v is not None)
    return (label + " %d: weight %.4g, target %.6g -> %.6g, %d iterations (%s: %s), "
            "%.1f s  %s" % (r.cycle, r.weight, r.start_target, r.final_target,
                           r.iterations, "converged" if r.converged else "not converged",
                           r.message, r.seconds, stats)).rstrip()
