"""The refinement protocol: weight search (or a fixed weight), then the final
macro cycles at the chosen weight, with checkpoints after every trial and
every macro cycle so a killed run can resume.

Modes:
- data and ``weights.search=true`` (default): monotonic search, then final
  refinement from the chosen trial's model;
- ``data_weight=`` or ``weights.search=false``: the weight is fixed, or the
  gradient-norm ratio is re-estimated each macro cycle;
- no data term (``mode=opt`` or no data file): geometry regularisation.
"""

from dataclasses import dataclass, field

from iotbx.pdb.amino_acid_codes import one_letter_given_three_letter as AMINO_ACIDS
import numpy as np
from scitbx.array_family import flex

from qrefine import engines
from qrefine.errors import QRefineError
from qrefine.forks import ForkedTrials, can_fork
from qrefine.log import ProgressOnly
from qrefine.refine.checkpoint import Checkpoint
from qrefine.refine.macro_cycles import CycleRecord, estimate_weight, refine
from qrefine.refine.rotamers import fit_rotamer_outliers
from qrefine.restraints.factory import uses_fragments
from qrefine.validation import NOT_GATING, clashscore, validate
from qrefine.weights.adaptive import AdaptiveProtocol, AdaptiveStep, StepOutcome
from qrefine.weights.initial import DEFAULT_SCALE
from qrefine.weights.part import HeldStill, wanted as part_wanted
from qrefine.weights.search import (Trial, WeightSearch, default_limits, default_max_r_gap,
                                    geometric_grid, one_step_tolerances)


@dataclass
class ProtocolResult:
    sites: np.ndarray
    cycles: list
    trials: list = field(default_factory=list)
    chosen_weight: float = None
    adaptive: list = field(default_factory=list)   # AdaptiveSteps (weights.protocol=adaptive)
    notes: list = field(default_factory=list)
    limits: dict = field(default_factory=dict)     # the search's {metric: upper limit}
    fit_guard: dict = None                         # what the X-ray fit guard did, if it acted
    geometry_guard: dict = None                    # maps: final cycles undone, and why


def _format_metrics(m):
    parts = []
    for key, fmt in (("bond_rmsd", "bond %.4f"), ("angle_rmsd", "angle %.2f"),
                     ("rama_favored", "fav %.1f"), ("rama_outliers", "out %.1f"),
                     ("rotamer_outliers", "rota %.1f"), ("cbeta_deviations", "cb %d"),
                     ("clashscore", "clash %.1f"), ("cc_mask", "cc %.4f"), ("fsc_avg", "fsc %.4f"),
                     ("r_work", "Rw %.4f"), ("r_free", "Rf %.4f")):
        if m.get(key) is not None:
            parts.append(fmt % m[key])
    return " ".join(parts)


# Largest atom displacement per L-BFGS trial step with QM restraints (A), as
# ASE's optimisers' default maxstep: QM engines fail on the overlapping atoms
# an unbounded line search can propose.
QM_MAX_STEP = 0.2


def max_step(params):
    """refine.max_step, or its default for the restraints in use."""
    if params.refine.max_step is not None:  # checked > 0 in qrefine.config.checks
        return params.refine.max_step
    return QM_MAX_STEP if params.restraints == "qm" else None


def gradient_tolerance(params):
    return params.refine.gradient_tolerance


@dataclass(frozen=True)
class Lengths:
    """How long the refinements run: L-BFGS iterations per macro cycle,
    macro cycles of the final refinement and of each weight trial."""
    max_iterations: int
    macro_cycles: int
    trial_macro_cycles: int


# The defaults, and the shorter ones of QM restraints with a map on a model
# of more than SHORT_QM_ABOVE atoms.  Why shorter there: a QM gradient
# costs seconds (GFN-FF, one thread: 0.56 s on 1436 atoms, 7 s on 3787)
# and grows faster than the atom count; at these lengths 5fn5_C (3787
# atoms) met the Q|R comparison in 33 min on 2 cores.  Why not on small
# models: on 3j63_A (1436 atoms) the default lengths take 7.6 min and their
# longer trials stop the search at a lower weight (Rama favored 100 %
# against 98.9 %) (benchmarks/README.md section 2, "The refinement lengths
# of QM with a map").
DEFAULT_LENGTHS = Lengths(max_iterations=100, macro_cycles=5, trial_macro_cycles=2)
QM_MAP_LENGTHS = Lengths(max_iterations=60, macro_cycles=2, trial_macro_cycles=1)
SHORT_QM_ABOVE = 2000


