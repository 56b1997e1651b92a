"""Adaptive force scaling (seed 004, Blau, Yvonnesdotter and Lindahl), for a
minimiser instead of molecular dynamics.

The data weight k starts low and is changed after every short minimisation
step by how the similarity S between model and map moved:

- its exponential moving average rose: k / (1 + alpha);
- it fell, or stalled (see :data:`STALL`): k * (1 + 2 alpha).

The larger increase than decrease makes the data's influence grow whenever
the restraints pull the model out of the density, and shrink while the model
still climbs into it unaided, so the data push only as hard as they must.
In the seed alpha = N_fit dt / tau couples the rule to the MD time step; here
one step is ``adaptive_iterations`` L-BFGS iterations and alpha is given
directly.

Stopping (whichever comes first):
- a validation gate: a monitored geometry metric worse than in the previous
  kept step, or than at the start, by more than its one-step tolerance (the
  search's gate, plus the start so that no slow slide of small steps passes),
  or the bond / angle RMSD above its limit and rising.  The failing step is
  undone and k lowered by 1 + 2 alpha; :data:`MAX_UNDONE` such steps in a
  row end the protocol;
- the seed's criterion, forces too large: the largest per-atom restraint
  force exceeds ``max_force_factor`` times its value after the first step
  (the step is kept);
- convergence: a step that did not move the model and left k unchanged;
- the step limit.

As in :mod:`qrefine.weights.search`, only numbers cross this module's
boundary: ``run_step(k, sites)`` returns what one step did.
"""

from dataclasses import dataclass, field
import time


@dataclass
class StepOutcome:
    """What ``run_step`` returns: the new sites (opaque here), S, the largest
    per-atom restraint force, the validation metrics, whether anything moved
    and the step's macro-cycle record (opaque)."""
    sites: object
    similarity: float
    max_restraint_force: float
    metrics: dict
    moved: bool = True
    record: object = None


