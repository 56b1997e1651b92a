"""Build the restraint term that the parameters ask for."""

import collections

from qrefine import engines
from qrefine.config.checks import check_parallel, engine_options, is_force_field
from qrefine.errors import QRefineError
from qrefine.model import charges
from qrefine.model.elements import symbol_of
from qrefine.restraints.cctbx_geometry import CctbxGeometry
from qrefine.restraints.clash import MAP_DEFAULT_WEIGHT, ClashRestraint
from qrefine.restraints.dual_level import DualLevelRestraints
from qrefine.restraints.fragment_qm import FragmentQMRestraints
from qrefine.restraints.qm import QMRestraints
from qrefine.restraints.ramachandran import RamachandranRestraint
from qrefine.restraints.symmetry import SymmetryQMRestraints, model_environment


def check_timeout(module, params, clustering):
    """qm.timeout with an engine that runs in this process can only be kept
    by ending a worker process, which only fragments have."""
    if params.qm.timeout is not None and getattr(module, "IN_PROCESS", False) \
            and not clustering:
        raise QRefineError("qm.timeout= with engine %s needs fragments (it runs in this "
                           "process, and only a fragment worker can be ended): add "
                           "qm.clustering=true, or remove qm.timeout" % module.NAME)


def uses_fragments(params, n_atoms):
    """Whether QM restraints run on fragments: qm.clustering, or when it is
    None, a model over fragments.clustering_above atoms or a Dask backend."""
    if params.restraints != "qm":
        return False
    if params.qm.clustering is not None:
        return bool(params.qm.clustering)
    backend = getattr(getattr(params, "parallel", None), "backend", None)
    limit = params.fragments.clustering_above
    if is_force_field(params.method):
        limit *= FORCE_FIELD_LIMIT_FACTOR
    return n_atoms > limit or backend == "dask"


# A force field has no SCF: after its first call (topology set-up) a
# whole-model GFN-FF gradient of 3j63_A (1436 atoms) takes 0.4 s against
# 6.9 s through fragments, so fragments pay off only for far larger models.
FORCE_FIELD_LIMIT_FACTOR = 10


def expands_symmetry(model, params, data_kind=None):
    """Whether QM restraints include the crystal's symmetry copies
    (:mod:`qrefine.restraints.symmetry`).  Never with a map or without restraints=qm.
    ``symmetry.expand=None`` (default): for a crystal whose space group is
    not P1; True: also P1 (its lattice translations), e.g. a real P1
    crystal; False: never.  A P1 model is often a molecule in a box (the
    1us0 helix's simulated data), where copies would be wrong."""
    scope = getattr(params, "symmetry", None)
    if params.restraints != "qm" or scope is None or scope.expand is False \
            or data_kind == "map":
        return False
    cs = model.crystal_symmetry()
    if cs is None or cs.unit_cell() is None or cs.space_group() is None:
        return False
    if scope.expand is True:
        return True
    return cs.space_group().order_z() > 1


def _symbols_and_charge(model, params):
    """Element symbols for a whole-model QM system (deuterium is hydrogen to
    the electrons) and its total charge (charge=, else from the residues)."""
    symbols = [symbol_of(a) for a in model.get_hierarchy().atoms()]
    charge = params.charge if params.charge is not None else charges.total_charge(model)
    return symbols, charge


def build_restraints(model, model_path, params, failed_dir, reporter=None, data_kind=None):
    """The restraint source; ``reporter`` (optional) shows fragment progress;
    ``data_kind`` ("reflections", "map" or None) decides, with
    ``symmetry.expand``, whether symmetry copies join the QM system.  With
    ``qm.low_level`` the QM source is wrapped in a
    :class:`~qrefine.restraints.dual_level.DualLevelRestraints`, and with
    ``qm.clash_restraint`` in a
    :class:`~qrefine.restraints.clash.ClashRestraint`, with
    ``ramachandran_restraints`` in a
    :class:`~qrefine.restraints.ramachandran.RamachandranRestraint`."""
    return _with_added_terms(
        _build_with_level(model, model_path, params, failed_dir, reporter, data_kind),
        model, params, data_kind)


def uses_ramachandran(params, data_kind):
    """Whether Ramachandran restraints are on: ``ramachandran_restraints``,
    or with None (default) whenever the data are a map, as
    phenix.real_space_refine has them."""
    if params.ramachandran_restraints is None:
        return data_kind == "map"
    return bool(params.ramachandran_restraints)