def lengths(params, data_kind, n_atoms):
    """refine.max_iterations, refine.macro_cycles and
    weights.trial_macro_cycles, each where None from the defaults for the
    restraints, the data (``data_kind``: "map", "reflections" or None) and
    the model's size (``n_atoms``, H included)."""
    short = (params.restraints == "qm" and data_kind == "map" and n_atoms > SHORT_QM_ABOVE)
    base = QM_MAP_LENGTHS if short else DEFAULT_LENGTHS
    given = (params.refine.max_iterations, params.refine.macro_cycles,
             params.weights.trial_macro_cycles)
    return Lengths(*(int(v) if v is not None else d for v, d in zip(
        given, (base.max_iterations, base.macro_cycles, base.trial_macro_cycles))))


def run_protocol(model, restraints, data, params, paths, reporter, fingerprint,
                 start_metrics=None, part=None):
    """``start_metrics``: the start model's validation dict, when the caller
    has it already (adaptive scaling gates against it; otherwise it is
    computed again).  ``part``: a :class:`qrefine.weights.part.TrialPart`
    when the weight trials move only part of the model."""
    sites0 = model.get_sites_cart().as_numpy_array()
    ck = (Checkpoint.load(params.restart, fingerprint) if params.restart
          else Checkpoint(paths.checkpoint, fingerprint))
    ck.path = paths.checkpoint  # a resumed run goes on writing under its own prefix
    if params.restart:
        reporter.info("resuming from %s: %d trial(s) and %d macro cycle(s) already done"
                      % (params.restart, len(ck.trials), len(ck.cycles)))
    target_data = data if params.mode == "refine" else None
    scale = params.data_weight_scale
    if scale is None and data is not None:
        scale = DEFAULT_SCALE[data.kind]
    dual = bool(params.restraints == "qm" and params.qm.low_level)
    length = lengths(params, None if data is None else data.kind, model.get_number_of_atoms())
    common = dict(max_iterations=(params.qm.low_level_iterations if dual
                                  else length.max_iterations),
                  tolerance=params.refine.convergence_tolerance, reporter=reporter,
                  max_step=max_step(params),
                  gradient_tolerance=gradient_tolerance(params))
    result = ProtocolResult(sites=sites0, cycles=[])
    final_adjust = None
    if fits_rotamers(params, target_data):
        final_adjust = _rotamer_fitter(model, target_data, reporter)
    if params.weights.protocol == "adaptive" and target_data is not None:
        return _adaptive(model, sites0, restraints, target_data, params, scale, ck,
                         reporter, common, result, start_metrics), ck
    start_sites, weight = sites0, params.data_weight
    chosen = None

    if target_data is not None and params.data_weight is None and params.weights.search:
        trials, chosen = _search(model, sites0, restraints, target_data, params, scale,
                                 ck, reporter, common, part, length.trial_macro_cycles)
        result.trials = trials
        result.limits = dict(zip(("bond_rmsd", "angle_rmsd"),
                                 _validation_limits(params, target_data)))
        if chosen is None:
            chosen = trials[0]
            result.notes.append("no trial weight met the limits; the smallest weight "
                                "(%.4g) was used" % chosen.weight)
            reporter.info("note: " + result.notes[-1])
        start_sites, weight = chosen.sites, chosen.weight
        result.chosen_weight = weight
        ck.chosen_weight = weight
        reporter.info("chosen weight %.4g" % weight)

    reporter.info("")
    if target_data is None:
        what = "no data term (geometry regularisation)"
    elif weight is not None:
        what = "data weight %.4g (%s)" % (weight, "fixed" if params.data_weight else "searched")
    else:
        what = "data weight = gradient-norm ratio x %g, per macro cycle" % scale
    # With the dual level each final macro cycle is one QM call, and their
    # number is its own (qm.low_level_cycles), not refine.macro_cycles.
    final_cycles = params.qm.low_level_cycles if dual else length.macro_cycles
    reporter.info("Final refinement: restraints=%s, mode=%s, %s; %d macro cycle(s) of at most "
                  "%d L-BFGS iterations" % (params.restraints, params.mode, what, final_cycles,
                                            common["max_iterations"]))

    first_cycle = len(ck.cycles) + 1
    if ck.cycles:
        start_sites = ck.sites
        result.cycles = [CycleRecord(**c) for c in ck.cycles]

    def save_cycle(record, sites):
        ck.cycles.append(record.as_dict())
        ck.sites = sites
        ck.save()

    sites, cycles = refine(start_sites, restraints, target_data,
                           macro_cycles=final_cycles, weight=weight,
                           weight_scale=scale, first_cycle=first_cycle, on_cycle=save_cycle,
                           **dict(common, adjust=final_adjust))
    # Not after trials on a part: the chosen trial moved only the part, so
    # its model is no alternative to the whole refinement (5ly6: the guard
    # returned it, 6,397 of 7,399 atoms as they started, clashscore 67).
    if target_data is not None and target_data.kind == "map" and chosen is not None \
            and chosen.accepted and chosen.sites is not None and part is None:
        sites = _guard_geometry(model, sites0, sites, target_data, params, result, chosen,
                                reporter)
    if final_adjust is not None:
        # The last cycle's map gradient pulls some fitted side chains back
        # into outliers (3j63_A: two of four); a last rigid fit keeps the
        # bond geometry the cycle left.
        sites = final_adjust(sites)
    result.sites = sites
    result.cycles += cycles
    if target_data is not None and target_data.kind == "reflections" \
            and params.weights.max_r_free_rise is not None:
        _guard_fit(model, sites0, target_data, params, result, start_metrics, reporter)
    return result, ck


