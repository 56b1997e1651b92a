"""Monotonic, validation-gated search for the data weight (Q|R #3 §2.1).

Trial weights rise from small to large.  Every trial refines the same input
model at one fixed weight and is then validated.  The search stops as soon as
the bond or angle RMSD passes its limit, or a monitored geometry metric
worsens beyond its tolerance relative to the previous trial (``gate="previous"``)
or relative to the previous trial and the best value any accepted trial
reached (``gate="best"``): a larger weight only fits the data harder, so the
geometry can only get worse from there.  Against the previous trial alone, a
metric may slide one tolerated step at a time: on the 1us0 helix Rama
favored went 90.9 -> 81.8 -> 72.7 % with every step accepted.

Only numbers cross this module's boundary: a ``run_trial(weight)`` callable
returns the refined sites and a flat metrics dict (the validation keys).  The
search never sees a model, a map or an engine.  It may return a third item,
a callable giving the costly rest of the metrics (the clashscore: probe2,
seconds a trial): the search calls it only when the trial passes on the
metrics it has, so a trial that a cheap metric rejects, like the last of
most searches, costs no clashscore (its metrics lack it).  A fourth item,
when there is one, is the seconds the trial took (a trial run in another
process, :class:`qrefine.forks.ForkedTrials`, is not timed by the wait).
"""

from dataclasses import dataclass, field
import math
import time

# Geometry metrics watched between consecutive trials: name -> (direction,
# tolerance).  direction +1: larger is better.  A trial is rejected when a
# metric is worse than in the previous trial by more than its tolerance.
MONITORED = {
    "rama_favored": (+1, 1.0),      # percent
    "rama_outliers": (-1, 0.5),     # percent
    "rotamer_outliers": (-1, 1.0),  # percent
    "cbeta_deviations": (-1, 0.0),  # count: any new deviation
    "clashscore": (-1, 1.0),
}


def one_step_tolerances(n_residues, n_atoms):
    """Tolerances no finer than one residue (or one clash) of this model.

    On the 13-residue 1us0 helix one residue is 9 % of the Ramachandran
    plot and one clash 10.6 clashscore points, so the fixed tolerances
    rejected every trial after the first on a single residue's flip (and
    the refinement stopped at R-work 0.17).  Each tolerance becomes at
    least 1.5 residues' (clashes') worth, so one residue's change is
    tolerated and two are not: on 3j63_A (91 residues, 1436 atoms) 1.65 %
    and 1.04 instead of 1.0.
    """
    out = {}
    for name, (direction, tolerance) in MONITORED.items():
        if name in ("rama_favored", "rama_outliers", "rotamer_outliers") and n_residues:
            tolerance = max(tolerance, 1.5 * 100.0 / n_residues)
        elif name == "clashscore" and n_atoms:
            tolerance = max(tolerance, 1.5 * 1000.0 / n_atoms)
        out[name] = (direction, tolerance)
    return out


def default_limits(resolution, restraints="cctbx"):
    """(max bond RMSD in A, max angle RMSD in degrees) for a data resolution.

    RMSDs are measured against the cctbx library.  With library restraints
    the limits are tighter at low resolution, where the data cannot support
    deviations from ideal geometry: d <= 2 A: 0.025/2.7; d <= 3 A: 0.02/2.2;
    worse: 0.015/2.0.  The angle limits are 0.2 degrees above the ones first
    set, which were tuned on angle RMSDs measured against the start model's
    CDL: measured against the CDL of the model's own conformation
    (qrefine.model.cdl) a refined model reads 0.1-0.25 degrees higher
    (5fn5_C 0.36 -> 0.59), and at the old 1.8 one 1us0 helix start (dose
    1.5 A, start 1) stopped its search at an intermediate trial (1.89) and
    recovered 7 of 9 H-bonds, R-free 0.088, against 9 and 0.064 at 2.0.  QM restraints have their own minimum, which sits
    0.01-0.02 A away from the library's bond lengths before any data pull
    (PM7 on the 1us0 helix: 0.026 at the smallest trial weight), so they get
    the Q|R limits: 0.03/2.5 at any resolution.
    """
    if restraints == "qm":
        return 0.03, 2.5
    if resolution is None or resolution > 3.0:
        return 0.015, 2.0
    if resolution > 2.0:
        return 0.02, 2.2
    return 0.025, 2.7