def clash_weight(params, data_kind):
    """The QM clash wall's force constant (kcal/mol/A^2; 0: off):
    ``qm.clash_restraint``, or with None (default) MAP_DEFAULT_WEIGHT
    whenever the data are a map, as with the Ramachandran term, else 0.
    Library restraints never get it."""
    if params.restraints != "qm":
        return 0.0
    if params.qm.clash_restraint is None:
        return MAP_DEFAULT_WEIGHT if data_kind == "map" else 0.0
    return float(params.qm.clash_restraint)


def _with_added_terms(source, model, params, data_kind):
    """``source`` with the clash wall (:func:`clash_weight`) and the Top8000
    Ramachandran term (:func:`uses_ramachandran`) added, when they are on."""
    if params.restraints != "qm":
        return source
    weight = clash_weight(params, data_kind)
    if weight > 0:
        source = ClashRestraint(source, model, weight)
    if uses_ramachandran(params, data_kind):
        source = RamachandranRestraint(source, model, params.qm.ramachandran_scale)
    return source


def _build_with_level(model, model_path, params, failed_dir, reporter=None, data_kind=None):
    low_level = getattr(getattr(params, "qm", None), "low_level", None)
    if params.restraints != "qm" or not low_level:
        return _build(model, model_path, params, failed_dir, reporter, data_kind)
    # qm.low_level names GFN-FF (qrefine.config.checks).
    high = _build(model, model_path, params, failed_dir, reporter, data_kind)
    symbols, charge = _symbols_and_charge(model, params)
    solvent = params.qm.solvent
    options = {"solvent": None if solvent is None or str(solvent).lower() == "none"
               else solvent}
    if expands_symmetry(model, params, data_kind):
        # The cheap level sees the same copies (symmetry.radius) as the QM
        # one, so its steps feel the crystal contacts' repulsion too; its
        # gradient is the model's own (direct rule), like the QM one's.
        env = crystal_environment(model, params.symmetry.radius, symbols)
        low = SymmetryQMRestraints(
            QMRestraints(symbols + env.symbols, "xtb", method="GFN-FF",
                         charge=charge + env.charge, options=options, failed_dir=failed_dir,
                         label="model with its symmetry copies (qm.low_level)"),
            env.environment, charge=charge)
    else:
        low = QMRestraints(symbols, "xtb", method="GFN-FF", charge=charge, options=options,
                           failed_dir=failed_dir, label="whole model (qm.low_level)")
    return DualLevelRestraints(high, low)


def _build(model, model_path, params, failed_dir, reporter=None, data_kind=None):
    clustering = uses_fragments(params, model.get_number_of_atoms())
    backend, scheduler = check_parallel(params, clustering)
    if params.restraints == "cctbx":
        return CctbxGeometry(model)
    module = engines.engine_module(params.engine)
    symmetry = expands_symmetry(model, params, data_kind)
    if symmetry and reporter is not None and is_force_field(params.method):
        reporter.info("note: GFN-FF is not local (README 'Crystal symmetry': a molecule 150 A "
                      "away moves its gradient by up to 9 kcal/mol/A, and so does the order of "
                      "the atoms), so the symmetry copies also perturb the model unphysically; "
                      "prefer method=GFN2-xTB for crystal contacts (with qm.low_level=GFN-FF "
                      "for one GFN2 call per macro cycle)")
    check_timeout(module, params, clustering)
    if clustering:
        environment = None
        if symmetry:

            # Copies within a buffer's reach of any cluster atom.
            environment = model_environment(
                model, max(params.symmetry.radius, params.fragments.buffer,
                           params.fragments.charged_buffer or 0.0))
            if reporter is not None:
                reporter.info("crystal symmetry: %d residue copies (%d atoms) within %.1f A of "
                              "the model may join fragment buffers (symmetry.expand=false: "
                              "without)" % (len(environment.copies), environment.n_atoms,
                                            environment.radius))
        if params.charge is not None or params.multiplicity is not None:
            raise QRefineError("charge= and multiplicity= apply to the whole model; with "
                               "QM fragments (qm.clustering, on by default above fragments.clustering_above "
                               "atoms) each fragment's charge comes from its residues; set "
                               "qm.clustering=false to compute the whole model")
        return _fragment_restraints(
            model, params, module, failed_dir, reporter, nproc=params.nproc, backend=backend,
            scheduler=scheduler, environment=environment,
            correction=params.fragments.correction,
            correction_refresh=params.fragments.correction_refresh)
    symbols, charge = _symbols_and_charge(model, params)
    # Electrons of the first conformer only: altlocs are not extra atoms.
    multiplicity = charges.check_multiplicity(
        charges.electron_count(model, charge), params.multiplicity)
    if symmetry:
        return crystal_qm_restraints(model, params, module, symbols, charge, multiplicity,
                                     failed_dir, reporter)
    return QMRestraints(symbols, params.engine, method=params.method, charge=charge,
                        multiplicity=multiplicity, options=engine_options(module, params.qm),
                        failed_dir=failed_dir)