@dataclass
class AdaptiveStep:
    step: int
    k: float
    similarity: float
    smoothed: float
    change: str   # the moving average: first, rose, stalled, fell, flat; or undone
    next_k: float
    max_restraint_force: float
    metrics: dict
    seconds: float
    accepted: bool = True
    reason: str = ""
    moved: bool = True
    sites: object = field(default=None, repr=False)
    record: object = field(default=None, repr=False)

    def as_dict(self):
        return {"step": self.step, "k": self.k, "similarity": self.similarity,
                "smoothed_similarity": self.smoothed, "change": self.change,
                "next_k": self.next_k, "max_restraint_force": self.max_restraint_force,
                "accepted": self.accepted, "reason": self.reason, "moved": self.moved,
                "seconds": round(self.seconds, 3), "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d, sites=None, record=None):
        """The inverse of :meth:`as_dict` (a checkpoint's finished step)."""
        return cls(step=d["step"], k=d["k"], similarity=d["similarity"],
                   smoothed=d["smoothed_similarity"], change=d["change"], next_k=d["next_k"],
                   max_restraint_force=d["max_restraint_force"], metrics=d["metrics"],
                   seconds=d["seconds"], accepted=d["accepted"], reason=d["reason"],
                   moved=d["moved"], sites=sites, record=record)


# A minimiser, unlike MD, climbs into the density at any k > 0 until it
# converges, so a plain "rose" test would only ever lower k.  A rise smaller
# than STALL times the largest rise so far counts as a fall: the model has
# stopped gaining at this k, which is when the seed's thermal noise would
# start to lose similarity.  Without it the 1us0 helix from its 1.5 A starts
# ended at k 1/40 of its start, 1.05 A from the answer.
STALL = 0.1

# Steps undone in a row (each after k was lowered by 1 + 2 alpha) before the
# gates end the protocol.  One undone step is common: a first step of the
# 1.5 A helix start at k0 made two clashes (clashscore 0 -> 21) that a
# smaller k avoids.
MAX_UNDONE = 3


class ForceScaling:
    """The seed's rule on a stream of similarities."""

    def __init__(self, k, alpha, smoothing=0.5):
        if not alpha > 0:
            raise ValueError("alpha must be > 0")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        self.k, self.alpha, self.smoothing = float(k), float(alpha), float(smoothing)
        self.average = None
        self.largest_rise = 0.0

    def observe(self, similarity):
        """Update the moving average with ``similarity``, then k; return what
        the average did: "first", "rose", "stalled" (risen less than STALL x
        its largest rise), "fell", or "flat" (never moved at all)."""
        if self.average is None:
            self.average = float(similarity)
            return "first"
        new = self.smoothing * self.average + (1.0 - self.smoothing) * float(similarity)
        rise = new - self.average
        self.average = new
        self.largest_rise = max(self.largest_rise, rise)
        if rise > STALL * self.largest_rise and rise > 0:
            self.k /= 1.0 + self.alpha
            return "rose"
        if rise == 0 and self.largest_rise == 0:
            return "flat"
        self.k *= 1.0 + 2.0 * self.alpha
        return "fell" if rise < 0 else "stalled"


def gate(metrics, previous, start, monitored, max_bond, max_angle):
    """'' when a step passes the validation gates, else the reason.

    ``previous``: the last kept step's metrics (the start's before any);
    ``start``: the start model's.  The bond and angle RMSD may exceed their
    limits only while falling (a distorted start may begin above them).
    """
    for name, limit, fmt in (("bond_rmsd", max_bond, "%.4f"), ("angle_rmsd", max_angle, "%.2f")):
        now, before = metrics.get(name), previous.get(name)
        if now is not None and limit is not None and now > limit and \
                (before is None or now > before):
            return ("%s " + fmt + " > " + fmt + " and rising") % (name, now, limit)
    for name, (direction, tolerance) in monitored.items():
        now = metrics.get(name)
        for label, ref in (("the previous step", previous.get(name)),
                           ("the start", start.get(name))):
            if now is not None and ref is not None and \
                    direction * (ref - now) > tolerance + 1e-9:
                return "%s %.2f is worse than at %s (%.2f)" % (name, now, label, ref)
    return ""


class AdaptiveProtocol:
    def __init__(self, k0, alpha, smoothing, steps, max_force_factor, monitored,
                 max_bond_rmsd, max_angle_rmsd):
        self.k0 = float(k0)
        self.alpha, self.smoothing = alpha, smoothing
        self.steps = int(steps)
        self.max_force_factor = float(max_force_factor)
        self.monitored = monitored
        self.max_bond_rmsd, self.max_angle_rmsd = max_bond_rmsd, max_angle_rmsd

    def run(self, run_step, sites0, start_metrics, done=(), on_step=None):
        """Return (accepted AdaptiveSteps, all AdaptiveSteps, why it stopped).

        ``done``: steps finished before a restart (AdaptiveStep, in order,
        with sites), replayed through the rule so k and the average are
        exactly where they were.
        """
        scaling = ForceScaling(self.k0, self.alpha, self.smoothing)
        previous, sites = start_metrics, sites0
        accepted, steps = [], []
        first_force = None
        undone = 0
        done = list(done)
        for n in range(1, self.steps + 1):
            if done:
                step = done.pop(0)
                if step.accepted:
                    scaling.observe(step.similarity)
                scaling.k = step.next_k
            else:
                t0 = time.time()
                k = scaling.k
                out = run_step(k, sites)
                reason = gate(out.metrics, previous, start_metrics, self.monitored,
                              self.max_bond_rmsd, self.max_angle_rmsd)
                if reason:
                    # The data pushed too hard: back off as one push's worth.
                    change = "undone"
                    scaling.k /= 1.0 + 2.0 * self.alpha
                else:
                    change = scaling.observe(out.similarity)
                step = AdaptiveStep(step=n, k=k, similarity=out.similarity,
                                    smoothed=scaling.average, change=change, next_k=scaling.k,
                                    max_restraint_force=out.max_restraint_force,
                                    metrics=out.metrics, seconds=time.time() - t0,
                                    accepted=not reason, reason=reason, moved=out.moved,
                                    sites=out.sites, record=out.record)
                if on_step is not None:
                    on_step(step)
            steps.append(step)
            if not step.accepted:
                undone += 1
                if undone >= MAX_UNDONE:
                    return accepted, steps, ("validation gate, %d steps in a row: %s"
                                             % (undone, step.reason))
                continue
            undone = 0
            accepted.append(step)
            previous, sites = step.metrics, step.sites
            if first_force is None:
                first_force = step.max_restraint_force
            elif first_force > 0 and \
                    step.max_restraint_force > self.max_force_factor * first_force:
                return accepted, steps, ("restraint forces grew %.1f-fold (limit %g): the data "
                                         "dominate" % (step.max_restraint_force / first_force,
                                                       self.max_force_factor))
            if not step.moved and step.change in ("flat", "first"):
                return accepted, steps, "converged: the step did not move the model"
        return accepted, steps, "step limit (%d) reached" % self.steps