def _guard_geometry(model, sites0, sites, data, params, result, chosen, reporter):
    """Maps: the final macro cycles, at the chosen weight, must keep the
    geometry the chosen trial was accepted on (the search's limits and
    one-step tolerances against that trial, and no new Ramachandran
    outlier); otherwise the chosen trial's model is the result.  Why: the
    final refinement runs more cycles than a trial and nothing gates them;
    on 3j63_A with GFN-FF the trial at 0.983
    had Rama favored 97.8 % and no outliers, its final refinement 95.5 %
    and 3.4 % outliers, at the same CC_mask (0.713)."""
    monitored = dict(_monitored(model))
    # A new Ramachandran outlier is a defect, not one residue's noise: the
    # final cycles may add none (3j63_A, GFN-FF with qm.clash_restraint: the
    # trial had none, the final cycles one, within the search's one-residue
    # tolerance).  Half a residue's worth: rounding is no new outlier.
    monitored["rama_outliers"] = (-1, 50.0 / max(1, _n_residues(model)))
    judge = WeightSearch([chosen.weight], data.kind, *_validation_limits(params, data),
                         monitored=monitored, gate="previous")
    metrics = _validate_at(model, sites, sites0, data, with_clashscore=False)
    reason = judge.judge(metrics, chosen.metrics)
    if reason == "" and chosen.metrics.get("clashscore") is not None:
        metrics.update(_clashscore_at(model, sites, sites0))
        reason = judge.judge(metrics, chosen.metrics)
    if reason == "":
        return sites
    note = ("the final macro cycles worsened the geometry of the chosen trial (%s); the "
            "chosen trial's model (weight %.4g) is the result" % (reason, chosen.weight))
    result.notes.append(note)
    result.geometry_guard = {"reason": reason, "weight": chosen.weight,
                             "final_cycles": {k: metrics.get(k) for k in judge.monitored}}
    reporter.info("note: " + note)
    return np.array(chosen.sites, dtype=float)


