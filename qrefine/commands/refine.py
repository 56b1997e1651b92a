"""qr.refine: inputs -> model/data -> target -> minimiser -> validation ->
outputs.  No printing: progress goes through the Reporter, and the result
comes back as a :class:`RefineResult` for the script to report."""

from dataclasses import dataclass
import datetime
import os
import time

from scitbx.array_family import flex

from qrefine import __version__, provenance
from qrefine.config import phil as params_mod
from qrefine.config.checks import check_refine, is_force_field
from qrefine.config.options import freeze
from qrefine.data.density import DensityTarget
from qrefine.data.maps import read_map
from qrefine.data.real_space import RealSpaceTarget
from qrefine.data.reciprocal_space import ReciprocalSpaceTarget, choose_target
from qrefine.data.reflections import read_reflections
from qrefine.errors import QRefineError, output_error
from qrefine.finalise.readiness import require_qm_ready
from qrefine.forks import single_threaded_blas
from qrefine.model import chem_data
from qrefine.model import io as model_io
from qrefine.outputs import write_model
from qrefine.refine.checkpoint import file_sha256, fingerprint
from qrefine.refine.protocol import fits_rotamers, lengths, parallel_trials, run_protocol
from qrefine.refine.rotamers import fit_rotamer_outliers
from qrefine.restraints.clash import ONSET as CLASH_ONSET
from qrefine.restraints.factory import (build_part_restraints, build_restraints, clash_weight,
                                       expands_symmetry, uses_ramachandran)
from qrefine.restraints.fragment_qm import FragmentQMRestraints
from qrefine.validation import validate
from qrefine.validation.hbonds import count_intercopy_hbonds
from qrefine.weights import part as trial_part
from qrefine.weights.plot import plot_weight_search


def build_data_target(model, data_path, data_kind, params):
    if data_kind == "map":
        map_data = read_map(data_path)  # the target checks the model lies in the map
        if params.map.target != "cctbx":
            target = DensityTarget(model, map_data, params.resolution, score=params.map.target)
            return target, ["map target: %s between the map and a Gaussian model density "
                            "(non-H atoms, sigma %.2f A; seed 004)" % (params.map.target,
                                                                       target.gaussian.sigma)]
        return RealSpaceTarget(model, map_data, params.resolution), []
    reflections = read_reflections(
        data_path, model.crystal_symmetry(), labels=params.reflections.labels,
        r_free_label=params.r_free_flags.label)
    target_name, note = choose_target(params.reflections.target, reflections)
    if note:
        reflections.notes.append(note)
    target = ReciprocalSpaceTarget(model, reflections, target=target_name,
                                   bulk_solvent=params.reflections.bulk_solvent,
                                   update_scales=params.reflections.update_scales)
    return target, list(target.notes)


# Engines whose OpenMP runtime reads OMP_NUM_THREADS when it loads (xtb in
# process, MOPAC as a child process).  PySCF sets its own (one thread).
_OPENMP_ENGINES = ("xtb", "mopac")


def limit_engine_threads(params, trials_at_once=1):
    """Give OpenMP engines ``nproc`` threads unless OMP_NUM_THREADS is set.

    Left alone, they take every core, and on a machine shared with other
    work their threads wait on each other: one GFN2-xTB gradient of the
    1us0 helix took 5.6 s with 2 threads on 2 busy cores against 0.34 s
    with one.  ``nproc`` is the number of cores qrefine may use.  Fragment
    worker processes set their own (cores / nproc).  When weight trials run
    ``trials_at_once`` at a time (one process each), every process gets one
    thread: the cores are the processes', and an engine's OpenMP runtime
    that has started threads must not be forked.
    """
    if params.restraints == "qm" and params.engine in _OPENMP_ENGINES:
        threads = 1 if trials_at_once > 1 else max(1, int(params.nproc))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def limit_blas_threads(params):
    """One thread for the BLAS bundled with numpy and with scipy (the
    L-BFGS-B minimiser's vector operations), except for PySCF, whose matrix
    algebra runs on numpy's.  Their default, one thread per core, makes a
    refinement's sums depend on the machine's core count: on 5fn5_C the
    first weight trial's bond RMSD came out 0.00188 with two threads and
    0.00190 with one, and the refined models differed by two residues in
    Rama favored (93.78 against 94.61 %).  The threads bought no time either
    (3j63_A: 33.6 against 28.1 CPU s, the same wall time).  Trial processes
    use one thread too (qrefine.forks), so nproc=2 gives the model nproc=1
    does."""
    if not (params.restraints == "qm" and params.engine == "pyscf"):
        single_threaded_blas()