def build_part_restraints(model, params, part, failed_dir, reporter=None, data_kind="map"):
    """QM restraints for weight trials that move only the residues ``part``
    (:mod:`qrefine.weights.part`): the fragments holding them, or the part
    as one fragment for a model otherwise computed whole.  None when the
    whole model's own restraint source serves (library restraints cost
    milliseconds).  ``data_kind``: the trials' data, always a map today."""
    if params.restraints != "qm":
        return None
    module = engines.engine_module(params.engine)
    clustered = uses_fragments(params, model.get_number_of_atoms())
    backend, scheduler = check_parallel(params, clustered)
    # One fragment: computed in this process with nproc OpenMP threads
    # (limit_engine_threads) rather than by one busy worker of nproc.  The
    # trials feel the same added terms as the final refinement.
    return _with_added_terms(_fragment_restraints(
        model, params, module, failed_dir, reporter, nproc=params.nproc if clustered else 1,
        backend=backend if clustered else "local", scheduler=scheduler, part=part,
        part_as_one=not clustered), model, params, data_kind)


def _fragment_restraints(model, params, module, failed_dir, reporter, **settings):
    """FragmentQMRestraints with the engine and fragments.* of ``params``."""
    return FragmentQMRestraints(
        model, engine=params.engine, method=params.method,
        options=engine_options(module, params.qm),
        max_cluster_residues=params.fragments.max_cluster_residues,
        buffer=params.fragments.buffer, recluster_shift=params.fragments.recluster_shift,
        keep_clusters=params.fragments.keep_clusters,
        charged_buffer=params.fragments.charged_buffer,
        failed_dir=failed_dir, reporter=reporter, **settings)


CrystalEnvironment = collections.namedtuple("CrystalEnvironment", "environment symbols charge")


def crystal_environment(model, radius, symbols):
    """The symmetry environment within ``radius``, its element symbols
    (caps are H) and its charge: the formal charges of the copied residues."""
    env = model_environment(model, radius)
    res_charges = [r.charge for r in charges.residue_charges(model)]
    return CrystalEnvironment(env, env.symbols(symbols),
                              sum(res_charges[r] for r, _ in env.copies))


def crystal_qm_restraints(model, params, module, symbols, charge, multiplicity, failed_dir,
                          reporter=None):
    """Whole-model QM of the model plus its symmetry environment.

    Charge: the model's plus the formal charges of the copied residues.
    Copied residues cut from their neighbours carry H caps (closed shells).
    Multiplicity: the model's unpaired electrons, plus one when the copies
    still bring an odd electron count (copies of a radical; the lowest spin
    that fits, as nothing says which copied residue is open-shell)."""
    crystal = crystal_environment(model, params.symmetry.radius, symbols)
    env = crystal.environment
    env_electrons = charges.electron_count(crystal.symbols, crystal.charge)
    qm = QMRestraints(symbols + crystal.symbols, params.engine, method=params.method,
                      charge=charge + crystal.charge,
                      multiplicity=multiplicity + env_electrons % 2,
                      options=engine_options(module, params.qm), failed_dir=failed_dir,
                      label="model with its symmetry copies")
    if reporter is not None:
        reporter.info("crystal symmetry: %d residue copies (%d atoms with %d H caps, %d "
                      "operators) within %.1f A of the model join the QM system "
                      "(symmetry.expand=false: without)" % (
                          len(env.copies), env.n_atoms, env.n_caps, len(env.operators),
                          env.radius))
    if reporter is not None:
        reporter.info("QM system: model and copies, %d atoms, charge %d, multiplicity %d"
                      % (len(symbols) + env.n_atoms, qm.charge, qm.multiplicity))
    return SymmetryQMRestraints(qm, env, charge=charge, multiplicity=multiplicity)