def _guard_fit(model, sites0, data, params, result, start_metrics, reporter):
    """The X-ray fit guard: a refinement must not leave R-free worse than
    it found it (by more than weights.max_r_free_rise).

    The final model is the one refined longest at the chosen weight; when its
    R-free ends above the bound, the accepted weight trial with the lowest
    R-free within the bound whose monitored geometry is no worse than the
    start's (within the search's one-step tolerances) replaces it, else the
    start model.  Why it
    happens: a start already refined against these data (the deposited or a
    phenix.refine model) sits at a fit the library restraints and the weight
    grid do not reproduce, and a data set without a usable free set gives a
    start 'R-free' the start was refined against.
    """
    start = start_metrics if start_metrics is not None else _validate_at(
        model, sites0, sites0, data)
    if start.get("r_free") is None:
        return
    bound = start["r_free"] + params.weights.max_r_free_rise
    data.update(result.sites)
    if data.statistics(result.sites)["r_free"] <= bound:
        return  # the usual case: no validation needed here
    final = _validate_at(model, result.sites, sites0, data)
    tolerances = _monitored(model)

    def no_worse_than_start(metrics):
        # A fallback must not trade the start's geometry for its fit: on
        # 2ona the lowest-R-free accepted trial had Rama favored 87.5 %
        # against the start's 100 and Rama-Z -3.99 against -1.23.
        return all(metrics.get(k) is None or start.get(k) is None
                   or direction * (metrics[k] - start[k]) >= -tolerance
                   for k, (direction, tolerance) in tolerances.items())

    candidates = [t for t in result.trials
                  if t.accepted and t.metrics.get("r_free") is not None
                  and t.metrics["r_free"] <= bound and no_worse_than_start(t.metrics)]
    best = min(candidates, key=lambda t: t.metrics["r_free"]) if candidates else None
    kept = best.metrics if best is not None else start
    result.sites = np.array(best.sites if best is not None else sites0)
    better = [label for key, label, sign in (
        ("bond_rmsd", "bond RMSD", -1), ("angle_rmsd", "angle RMSD", -1),
        ("rama_favored", "Rama favored", +1), ("rama_z_whole", "|Rama-Z|", None),
        ("clashscore", "clashscore", -1))
        if start.get(key) is not None and final.get(key) is not None and (
            abs(final[key]) < abs(start[key]) if sign is None
            else sign * (final[key] - start[key]) > 0)]
    why = []
    if any("new flags generated" in n for n in getattr(data, "notes", ())):
        why.append("the data's free set was unusable, so new flags were drawn: the start was "
                   "refined against these 'free' reflections and its R-free is not a free R")
    if result.trials and not any(t.accepted for t in result.trials):
        why.append("no trial weight met the limits (the start itself may not: R-free - R-work "
                   "%.3f)" % (start["r_free"] - start["r_work"]))
    if not why and final.get("r_work") is not None and final["r_work"] < start["r_work"]:
        why.append("R-work fell %.4f -> %.4f while R-free rose: the chosen weight fits the "
                   "data's noise (over-fitting)" % (start["r_work"], final["r_work"]))
    if not why:
        why.append("the start was refined against these data with other restraints or "
                   "weights, and the restraints pull it away from that fit")
    note = ("fit guard: the final refinement ended at R-free %.4f, above the start's %.4f + "
            "%.3f%s; %s; so the model written is %s (R-free %.4f)" % (
                final["r_free"], start["r_free"], params.weights.max_r_free_rise,
                (" while its geometry got better (%s)" % ", ".join(better)) if better else "",
                "; ".join(why),
                "the weight trial w=%.4g" % best.weight if best is not None
                else "the start model, unchanged", kept["r_free"]))
    result.notes.append(note)
    reporter.info("note: " + note)
    result.fit_guard = {"start_r_free": start["r_free"], "refined_r_free": final["r_free"],
                        "bound": bound, "geometry_better": better, "why": why,
                        "kept": ("trial w=%.6g" % best.weight) if best is not None else "start",
                        "kept_r_free": kept["r_free"]}