@dataclass(frozen=True)
class RefineResult:
    """What one refinement produced: its summary (the ``_summary.json``
    content) and the files it wrote."""
    summary: dict
    written: tuple

    @property
    def start(self):
        return self.summary["start"]

    @property
    def final(self):
        return self.summary["final"]

    @property
    def chosen_weight(self):
        return self.summary["chosen_weight"]


def run(params, files, paths, reporter, argv=()):
    """Run one refinement and write its outputs; return a :class:`RefineResult`."""
    timings = {}
    t_start = time.time()
    started = datetime.datetime.now()
    params = freeze(params)
    model_path, data_path, data_kind = check_refine(params, files)
    notes = []

    t = time.time()
    chem = chem_data.activate(params.chem_data)
    rama = uses_ramachandran(params, data_kind)
    # With QM the term is added to the QM source (restraints.ramachandran);
    # the library restraints, which validation uses, stay without it.
    library_rama = rama and params.restraints == "cctbx"
    model = model_io.read_model(model_path, restraint_cifs=params.restraints_cif,
                                use_neutron_distances=params.use_neutron_distances,
                                ramachandran_restraints=library_rama)
    if model_io.all_occupancies_zero(model):
        # cctbx's scaling divides by the model's scattering (exit 2 on
        # "Zero denominator"), and a map fit goes nowhere with CC 0.
        if data_path is not None:
            raise QRefineError("model file %s: all %d atoms have occupancy 0, so the model "
                               "explains none of %s; set the occupancies (e.g. to 1.00) and "
                               "rerun" % (model_path, model.get_number_of_atoms(), data_path))
        notes.append("all atoms have occupancy 0 (left as they are: only data need them)")
    if library_rama:
        notes.append("cctbx Ramachandran restraints on (ramachandran_restraints=false "
                     "switches them off)")
    reporter.info("model: %s (%d atoms, %d H)" % (
        model_path, model.get_number_of_atoms(), int(model_io.hydrogen_mask(model).sum())))
    reporter.info("chemistry data: %s" % chem)
    data = None
    if data_path is not None:
        data, data_notes = build_data_target(model, data_path, data_kind, params)
        notes.extend(data_notes)
        reporter.info("%s: %s" % (data_kind, data_path))
        for n in data_notes:
            reporter.info("  note: " + n)
    if params.mode == "opt" and data is not None:
        reporter.info("mode=opt: the data are used for statistics only, not in the target")
    timings["read_inputs_s"] = time.time() - t

    t = time.time()
    limit_blas_threads(params)
    limit_engine_threads(params, parallel_trials(params, model.get_number_of_atoms(),
                                                 data_kind if data is not None else None))
    if params.restraints == "qm":
        require_qm_ready(model, model_path)
    restraints = build_restraints(model, model_path, params, paths.failed_dir,
                                  reporter=reporter, data_kind=data_kind)
    if isinstance(restraints.primary, FragmentQMRestraints):
        where = ("%d process(es)" % params.nproc if params.parallel.backend == "local"
                 else "Dask scheduler %s" % params.parallel.scheduler)
        reporter.info("QM restraints: engine %s, method %s, fragments (clusters of at most %d "
                      "residues, %.1f A buffer), %s" % (
                          params.engine, restraints.method, params.fragments.max_cluster_residues,
                          params.fragments.buffer, where))
    elif params.restraints == "qm":
        reporter.info("QM restraints: engine %s, method %s, charge %d, multiplicity %d, "
                      "whole model" % (params.engine, restraints.method, restraints.charge,
                                       restraints.multiplicity))
    wall = clash_weight(params, data_kind)
    if wall:
        reporter.info("clash restraint: %g kcal/mol/A^2 on atom pairs overlapping by more than "
                      "%.1f A (qm.clash_restraint)" % (wall, CLASH_ONSET))
    if params.restraints == "qm" and rama:
        reporter.info("Ramachandran restraints: %g kcal/mol x -ln(Top8000 density) per residue "
                      "added to the QM energy (qm.ramachandran_scale)"
                      % params.qm.ramachandran_scale)
    if restraints.is_dual_level:
        reporter.info("dual level: GFN-FF steps between QM calls, one QM call per macro cycle "
                      "and one to check the last (up to %d cycles of %d iterations)" % (
                          params.qm.low_level_cycles, params.qm.low_level_iterations))
    timings["setup_s"] = time.time() - t
    sites = model.get_sites_cart().as_numpy_array()

    t = time.time()
    start_stats = None
    if data is not None:
        data.update(sites)  # scales (and bulk solvent) fitted to the start model
        start_stats = data.statistics(sites)
    start = validate(model, data_statistics=start_stats)
    note = _force_field_topology_note(params, start)
    if note:
        notes.append(note)
        reporter.info("note: " + note)
    contacts = _intercopy_counter(model, data_kind)
    start_contacts = contacts(model) if contacts else None
    timings["validation_start_s"] = time.time() - t

    rotamer_fits = None
    if fits_rotamers(params, data):
        t = time.time()
        sites, rotamer_fits, kept = fit_rotamer_outliers(model, sites, data.density_at)
        model.set_sites_cart(flex.vec3_double(sites))
        reporter.info("rotamer outliers refitted into the map: %d (refine.fit_rotamers)"
                      % len(rotamer_fits))
        for f in rotamer_fits:
            reporter.info("  " + str(f))
        for k in kept:
            reporter.info("  kept " + k)
        timings["rotamer_fit_s"] = time.time() - t

    t = time.time()
    parameters = params_mod.as_dict(params)
    # The summary (and the checkpoint's fingerprint) record the refinement
    # lengths used, not None: a run given them explicitly is the same run.
    length = lengths(params, data_kind, model.get_number_of_atoms())
    parameters.update({"refine.max_iterations": length.max_iterations,
                       "refine.macro_cycles": length.macro_cycles,
                       "weights.trial_macro_cycles": length.trial_macro_cycles})
    inputs = {"model": model_path, "data": data_path}
    inputs.update(("restraints_cif %s" % os.path.basename(c), c)
                  for c in (params.restraints_cif or []))
    ck_fingerprint = fingerprint(inputs, parameters)
    digests = {role: (path, ck_fingerprint["inputs"][role]) for role, path in inputs.items()
               if path is not None}
    digests.update(("params %s" % os.path.basename(f), (f, file_sha256(f)))
                   for f in params_mod.params_files(argv))
    part = None
    try:
        part = _trial_part(model, sites, restraints, data_kind, params, paths, reporter)
        start_metrics = {k: v for k, v in start.as_dict().items() if k != "notes"}
        protocol, ck = run_protocol(model, restraints, data, params, paths, reporter,
                                    ck_fingerprint, start_metrics=start_metrics, part=part)
    finally:
        restraints.close()  # fragment worker processes
        if part is not None:
            part.close()
    final_sites, cycles = protocol.sites, protocol.cycles
    fragments = _fragment_summary(restraints)
    if fragments:
        reporter.info("QM fragments: %d clusters, fragments of %.0f atoms on average (largest "
                      "%d), clustered %d time(s)" % (
                          fragments["clusters"], fragments["mean_fragment_atoms"],
                          fragments["max_fragment_atoms"], fragments["clusterings"]))
    notes.extend(protocol.notes)
    timings["refinement_s"] = time.time() - t
    timings.update(restraints.timing())

    model.set_sites_cart(flex.vec3_double(final_sites))
    t = time.time()
    final_stats = None
    if data is not None:
        data.update(final_sites)
        final_stats = data.statistics(final_sites)
    final = validate(model, data_statistics=final_stats)
    symmetry = None
    if contacts:
        symmetry = _symmetry_summary(restraints, expands_symmetry(model, params, data_kind),
                                     start_contacts, contacts(model))
    timings["validation_final_s"] = time.time() - t

    reporter.info("")
    reporter.info("Validation (start -> final):")
    reporter.info(start.format_table(other=final))
    if symmetry:
        reporter.info("H-bonds to symmetry copies (crystal contacts): %d -> %d (QM with "
                      "symmetry copies: %s)" % (symmetry["intercopy_hbonds"]["start"],
                                                symmetry["intercopy_hbonds"]["final"],
                                                "yes" if symmetry["expanded"] else "no"))

    # Every output is written in full to a hidden name first and renamed at
    # the end (outputs.StagedFiles), the model files last: a full disk or a
    # read-only directory leaves no new file, and a model file that is there
    # comes with its summary.
    t = time.time()
    staged = paths.staged
    notes.extend(write_model(model, paths.pdb, paths.cif, staged=staged,
                             remarks=refinement_remarks(params, start, final,
                                                        protocol.chosen_weight)))
    if protocol.trials:
        staged.write(paths.weights_plot, plot_weight_search(
            [t.as_dict() for t in protocol.trials], protocol.chosen_weight,
            title=os.path.basename(model_path), start=start.as_dict(), limits=protocol.limits))
    timings["output_s"] = time.time() - t
    timings["total_s"] = time.time() - t_start
    summary = {
        "schema_version": provenance.SCHEMA_VERSION,
        "program": "qr.refine",
        "command": " ".join(["qr.refine"] + list(argv)),
        "inputs": {"model": os.path.abspath(model_path),
                   "data": os.path.abspath(data_path) if data_path else None,
                   "data_kind": data_kind},
        "parameters": parameters,
        "restraints": restraints.describe(),
        "start": start.as_dict(),
        "final": final.as_dict(),
        "macro_cycles": [c.as_dict() for c in cycles],
        "weight_search": [t.as_dict() for t in protocol.trials],
        "rotamer_fit": None if rotamer_fits is None else [f.as_dict() for f in rotamer_fits],
        "weight_search_part": None if part is None or not protocol.trials else {
            "atoms": int(part.mask.sum()), "residues": len(part.residues),
            "qm_restraints_for_part": part.restraints is not None},
        "adaptive": [a.as_dict() for a in protocol.adaptive],
        "chosen_weight": protocol.chosen_weight,
        "fit_guard": protocol.fit_guard,
        "geometry_guard": protocol.geometry_guard,
        "fragments": fragments,
        "symmetry": symmetry,
        "timings": {k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()},
        "notes": notes,
        "provenance": provenance.record(
            "qr.refine", argv, digests, started=started,
            qm_engine=(provenance.engine(params.engine,
                                               restraints.method or params.method)
                       if params.restraints == "qm" else None)),
        "outputs": {"pdb": paths.pdb if paths.pdb in staged else None,
                    "cif": paths.cif, "log": paths.log, "summary": paths.summary,
                    "weights_plot": paths.weights_plot if protocol.trials else None},
    }
    for n in notes:
        reporter.info("note: " + n)
    reporter.info("timings: " + ", ".join("%s %.1f" % (k, v) for k, v in timings.items()
                                          if k.endswith("_s")))
    staged.write_json(paths.summary, summary)
    staged.commit()
    try:
        ck.remove()  # the run is complete: nothing left to resume
    except OSError as e:  # e.g. the directory turned read-only
        raise output_error(ck.path, e, "remove") from None
    written = tuple(p for p in paths.all() + [paths.weights_plot] if os.path.exists(p))
    return RefineResult(summary=summary, written=written)


