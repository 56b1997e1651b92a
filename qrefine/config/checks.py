"""Every check of qr.refine's parameters that needs no input file's content,
in one place, run before any file is read: a bad value must not cost the
user the wait for a model, a map and a restraint build.

What does need the model stays where the model is: whether fragments are
used (and so whether ``qm.timeout`` can be kept, or ``charge=`` applies)
depends on its atom count (:mod:`qrefine.restraints.factory`); whether it
lies in the map, on the map.
"""

import inspect

from qrefine import engines
from qrefine.errors import QRefineError

MAP_EXTENSIONS = (".map", ".mrc", ".ccp4")
REFLECTION_EXTENSIONS = (".mtz", ".hkl", ".sca", ".cif", ".ent")
MODEL_EXTENSIONS = (".pdb", ".cif", ".ent", ".mmcif")

# qm.* parameters and the engine keyword each one becomes.
QM_OPTIONS = ("solvent", "electronic_temperature", "accuracy", "basis", "density_fit",
              "linear_scaling")


def classify_inputs(files):
    """Return (model_path, data_path, data_kind) from the positional files.

    The model comes first; the optional second file is a map (by extension)
    or a reflection file.
    """
    if not files:
        raise QRefineError("no model file given; usage: qr.refine model.pdb "
                           "[map.ccp4|data.mtz] key=value ... (qr.refine --help)")
    if len(files) > 2:
        raise QRefineError("too many input files (%s); give one model and at most one "
                           "map or reflection file" % ", ".join(files))
    model_path = files[0]
    if not model_path.lower().endswith(MODEL_EXTENSIONS):
        raise QRefineError("first file %s does not look like a model (PDB or mmCIF); "
                           "give the model first" % model_path)
    if len(files) == 1:
        return model_path, None, None
    data_path = files[1]
    lower = data_path.lower()
    if lower.endswith(MAP_EXTENSIONS):
        return model_path, data_path, "map"
    if lower.endswith(REFLECTION_EXTENSIONS):
        return model_path, data_path, "reflections"
    raise QRefineError("cannot tell whether %s is a map (.map .mrc .ccp4) or reflections "
                       "(.mtz .cif .hkl); rename it with the right extension" % data_path)


def check_refine(params, files):
    """All of qr.refine's file-independent checks; returns
    (model_path, data_path, data_kind)."""
    model_path, data_path, data_kind = classify_inputs(files)
    check_parameters(params, data_kind)
    return model_path, data_path, data_kind


def check_parameters(params, data_kind):
    """Cross-parameter checks, done once before any work."""
    if data_kind == "map" and params.mode == "refine" and params.resolution is None:
        raise QRefineError("resolution= is required with a map (e.g. resolution=3.8)")
    if params.resolution is not None and params.resolution <= 0:
        raise QRefineError("resolution=%s must be positive" % params.resolution)
    if params.data_weight is not None and params.data_weight <= 0:
        raise QRefineError("data_weight=%s must be positive" % params.data_weight)
    if params.data_weight_scale is not None and params.data_weight_scale <= 0:
        raise QRefineError("data_weight_scale=%s must be positive" % params.data_weight_scale)
    for name, value in (("refine.macro_cycles", params.refine.macro_cycles),
                        ("refine.max_iterations", params.refine.max_iterations),
                        ("weights.trial_macro_cycles", params.weights.trial_macro_cycles)):
        if value is not None and value < 1:
            raise QRefineError("%s must be >= 1, got %s" % (name, value))
    if params.nproc < 1:
        raise QRefineError("nproc=%d must be >= 1" % params.nproc)
    if params.refine.max_step is not None and not params.refine.max_step > 0:
        raise QRefineError("refine.max_step must be > 0 A, got %s" % params.refine.max_step)
    tol = params.refine.gradient_tolerance
    if tol is not None and not tol > 0:
        raise QRefineError("refine.gradient_tolerance must be > 0, got %s" % tol)
    refresh = params.fragments.correction_refresh
    if refresh is not None and refresh < 0:
        raise QRefineError("fragments.correction_refresh must be >= 0 A, got %s" % refresh)
    charged = params.fragments.charged_buffer
    if charged is not None and charged < 0:
        raise QRefineError("fragments.charged_buffer must be >= 0 A, got %s" % charged)
    rise = params.weights.max_r_free_rise
    if rise is not None and rise < 0:
        raise QRefineError("weights.max_r_free_rise must be >= 0, got %s" % rise)
    wall = params.qm.clash_restraint
    if wall is not None and wall < 0:
        raise QRefineError("qm.clash_restraint must be >= 0 kcal/mol/A^2 (0: off), got %s"
                           % wall)
    if wall and params.restraints != "qm":
        raise QRefineError("qm.clash_restraint is only used with restraints=qm (library "
                           "restraints have their own non-bonded repulsion); remove it")
    part = params.weights.part_atoms
    if part is None or part < 0:
        raise QRefineError("weights.part_atoms must be >= 0 (0: trials refine the whole "
                           "model), got %s" % part)
    scale = params.qm.ramachandran_scale
    if scale is None or scale <= 0:
        raise QRefineError("qm.ramachandran_scale must be > 0 kcal/mol (default 0.6, kT), got "
                           "%s (ramachandran_restraints=false switches the term off)" % scale)
    _check_adaptive(params.weights, data_kind, params.mode)
    check_parallel(params)
    if params.restraints == "qm":
        _check_qm(params)