def _validation_limits(params, data):
    max_bond, max_angle = default_limits(params.resolution if data.kind == "map"
                                         else _d_min(data), params.restraints)
    if params.weights.max_bond_rmsd is not None:
        max_bond = params.weights.max_bond_rmsd
    if params.weights.max_angle_rmsd is not None:
        max_angle = params.weights.max_angle_rmsd
    return max_bond, max_angle


def _n_residues(model):
    return sum(1 for rg in model.get_hierarchy().residue_groups()
               if rg.atom_groups()[0].resname.strip() in AMINO_ACIDS)


def _monitored(model):
    return one_step_tolerances(_n_residues(model), model.get_number_of_atoms())


def _validate_at(model, sites, sites0, data, with_clashscore=True):
    """Validation metrics of ``sites`` (the model is put back at ``sites0``)."""
    model.set_sites_cart(flex.vec3_double(sites))
    data.update(sites)
    metrics = validate(model, data_statistics=data.statistics(sites), clashscore=with_clashscore,
                       **NOT_GATING).as_dict()
    metrics.pop("notes", None)
    model.set_sites_cart(flex.vec3_double(sites0))
    return metrics


def _clashscore_at(model, sites, sites0):
    """{"clashscore": ...} of ``sites`` (the model is put back at ``sites0``)."""
    model.set_sites_cart(flex.vec3_double(sites))
    try:
        return {"clashscore": clashscore(model)}
    finally:
        model.set_sites_cart(flex.vec3_double(sites0))


def _adaptive(model, sites0, restraints, data, params, scale, ck, reporter, common, result,
              start_metrics=None):
    """weights.protocol=adaptive: seed 004's force scaling, one short
    minimisation per step (qrefine.weights.adaptive)."""
    w = params.weights
    data.update(sites0)
    k0 = params.data_weight or estimate_weight(restraints, data, sites0, scale)
    max_bond, max_angle = _validation_limits(params, data)
    protocol = AdaptiveProtocol(k0, w.adaptive_alpha, w.adaptive_smoothing, w.adaptive_steps,
                                w.adaptive_max_force, _monitored(model), max_bond, max_angle)
    reporter.info("")
    origin = ("data_weight" if params.data_weight
              else "gradient-norm ratio x %g" % scale)
    reporter.info("Adaptive force scaling (seed 004): k0 %.4g (%s), alpha %g, moving-average "
                  "smoothing %g, up to %d steps of %d L-BFGS iterations; gates: bond %.4f, "
                  "angle %.2f, geometry no worse than in the previous step or the start, "
                  "restraint force < %g x the first step's"
                  % (k0, origin, w.adaptive_alpha, w.adaptive_smoothing, w.adaptive_steps,
                     w.adaptive_iterations, max_bond, max_angle, w.adaptive_max_force))
    if start_metrics is None:
        start_metrics = _validate_at(model, sites0, sites0, data)

    def run_step(k, sites):
        settings = dict(common, max_iterations=w.adaptive_iterations, reporter=None)
        new_sites, records = refine(sites, restraints, data, macro_cycles=1, weight=k,
                                    label="  adaptive k=%.4g step" % k, **settings)
        record = records[0]
        _, g_r = restraints.value_and_gradient(new_sites)
        return StepOutcome(
            sites=new_sites, similarity=-float(data.value_and_gradient(new_sites)[0]),
            max_restraint_force=float(np.sqrt((np.asarray(g_r) ** 2).sum(axis=1)).max()),
            metrics=_validate_at(model, new_sites, sites0, data),
            moved=not (record.converged and record.iterations <= 1), record=record)

    def on_step(step):
        record = step.record
        record.cycle = step.step
        ck.adaptive.append(step.as_dict())
        ck.adaptive_sites.append(step.sites)
        ck.cycles.append(record.as_dict())
        ck.save()
        reporter.info("  step %2d  k %-10.4g S %-12.6g avg %-12s %-7s -> k %-10.4g "
                      "%s  %s  (%.1f s)%s" % (
                          step.step, step.k, step.similarity,
                          "-" if step.smoothed is None else "%.6g" % step.smoothed, step.change,
                          step.next_k, "ok  " if step.accepted else "UNDO",
                          _format_metrics(step.metrics), step.seconds,
                          "  " + step.reason if step.reason else ""))

    done = [AdaptiveStep.from_dict(d, sites=s, record=CycleRecord(**c))
            for d, s, c in zip(ck.adaptive, ck.adaptive_sites, ck.cycles)]
    for step in done:
        reporter.info("  step %2d  k %-10.4g S %-12.6g (from checkpoint)"
                      % (step.step, step.k, step.similarity))
    accepted, steps, why = protocol.run(run_step, sites0, start_metrics, done=done,
                                        on_step=on_step)
    reporter.info("adaptive force scaling stopped: %s" % why)
    result.adaptive = steps
    result.notes.append("adaptive force scaling: %d step(s), %d kept, final k %.4g; stopped: "
                        "%s" % (len(steps), len(accepted),
                                accepted[-1].k if accepted else k0, why))
    if accepted:
        result.sites = accepted[-1].sites
        result.chosen_weight = accepted[-1].k
    result.cycles = [s.record for s in accepted]
    return result