# Bond RMSD (A, non-H, against the library) above which a start model is too
# distorted for GFN-FF: the force field takes its bonds from the first
# geometry it sees.  1us0 moved by 0.3 A RMS (bond RMSD 0.243) came out of a
# GFN-FF optimisation with 162 heavy-atom bonds more than 0.3 A off, C=O at
# 3.1-3.6 A (benchmarks/README.md section 6); deposited models sit below 0.02.
FORCE_FIELD_MAX_START_BOND_RMSD = 0.05


def _trial_part(model, sites, restraints, data_kind, params, paths, reporter):
    """The part of the model the weight trials move (weights.part_atoms), or
    None: only for a weight search against a map with QM restraints, not
    with the dual level.  Library restraints cost milliseconds, and their
    trials' time is the validation of the whole model: on 5fn5_C (3787
    atoms) trials on a 1002-atom part took 12-23 s against 13-14 s whole
    (the same chosen weight, 4.82)."""
    searching = (data_kind == "map" and params.restraints == "qm" and params.mode == "refine"
                 and params.weights.search
                 and params.data_weight is None and params.weights.protocol == "search")
    if not searching or restraints.is_dual_level or not trial_part.wanted(
            len(sites), params.weights.part_atoms):
        return None
    residues = trial_part.residue_atoms(model.get_hierarchy())
    chosen = trial_part.part_residues(residues, sites, params.weights.part_atoms)
    return trial_part.TrialPart(
        mask=trial_part.part_mask(residues, chosen, len(sites)), residues=chosen,
        restraints=build_part_restraints(model, params, chosen, paths.failed_dir, reporter,
                                         data_kind))