def _check_adaptive(w, data_kind, mode):
    if w.protocol != "adaptive":
        return
    if data_kind != "map" or mode != "refine":
        raise QRefineError("weights.protocol=adaptive balances restraints against a map; give "
                           "a map (and mode=refine), or use weights.protocol=search")
    if not w.adaptive_alpha > 0:
        raise QRefineError("weights.adaptive_alpha=%s must be > 0" % w.adaptive_alpha)
    if not 0 <= w.adaptive_smoothing < 1:
        raise QRefineError("weights.adaptive_smoothing=%s must be in [0, 1)"
                           % w.adaptive_smoothing)
    if w.adaptive_steps < 1 or w.adaptive_iterations < 1:
        raise QRefineError("weights.adaptive_steps and weights.adaptive_iterations must be >= 1")
    if not w.adaptive_max_force > 1:
        raise QRefineError("weights.adaptive_max_force=%s must be > 1" % w.adaptive_max_force)


def _check_qm(params):
    """The engine exists and loads, knows the method, and takes every qm.*
    option that was set."""
    module = engines.engine_module(params.engine)
    engines.resolve_method(module, params.method)
    engine_options(module, params.qm)
    if params.qm.low_level and not is_force_field(params.qm.low_level):
        raise QRefineError("qm.low_level=%s: only GFN-FF is supported (a force field, so "
                           "that its steps cost far less than the QM calls)"
                           % params.qm.low_level)


def engine_options(module, qm_params):
    """The qm.* options that were set, as the engine's keyword arguments,
    checked against what the engine takes."""
    # Named keyword arguments, or the option table of engines that take **options.
    accepted = set(inspect.signature(module.make_calculator).parameters)
    accepted |= set(getattr(module, "OPTIONS", ()))
    options = {}
    for name in QM_OPTIONS:
        value = getattr(qm_params, name)
        if name == "solvent":
            # PHIL reads "none" as None; the default is "water".  Engines
            # without implicit solvent accept the default and "none" silently.
            none = value is None or str(value).lower() == "none"
            if name in accepted:
                options[name] = None if none else value
            elif not none and str(value).lower() != "water":
                raise QRefineError("engine %s has no implicit solvent; remove qm.solvent"
                                   % module.NAME)
            continue
        if value is None or (name == "linear_scaling" and not value):
            continue
        if name not in accepted:
            raise QRefineError("engine %s does not use qm.%s; remove it" % (module.NAME, name))
        options[name] = value
    if qm_params.timeout is not None:
        if not qm_params.timeout > 0:
            raise QRefineError("qm.timeout=%s must be > 0 s" % qm_params.timeout)
        options["timeout"] = float(qm_params.timeout)
    return options


def is_force_field(method):
    return (method or "").replace("-", "").lower() == "gfnff"


def check_parallel(params, clustering=None):
    """One-line errors for parallel.* settings that cannot work; returns
    (backend, scheduler).  ``clustering``: whether fragments are used
    (default: as qm.clustering says)."""
    parallel = getattr(params, "parallel", None)
    backend = getattr(parallel, "backend", None) or "local"
    scheduler = getattr(parallel, "scheduler", None)
    if clustering is None:
        clustering = params.restraints == "qm" and params.qm.clustering is not False
    if backend == "dask":
        if not clustering:
            raise QRefineError("parallel.backend=dask runs QM fragments on a Dask cluster; it "
                               "needs restraints=qm qm.clustering=true")
        if not scheduler:
            raise QRefineError("parallel.backend=dask needs the address of a running Dask "
                               "scheduler: set parallel.scheduler=tcp://host:8786")
        import_distributed()
    elif scheduler:
        raise QRefineError("parallel.scheduler=%s is only used with parallel.backend=dask; "
                           "add parallel.backend=dask or remove parallel.scheduler" % scheduler)
    return backend, scheduler


DASK_INSTALL_HINT = 'install it with: pip install "qrefine[dask]"'


def import_distributed():
    """The ``distributed`` module, or a one-line QRefineError saying how to
    get it.  dask is an optional dependency, imported only when asked for."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as e:
        raise QRefineError("parallel.backend=dask needs dask and distributed (%s); %s"
                           % (e, DASK_INSTALL_HINT))
    return distributed