def fits_rotamers(params, data):
    """Rotamer outliers are refitted (:mod:`qrefine.refine.rotamers`) when
    asked, in a refinement against a map: the fit needs density anywhere."""
    return bool(params.refine.fit_rotamers and params.mode == "refine" and data is not None
                and hasattr(data, "density_at"))


def _rotamer_fitter(model, data, reporter):
    """adjust(sites) for :func:`refine`: rotamer outliers refitted at the
    start of each macro cycle (the map pulls a fitted side chain back into
    an outlier within a cycle or two otherwise: 3j63_A, LEU A12)."""
    def adjust(sites):
        new, fitted, _ = fit_rotamer_outliers(model, sites, data.density_at)
        if fitted and reporter is not None:
            reporter.info("  rotamer outliers refitted: %s"
                          % ", ".join(f.residue for f in fitted))
        return new
    return adjust


def _search(model, sites0, restraints, data, params, scale, ck, reporter, common, part=None,
            trial_cycles=DEFAULT_LENGTHS.trial_macro_cycles):
    data.update(sites0)
    w0 = estimate_weight(restraints, data, sites0, scale)
    trial_restraints, trial_data = restraints, data
    if part is not None:
        # Only the part moves (qrefine.weights.part); w0 stays the whole
        # model's ratio, which a representative part shares.
        trial_restraints = HeldStill(part.restraints or restraints, part.mask)
        trial_data = HeldStill(data, part.mask)
    grid = list(params.weights.trials) if params.weights.trials else geometric_grid(
        w0, factor=params.weights.grid_factor, below=params.weights.grid_below,
        above=params.weights.grid_above)
    max_bond, max_angle = _validation_limits(params, data)
    max_gap = None
    if data.kind == "reflections":
        max_gap = (params.weights.max_r_gap if params.weights.max_r_gap is not None
                   else default_max_r_gap(_d_min(data)))
    search = WeightSearch(grid, data.kind, max_bond, max_angle, max_gap,
                          refine_bracket=params.weights.refine_bracket,
                          extend_below=0 if params.weights.trials else params.weights.extend_below,
                          factor=params.weights.grid_factor,
                          monitored=_monitored(model), gate=params.weights.gate)
    reporter.info("")
    reporter.info("Weight search: gradient-norm ratio x %g = %.4g; %d trial weights %.4g .. "
                  "%.4g; limits bond %.4f, angle %.2f%s" % (
                      scale, w0, len(grid), grid[0], grid[-1], max_bond, max_angle,
                      ", R-free - R-work %.3f" % max_gap if max_gap is not None else ""))
    reporter.info("  each trial: %d macro cycle(s) of at most %d L-BFGS iterations "
                  "(weights.trial_macro_cycles, refine.max_iterations)"
                  % (trial_cycles, common["max_iterations"]))
    if part is not None:
        reporter.info("  trials refine a part of the model: %d of %d atoms (%d residues around "
                      "its centre, weights.part_atoms=%d), the rest held still%s" % (
                          int(part.mask.sum()), len(part.mask), len(part.residues),
                          params.weights.part_atoms,
                          "; QM restraints for the part alone" if part.restraints is not None
                          else ""))

    def run_trial(weight, quiet=False):
        # The trial's refinement shows a live line on a terminal; the log
        # gets the one trial line (save_trial).  quiet: in a forked child,
        # which must not write to the log or the terminal it shares.
        live = ProgressOnly(None if quiet else reporter,
                            "weight trial %d: " % (len(ck.trials) + 1))
        sites, _ = refine(sites0, trial_restraints, trial_data,
                          macro_cycles=trial_cycles,
                          weight=weight, label="w=%.4g cycle" % weight,
                          **dict(common, reporter=live))
        live.progress("w=%.4g validating" % weight)
        # the clashscore only if the other metrics pass (WeightSearch.run)
        return (sites, _validate_at(model, sites, sites0, data, with_clashscore=False),
                lambda: _clashscore_at(model, sites, sites0))

    def save_trial(trial, trials):
        ck.trials.append(trial.as_dict())
        ck.trial_sites.append(trial.sites)
        ck.save()
        reporter.info("  trial w=%-10.4g %s  %s  (%.1f s)%s" % (
            trial.weight, "ok  " if trial.accepted else "STOP", _format_metrics(trial.metrics),
            trial.seconds, "  " + trial.reason if trial.reason else ""))

    done = [Trial(weight=t["weight"], metrics=t["metrics"], seconds=t["seconds"],
                  accepted=t["accepted"], reason=t["reason"], sites=s)
            for t, s in zip(ck.trials, ck.trial_sites)]
    for t in done:
        reporter.info("  trial w=%-10.4g %s  %s  (from checkpoint)" % (
            t.weight, "ok  " if t.accepted else "STOP", _format_metrics(t.metrics)))
    workers = parallel_trials(params, len(sites0), data.kind)
    if workers > 1 and part is None:
        reporter.info("  %d trials at a time, each in a forked process (nproc=%d)"
                      % (workers, params.nproc))
        forked = ForkedTrials(lambda weight: run_trial(weight, quiet=True), workers)
        try:
            chosen, trials = search.run(forked, done=done, on_trial=save_trial,
                                        ahead=forked.ahead)
        finally:
            forked.close()
    else:
        chosen, trials = search.run(run_trial, done=done, on_trial=save_trial)
    if ck.chosen_weight is not None and chosen is not None and \
            abs(ck.chosen_weight - chosen.weight) > 1e-9 * chosen.weight:
        raise QRefineError("checkpoint %s chose weight %g but the resumed search chose %g; "
                           "rerun without restart=" % (ck.path, ck.chosen_weight, chosen.weight))
    return trials, chosen