def _force_field_topology_note(params, start):
    """A warning when GFN-FF will build its bonds from a distorted start."""
    uses_gfnff = params.restraints == "qm" and params.engine == "xtb" and (
        is_force_field(params.method) or is_force_field(params.qm.low_level))
    bond = start.as_dict().get("bond_rmsd")
    if not uses_gfnff or bond is None or bond <= FORCE_FIELD_MAX_START_BOND_RMSD:
        return None
    return ("GFN-FF takes its bonds from the start geometry, whose bond RMSD is %.3f A "
            "(above %.2f): bonds it does not recognise can come apart; regularise the "
            "model first (qr.refine model.pdb mode=opt restraints=cctbx) or use "
            "method=GFN2-xTB" % (bond, FORCE_FIELD_MAX_START_BOND_RMSD))


def refinement_remarks(params, start, final, weight):
    """The refinement statistics for the refined PDB file's header: who
    refined it and how, and start -> final validation."""
    how = "restraints=%s" % params.restraints
    if params.restraints == "qm":
        how += " engine=%s method=%s" % (params.engine, params.method or "default")
    lines = ["REFINEMENT PROGRAM : qrefine %s (qr.refine)" % __version__,
             "  %s mode=%s data weight %s" % (
                 how, params.mode, "%.4g" % weight if weight is not None else "none")]
    table = start.format_table(other=final).split("\nNotes:")[0]
    lines.extend("  " + row for row in table.splitlines())
    return lines