def default_max_r_gap(resolution):
    """Largest acceptable R-free - R-work: 0.05 + 0.01 * d_min (0.09 at 4 A)."""
    return 0.05 + 0.01 * (resolution if resolution is not None else 3.0)


def geometric_grid(centre, factor=2.0, below=4, above=4):
    """Weights centre * factor**k for k = -below .. above, ascending."""
    return [centre * factor ** k for k in range(-below, above + 1)]


@dataclass
class Trial:
    weight: float
    metrics: dict
    seconds: float
    accepted: bool = True
    reason: str = ""
    sites: object = field(default=None, repr=False)
    rest: object = field(default=None, repr=False)  # the metrics still to compute

    def as_dict(self):
        return {"weight": self.weight, "accepted": self.accepted, "reason": self.reason,
                "seconds": round(self.seconds, 3), "metrics": self.metrics}


class WeightSearch:
    """Run trials on ``weights`` (ascending) and pick the best accepted one.

    ``kind``: "map" chooses the best CC_mask, "reflections" the lowest R-free
    whose R-free - R-work gap is within ``max_r_gap``.
    """

    def __init__(self, weights, kind, max_bond_rmsd, max_angle_rmsd, max_r_gap=None,
                 refine_bracket=True, monitored=None, extend_below=0, factor=2.0,
                 gate="best"):
        if gate not in ("previous", "best"):
            raise ValueError("gate must be 'previous' or 'best', not %r" % gate)
        self.gate = gate
        self.weights = sorted(weights)
        # When the lowest weight tried fits best, lower ones may fit better
        # still (a well-refined start model at low resolution): up to
        # ``extend_below`` more trials, each ``factor`` lower.
        self.extend_below = int(extend_below)
        self.factor = float(factor)
        self.kind = kind
        self.max_bond_rmsd = max_bond_rmsd
        self.max_angle_rmsd = max_angle_rmsd
        self.max_r_gap = max_r_gap
        self.refine_bracket = refine_bracket
        self.monitored = monitored or MONITORED  # name -> (direction, tolerance)

    def judge(self, metrics, previous, best=None):
        """'' when a trial is acceptable, else the reason it is not.
        ``best``: {metric: best value of the accepted trials} (gate="best")."""
        bond, angle = metrics.get("bond_rmsd"), metrics.get("angle_rmsd")
        if bond is not None and bond > self.max_bond_rmsd:
            return "bond RMSD %.4f > %.4f" % (bond, self.max_bond_rmsd)
        if angle is not None and angle > self.max_angle_rmsd:
            return "angle RMSD %.2f > %.2f" % (angle, self.max_angle_rmsd)
        if previous is not None:
            for name, (direction, tolerance) in self.monitored.items():
                now, before = metrics.get(name), previous.get(name)
                if now is None or before is None:
                    continue
                if direction * (before - now) > tolerance + 1e-9:
                    return "%s worsened %.2f -> %.2f" % (name, before, now)
        for name, (direction, tolerance) in self.monitored.items():
            now, top = metrics.get(name), (best or {}).get(name)
            if now is not None and top is not None and direction * (top - now) > tolerance + 1e-9:
                return "%s worsened %.2f (best trial) -> %.2f" % (name, top, now)
        return ""

    def _best_values(self, trials):
        """{metric: best value among the accepted ``trials``}, for gate="best"."""
        if self.gate != "best":
            return None
        out = {}
        for name, (direction, _) in self.monitored.items():
            values = [t.metrics.get(name) for t in trials if t.accepted]
            values = [v for v in values if v is not None]
            if values:
                out[name] = max(values) if direction > 0 else min(values)
        return out

    def _fit_key(self, metrics):
        """Smaller is better."""
        if self.kind == "map":
            cc = metrics.get("cc_mask")
            return -cc if cc is not None else math.inf
        r_free = metrics.get("r_free")
        return r_free if r_free is not None else math.inf

    def _fit_ok(self, metrics):
        if self.kind != "reflections" or self.max_r_gap is None:
            return True
        r_work, r_free = metrics.get("r_work"), metrics.get("r_free")
        return r_work is None or r_free is None or r_free - r_work <= self.max_r_gap

    def run(self, run_trial, done=(), on_trial=None, ahead=None):
        """Return (chosen Trial or None, list of all Trials in order run).

        ``done``: trials already finished (from a checkpoint), reused as they
        are.  ``on_trial(trial, trials)`` is called after each new trial.
        ``ahead(weights)``, when given, is told before each trial which
        weights will be asked for next, the current one first (the next
        grid weight is asked for only if the current one is accepted), so
        that they can run at the same time (:class:`qrefine.forks.ForkedTrials`).
        """
        finished = {round(t.weight, 12): t for t in done}
        trials = []

        def tell(weights):
            if ahead is not None:
                ahead([w for w in weights if round(w, 12) not in finished])

        def trial_at(weight):
            key = round(weight, 12)
            if key in finished:
                t = finished[key]
            else:
                t0 = time.time()
                out = run_trial(weight)
                t = Trial(weight=weight, metrics=out[1],
                          seconds=out[3] if len(out) > 3 else time.time() - t0, sites=out[0],
                          rest=out[2] if len(out) > 2 else None)
            trials.append(t)
            return t

        def judge(t, previous, best):
            """Judge ``t`` on the metrics it has; when it passes, compute the
            rest and judge again."""
            reason = self.judge(t.metrics, previous, best)
            if t.rest is not None:
                if reason == "":
                    t0 = time.time()
                    t.metrics.update(t.rest())
                    t.seconds += time.time() - t0
                    reason = self.judge(t.metrics, previous, best)
                t.rest = None
            t.accepted, t.reason = (reason == ""), reason

        last_good = None
        first_bad = None
        for i, w in enumerate(self.weights):
            tell(self.weights[i:i + 2])
            best = self._best_values(trials) if last_good else None
            t = trial_at(w)
            judge(t, last_good.metrics if last_good else None, best)
            if on_trial is not None and round(w, 12) not in finished:
                on_trial(t, trials)
            if not t.accepted:
                first_bad = t
                break
            last_good = t
        if self.refine_bracket and last_good is not None and first_bad is not None:
            w = math.sqrt(last_good.weight * first_bad.weight)
            tell([w])
            best = self._best_values(trials)
            t = trial_at(w)
            judge(t, last_good.metrics, best)
            if on_trial is not None and round(w, 12) not in finished:
                on_trial(t, trials)
        for _ in range(self.extend_below):
            best = self._best(trials)
            lowest = min(t.weight for t in trials)
            if best is None or best.weight > lowest:
                break
            # Below the grid: only the absolute limits apply, as a lower
            # weight trades fit for geometry by design.
            tell([lowest / self.factor])
            t = trial_at(lowest / self.factor)
            judge(t, None, None)
            if on_trial is not None and round(t.weight, 12) not in finished:
                on_trial(t, trials)
        tell([])
        return self._best(trials), trials

    def _best(self, trials):
        """The accepted trial with the best fit (ties: the higher weight)."""
        accepted = [t for t in trials if t.accepted and self._fit_ok(t.metrics)]
        if not accepted:
            return None
        return min(accepted, key=lambda t: (self._fit_key(t.metrics), -t.weight))