def parallel_trials(params, n_atoms, data_kind):
    """How many weight trials run at once, each in a forked copy of this
    process (qrefine.forks): ``nproc`` for a weight search with library
    restraints or whole-model QM by an in-process engine (xtb, PySCF): each
    trial is a function of the start alone, so the next one can run while
    this one is judged.  Otherwise 1: QM on fragments and trials on a part
    (weights.part_atoms) use the cores for their own worker processes,
    which a fork must not copy, and an engine that runs a program (MOPAC,
    ORCA, ...) writes in one work directory per calculator, which two
    trials would share.  With parallel trials each process runs its engine
    with one thread (limit_engine_threads): an engine library's OpenMP
    threads must not be forked mid-run."""
    searching = (data_kind is not None and params.mode == "refine" and params.weights.search
                 and params.data_weight is None and params.weights.protocol == "search")
    if not searching or params.nproc < 2 or not can_fork():
        return 1
    if params.restraints == "qm":
        if not getattr(engines.engine_module(params.engine), "IN_PROCESS", False):
            return 1
        if uses_fragments(params, n_atoms):
            return 1
        if data_kind == "map" and not params.qm.low_level and part_wanted(
                n_atoms, params.weights.part_atoms):
            return 1
    return params.nproc


def _d_min(data):
    f_obs = getattr(data, "fmodel", None)
    return f_obs.f_obs().d_min() if f_obs is not None else None