def _intercopy_counter(model, data_kind):
    """A function counting the model's H-bonds to its symmetry copies
    (:func:`qrefine.validation.hbonds.count_intercopy_hbonds`), for crystal
    data on a model with H and a space group other than P1; else None."""
    cs = model.crystal_symmetry()
    if data_kind != "reflections" or cs is None or cs.space_group() is None \
            or cs.unit_cell() is None or cs.space_group().order_z() < 2:
        return None
    if not any(a.element.strip().upper() in ("H", "D") for a in model.get_hierarchy().atoms()):
        return None
    return count_intercopy_hbonds


def _symmetry_summary(restraints, expanded, start_hbonds, final_hbonds):
    """The summary's "symmetry" object: whether the QM system held the
    copies, their environment (radius, operators, residue copies, atoms,
    caps) and the H-bonds to copies at start and end."""
    out = {"expanded": bool(expanded),
           "intercopy_hbonds": {"start": start_hbonds, "final": final_hbonds}}
    environment = restraints.symmetry_summary()
    if environment is not None:
        out["environment"] = environment
    return out


def _fragment_summary(restraints):
    """Clusters and fragment sizes of QM fragments (None for other restraints)."""
    s = restraints.summary()
    if not s:
        return None
    sizes = s["fragment_atoms"]
    return {"clusters": s["clusters"], "mean_fragment_atoms": round(s["mean_fragment_atoms"], 1),
            "max_fragment_atoms": max(sizes), "clusterings": s["clusterings"],
            "max_cluster_residues": s["max_cluster_residues"], "buffer": s["buffer"]}
