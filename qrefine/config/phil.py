"""Phenix-style parameters (PHIL): the masters of qr.refine and the parser
every command shares.

``parse(argv)`` turns the command line into a frozen parameter object plus the
list of input files.  Every ``key=value`` must name a known parameter; an
unknown key is an error that suggests the nearest valid one.  A ``.eff`` or
``.params`` file on the command line is read as a parameter file, and later
``key=value`` arguments override it.
"""

import difflib
import os

import iotbx.phil
from libtbx.utils import Sorry

from qrefine.config.options import freeze, thaw
from qrefine.errors import QRefineError

# The output scope every qrefine command shares.
OUTPUT_PHIL_STR = """
output {
  prefix = None
    .type = str
    .help = "Prefix of output files; default: model file name without extension."
  dir = "."
    .type = path
    .help = "Directory for output files (created if needed)."
  overwrite = False
    .type = bool
    .help = "Replace the outputs of an earlier run with the same prefix.  By default a "
            "rerun numbers its outputs instead (<prefix>_001, _002, ...), as Phenix does."
}
"""

# Arguments with these endings are parameter files (PHIL), not inputs.
PARAMS_FILE_SUFFIXES = (".eff", ".params", ".phil")


def params_file_settings(path):
    """What the parameter file ``path`` sets, as "key = value" strings (for
    the log: a run must say what came from a file as well as from the command
    line)."""
    src = iotbx.phil.parse(file_name=path)
    return ["%s = %s" % (d.path, " ".join(w.value for w in d.object.words))
            for d in src.all_definitions()]


def params_files(args):
    """The parameter files among command-line ``args``, in order."""
    return [a for a in args if a.endswith(PARAMS_FILE_SUFFIXES)
            and not ("=" in a and not os.path.exists(a))]

MASTER_PHIL_STR = """
restraints = *cctbx qm
  .type = choice
  .help = "Source of the geometry term: cctbx library restraints or quantum chemistry."
engine = *xtb mopac pyscf orca terachem turbomole gaussian
  .type = choice
  .help = "Quantum-chemistry engine for restraints=qm."
method = None
  .type = str
  .help = "Engine method (e.g. GFN2-xTB, PM7, HF-D3); None means the engine default."
charge = None
  .type = int
  .help = "Total charge for QM; None derives it from protonation states."
multiplicity = None
  .type = int
  .help = "Spin multiplicity for QM; required when the electron count is odd."
mode = *refine opt
  .type = choice
  .help = "refine: fit the data; opt: geometry only (no data term)."
resolution = None
  .type = float
  .help = "Map resolution in Angstrom; required with a map."
nproc = 1
  .type = int
  .help = "Number of cores to use: processes computing QM fragments, or the OpenMP threads of a whole-model xtb/MOPAC calculation (unless OMP_NUM_THREADS is set). With library restraints or whole-model QM by an in-process engine (xtb, PySCF), a weight search runs this many trials at a time, each in a forked process with one thread (the next trial starts before the current one is judged; the search makes the same choices as with nproc=1)."
chem_data = None
  .type = path
  .help = "Directory with the cctbx chemistry data (mon_lib, rotarama_data, rama_z)."
data_weight = None
  .type = float
  .help = "Fixed weight w of the data term in T = w*T_data + T_restraints; None: a validation-gated search over trial weights around data_weight_scale times the gradient-norm ratio |grad T_restraints| / |grad T_data| (weights.*); with weights.search=false, that product itself."
data_weight_scale = None
  .type = float
  .help = "Multiplier of the estimated data weight (ignored when data_weight is set); None: 0.1 for maps, 1.0 for reflections."
restraints_cif = None
  .type = path
  .multiple = True
  .help = "Restraint dictionaries (CIF) for ligands unknown to the monomer library."
ramachandran_restraints = None
  .type = bool
  .help = "Top8000 Ramachandran restraints on (phi, psi). With restraints=cctbx: cctbx's (an oldfield pull to the nearest favoured peak plus Emsley8k). With restraints=qm: qm.ramachandran_scale x -ln(Top8000 density) per residue, added to the QM energy (exact gradient). None: on with a map (as phenix.real_space_refine), off with reflections or no data."
use_neutron_distances = False
  .type = bool
  .help = "Use nuclear X-H distances in library restraints (for models built that way)."
restart = None
  .type = path
  .help = "Resume a killed run from its <prefix>.checkpoint file (same inputs and parameters)."
weights {
  search = True
    .type = bool
    .help = "Search the data weight (monotonic, validation-gated); False: gradient-norm ratio per macro cycle."
  trials = None
    .type = floats
    .help = "Explicit trial weights (ascending); None: a geometric grid around the gradient-norm ratio."
  grid_factor = 2.0
    .type = float
    .help = "Ratio between consecutive trial weights of the default grid."
  grid_below = 4
    .type = int
    .help = "Number of grid weights below the gradient-norm ratio."
  grid_above = 4
    .type = int
    .help = "Number of grid weights above the gradient-norm ratio."
  trial_macro_cycles = None
    .type = int
    .help = "Macro cycles of each trial refinement.  None: 2, or 1 with QM restraints and a map on a model of more than 2000 atoms (see refine.max_iterations)."
  max_bond_rmsd = None
    .type = float
    .help = "Bond RMSD limit (A, non-H); None: 0.025 (d<=2 A), 0.02 (d<=3 A), 0.015 (lower resolution)."
  max_angle_rmsd = None
    .type = float
    .help = "Angle RMSD limit (degrees, non-H); None: library restraints 2.7 (d<=2 A), 2.2 (d<=3 A), 2.0 (lower resolution), measured against the CDL of the model's own conformation; QM restraints 2.5."
  max_r_gap = None
    .type = float
    .help = "X-ray: largest acceptable R-free - R-work; None: 0.05 + 0.01 * d_min."
  max_r_free_rise = 0.005
    .type = float
    .help = "X-ray fit guard: the refined model's R-free may exceed the start's by at most this much.  When the final refinement ends above it, the model becomes the accepted weight trial with the lowest R-free within it whose geometry is no worse than the start's, or, when there is none, the start model itself (a well-refined start the restraints can only pull away from its data); the log and the summary's fit_guard say which and why.  None: no guard."
  gate = previous *best
    .type = choice
    .help = "What a trial's geometry metrics (Rama favored/outliers, rotamer outliers, C-beta deviations, clashscore) are compared with: best (default): the previous accepted trial and the best value any accepted trial reached, so that a metric cannot slide one tolerated step at a time (1us0 helix quick start: previous accepted Rama favored 90.9 -> 81.8 -> 72.7 % and chose that weight, final bond RMSD 0.0040, angle 0.65, R-free 0.0695; best stops at 72.7 %: 0.0023, 0.45, 0.0692); previous: the previous accepted trial only."
  part_atoms = 1000
    .type = int
    .help = "Maps, QM restraints: when the model has more than four times this many atoms, each weight trial refines only a compact part of about this many atoms (whole residues around the model's centre), the rest held still, and QM restraints are computed for that part alone (seed 000, section 2.1: a map is local, so the weight that balances fit and geometry in a part balances them in the whole); the final refinement is of the whole model. The part's fragment holds its fragments.buffer too: on 5fn5_C (3787 atoms) a 1002-atom part made a 2894-atom fragment, hence the factor four. Not with qm.low_level. 0: trials refine the whole model."
  refine_bracket = True
    .type = bool
    .help = "Try one more weight between the last accepted and the first rejected trial."
  extend_below = 2
    .type = int
    .help = "When the lowest trial weight fits the data best (lowest R-free, or best CC_mask), try up to this many lower weights (each grid_factor lower) while that stays so; 0: never. 5bmi at 2.5 A (GFN-FF): R-free 0.307 at the lowest grid weight, 0.278 at a quarter of it."
  protocol = *search adaptive
    .type = choice
    .help = "search: monotonic trials of fixed weights, then a final refinement at the chosen one. adaptive (maps): seed 004's adaptive force scaling: the weight k starts low and changes after every short minimisation step, divided by (1 + alpha) when the similarity's moving average rose and multiplied by (1 + 2 alpha) when it fell; it stops when a validation gate fails (the step is undone) or when the restraint forces grow past weights.adaptive_max_force times their first value."
  adaptive_alpha = 0.2
    .type = float
    .help = "protocol=adaptive: alpha of the force scaling (seed 004: N_fit dt / tau, one minimisation step here)."
  adaptive_smoothing = 0.5
    .type = float
    .help = "protocol=adaptive: weight of the past in the similarity's exponential moving average (0: no averaging)."
  adaptive_steps = 30
    .type = int
    .help = "protocol=adaptive: most force-scaling steps."
  adaptive_iterations = 25
    .type = int
    .help = "protocol=adaptive: L-BFGS iterations of one step (seed 004 applies the density forces every N_fit = 10 MD steps; on the 1us0 helix from a 1.5 A start, relative entropy, 30 steps: 10 iterations ended 0.87 A from the answer, 25 iterations 0.51 A)."
  adaptive_max_force = 10.0
    .type = float
    .help = "protocol=adaptive: stop when the largest per-atom restraint force exceeds this multiple of its value after the first step (the seed stops when forces grow too large for the time step)."
}
qm {
  clustering = None
    .type = bool
    .help = "Compute QM restraints on clustered fragments (True) or on the whole model at once (False); None: fragments for models with more than fragments.clustering_above atoms (10 times that for the GFN-FF force field) or with parallel.backend=dask, else the whole model."
  solvent = water
    .type = str
    .help = "Implicit solvent for engines that support it (xtb: GBSA); none switches it off."
  electronic_temperature = None
    .type = float
    .help = "Electronic temperature in K (xtb); None: the engine default (300 K)."
  accuracy = None
    .type = float
    .help = "Numerical accuracy factor (xtb; smaller is tighter); None: the engine default."
  linear_scaling = None
    .type = bool
    .help = "engine=mopac: MOZYME, MOPAC's linear-scaling SCF over localized orbitals, for a whole protein in one PM7 call (qm.clustering=false). 1us0 helix: gradient 0.044 kcal/mol/A RMS from conventional PM7; the SCF criterion is RELSCF=0.1. Other engines refuse it."
  basis = None
    .type = str
    .help = "Basis set for ab initio engines (pyscf, orca, terachem, gaussian, turbomole)."
  density_fit = None
    .type = bool
    .help = "pyscf: density fitting (RI) of the Coulomb and exchange integrals; HF-D3/6-31G gradients of a capped dipeptide 4x faster, within 3e-3 eV/A of the exact ones. None: exact integrals."
  timeout = None
    .type = float
    .help = "Seconds one engine call may take. A program (MOPAC, ORCA, ...) that runs longer is killed with everything it started and retried with the engine's safer settings; an in-process engine (xtb, PySCF; fragments only) has its worker process ended and the fragment run once more in a fresh one. If it fails again, the error names the fragment and its input is kept in <prefix>_failed/. None: no limit."
  low_level = None
    .type = str
    .help = "Dual-level minimisation: GFN-FF (xtb, whole model) drives the minimiser between QM calls. Each macro cycle makes one QM call and minimises GFN-FF corrected to the QM gradient there (plus a secant estimate of the curvature difference) within a trust region; converged, the model is a minimum of the QM target itself. ACE-GLY-NME to 1 kcal/mol/A: 20 GFN2 calls against 211. With crystal symmetry copies, GFN-FF computes the model with the same copies. None: every minimiser step calls the QM engine."
  low_level_cycles = 30
    .type = int
    .help = "With qm.low_level: macro cycles of the final refinement (one QM call each; refinement stops earlier when a cycle no longer moves the model)."
  low_level_iterations = 100
    .type = int
    .help = "With qm.low_level: most GFN-FF L-BFGS iterations per macro cycle (each cycle also stays within a trust region around its QM call)."
  clash_restraint = None
    .type = float
    .help = "Force constant (kcal/mol/A^2) of a harmonic wall added to the QM restraints on atom pairs whose van der Waals spheres overlap by more than 0.3 A (MolProbity's clash line is 0.4 A; pairs more than three bonds apart, polar-H H-bonds excepted). GFN-FF and GFN2-xTB hold aliphatic C-H...O contacts at 2.1-2.2 A, clashes to MolProbity (3j63_A, GFN-FF: clashscore 20; with 100: 0.0). None: 100 with a map (as the Ramachandran term), off with reflections and with no data. 0: off."
  ramachandran_scale = 0.6
    .type = float
    .help = "With restraints=qm and the Ramachandran restraints on: kcal/mol per unit of -ln(Top8000 density) added for each residue's (phi, psi). 0.6 is kT at 298 K, a Boltzmann inversion of the Top8000 distribution (3j63_A, GFN-FF with qm.clash_restraint=100: Rama-Z -0.78, 100 % favored; 2.0 over-tightens to Rama-Z +4.0; without the term -4.2)."
}
fragments {
  clustering_above = 1000
    .type = int
    .help = "qm.clustering=None: models with more atoms than this are computed on fragments (whole-model SCF time and memory grow as N^2-N^3 with the atom count, fragments linearly and in parallel)."
  max_cluster_residues = 15
    .type = int
    .help = "qm.clustering=true: largest cluster, in residues."
  buffer = 8.0
    .type = float
    .help = "qm.clustering=true: residues within this distance (A) of a cluster join its fragment (3j63_A, GFN2-xTB: 8 A gives RMS/max gradient error 0.42/2.4 kcal/mol/A)."
  charged_buffer = None
    .type = float
    .help = "qm.clustering=true: residues with a formal charge (Lys, Arg, Asp, Glu, charged termini and ligands) within this distance (A) of a cluster join its fragment too, beyond fragments.buffer: their field reaches across the cut. 3j63_A, GFN2-xTB, 15-residue clusters: buffer=5 with charged_buffer=10 gives RMS/max gradient error 0.49/2.58 kcal/mol/A at 761 atoms a fragment and 0.65x the default's CPU time (270.5 against 417.1 s), where buffer=5 alone gives 0.88/3.31 and the default (buffer=8) 0.42/2.37 (benchmarks/README.md, 'Charged residues in the buffer'). None: no charged residues beyond fragments.buffer."
  recluster_shift = 1.0
    .type = float
    .help = "qm.clustering=true: rebuild clusters when an atom has moved this far (A) since clustering."
  keep_clusters = False
    .type = bool
    .help = "qm.clustering=true: when rebuilding, keep the clusters and rebuild only their buffers, where a residue leaves a buffer only when more than 1 A beyond fragments.buffer; fragments that keep their atoms keep their engine (warm start, and GFN-FF's topology from the geometry they were first built at). 5ly6, GFN-FF, after a 1.05 A move: 23 of 34 fragments kept, that gradient 44.5 s against 57.9 s with new clusters; but the kept fragments' start topology moved 46 atoms' gradients by more than 20 kcal/mol/A (benchmarks/README.md, 'Re-clustering'). False: new clusters and buffers, every engine built at the current geometry."
  correction = *none whole_model
    .type = choice
    .help = "qm.clustering=true: whole_model adds to the fragment gradient a constant per-atom correction, the whole-model QM gradient minus the fragment gradient at a reference point, taken again at each macro cycle, after re-clustering and when an atom has moved fragments.correction_refresh A from that point (one whole-model gradient each time, in this process with nproc threads). 3j63_A, GFN2-xTB, 8 residues / 2 A buffer: RMS/max error 0.41/2.9 kcal/mol/A with atoms within 0.14 A of the reference point (2.9/24 without), 0.87/6.0 at 0.29 A (benchmarks/README.md, 'Delta-corrected fragments'). Not with crystal symmetry copies. none: fragments alone."
  correction_refresh = 0.15
    .type = float
    .help = "fragments.correction=whole_model: take the correction again when an atom has moved this far (A) from its reference point; 0: only at each macro cycle and after re-clustering."
}
symmetry {
  expand = None
    .type = bool
    .help = "restraints=qm, crystals (never maps); None: for space groups other than P1, True: also P1 (lattice translations; a P1 model is often a molecule in a box), False: never. The QM system is the model plus the symmetry copies (space-group operators and lattice translations) of whole residues within symmetry.radius of it; the copies move rigidly with the model and only the model's own gradient is used. Atoms on special positions are refused. With QM fragments, copies within max(symmetry.radius, fragments.buffer) may join fragment buffers. False: the asymmetric unit alone."
  radius = 6.0
    .type = float
    .help = "symmetry.expand: residues of symmetry copies with an atom within this distance (A) of the model join the QM system. Largest per-atom GFN2-xTB/GBSA gradient error against a complete environment (30 A), kcal/mol/A, small asymmetric units of uncharged residues: 5c11 (I432) 0.25 at 6 A, 0.027 at 24 A (alone 8.6); 3ds1 (P4_12_12) 0.052 at 6 A, 0.016 at 24 A (alone 5.6). Charged residues and polar space groups converge more slowly (5c11 with charges 3.9 at 6 A against 16 A). The default trades that error for QM cost. See README 'Crystal symmetry' and benchmarks/symmetry.py."
}
parallel {
  backend = *local dask
    .type = choice
    .help = "qm.clustering=true: where fragments run; local: nproc processes on this machine; dask: tasks on a running Dask cluster (needs parallel.scheduler=; pip install qrefine[dask])."
  scheduler = None
    .type = str
    .help = "backend=dask: address of the Dask scheduler (tcp://host:8786) or its scheduler file (.json); start scheduler and workers with dask scheduler/dask worker, or dask-jobqueue on SLURM/PBS/SGE."
}
map {
  target = *cctbx cc inner_product relative_entropy
    .type = choice
    .help = "Map data term: cctbx (the map interpolated at the atoms, as phenix.real_space_refine), or a seed-004 score between the map and a Gaussian model density of the non-H atoms (sigma = resolution / (pi sqrt 2)): cc (correlation), inner_product, or relative_entropy (smooth and long-ranged: fewer barriers for distorted models)."
}
reflections {
  labels = None
    .type = str
    .help = "Label(s) of the amplitude or intensity array, e.g. FOBS,SIGFOBS or IOBS."
  target = *auto ml ls
    .type = choice
    .help = "Reciprocal-space target: maximum likelihood, least squares, or auto (ML with at least 250 test reflections, else LS)."
  bulk_solvent = True
    .type = bool
    .help = "Model bulk solvent (mmtbx.f_model) when scales are updated."
  update_scales = True
    .type = bool
    .help = "Re-fit overall/anisotropic scales (and bulk solvent) each macro cycle; False for solvent-free simulated data."
}
r_free_flags {
  label = None
    .type = str
    .help = "Label of the R-free flag array; None picks it automatically."
}
refine {
  macro_cycles = None
    .type = int
    .help = "Number of macro cycles (scales and weight are updated between them).  None: 5, or 2 with QM restraints and a map on a model of more than 2000 atoms (see refine.max_iterations)."
  max_iterations = None
    .type = int
    .help = "Maximum L-BFGS iterations per macro cycle.  None: 100, or 60 with QM restraints and a map on a model of more than 2000 atoms (H included), where each weight trial is then 1 macro cycle and the final refinement 2.  Why: a QM gradient costs seconds there and grows faster than the atom count; at these lengths 5fn5_C (3787 atoms, GFN-FF) met the Q|R comparison in 33 min on 2 cores.  On 3j63_A (1436 atoms) the full lengths take 8 min and choose a better weight (benchmarks/README.md section 2, 'The refinement lengths of QM with a map')."
  convergence_tolerance = 1e-5
    .type = float
    .help = "Relative change of the target below which L-BFGS stops."
  gradient_tolerance = None
    .type = float
    .help = "L-BFGS also stops when no atom's gradient of the target exceeds this (as ASE's fmax; kcal/mol/A with restraints=qm mode=opt, where 1.0 is a tight geometry optimisation); None: only convergence_tolerance."
  fit_rotamers = True
    .type = bool
    .help = "Before refining against a map, move each rotamer outlier to the rotamer (library rotamers and the start, each with chi offsets of up to 30 deg) that sits best in the map without more clashes, when it fits within 0.3 sigma of the outlier's density; L-BFGS alone cannot cross the chi barriers between rotamers.  Maps only (X-ray data and mode=opt: off)."
  max_step = None
    .type = float
    .help = "Largest displacement of any atom in one L-BFGS trial step (A); None: 0.2 with restraints=qm (engines fail on overlapping atoms), unlimited (scipy's line search) with restraints=cctbx."
}
"""+ OUTPUT_PHIL_STR


def master_params():
    return iotbx.phil.parse(MASTER_PHIL_STR, process_includes=True)


def _all_paths(master):
    return [d.path for d in master.all_definitions()]


def suggest(key, master=None):
    """The valid parameter name nearest to ``key``, or None."""
    paths = _all_paths(master or master_params())
    leaf_to_path = {}
    for p in paths:
        leaf_to_path.setdefault(p.split(".")[-1], p)
    hit = difflib.get_close_matches(key, paths, n=1, cutoff=0.6)
    if hit:
        return hit[0]
    hit = difflib.get_close_matches(key.split(".")[-1], list(leaf_to_path), n=1, cutoff=0.6)
    return leaf_to_path[hit[0]] if hit else None


def parse(args, master_str=MASTER_PHIL_STR, program="qr.refine"):
    """Split ``args`` into (params, files).

    ``files`` are the arguments that are neither ``key=value`` nor a parameter
    file.  Returns the parameters as a frozen
    :class:`~qrefine.config.options.Options` view.
    """
    master = iotbx.phil.parse(master_str, process_includes=True)
    interpreter = master.command_line_argument_interpreter(home_scope="")
    sources, given, files = [], [], []
    for arg in args:
        if "=" in arg and not os.path.exists(arg):
            key, value = arg.split("=", 1)
            key = key.strip().lstrip("-")
            if not master.get(key).objects and not _leaf_matches(master, key):
                raise QRefineError(_unknown(key, master, program))
            try:
                sources.append(interpreter.process(arg="%s=%s" % (key, value)))
                given.append(arg)
            except Sorry as e:
                raise QRefineError("bad value for %s: %s" % (key, e))
        elif arg.endswith(PARAMS_FILE_SUFFIXES):
            if not os.path.isfile(arg):
                # Else it became a third "input file" and the message was
                # "too many input files".
                raise QRefineError("parameter file %s does not exist; check the path"
                                   % arg)
            try:
                src = iotbx.phil.parse(file_name=arg)
            except Exception as e:  # iotbx raises several kinds for syntax errors
                raise QRefineError("cannot read parameter file %s: %s" % (arg, e))
            for d in src.all_definitions():
                path = d.path
                if not master.get(path).objects:
                    raise QRefineError("parameter file %s: %s" % (arg, _unknown(path, master, program)))
            sources.append(src)
            given.append(arg)
        else:
            files.append(arg)
    try:
        working = master.fetch(sources=sources)
        params = working.extract()
    except (Sorry, RuntimeError) as e:
        # libtbx reports bad values as Sorry or RuntimeError; name the
        # argument that carries the bad value.
        culprit = next((a for a, src in zip(given, sources) if not _extracts(master, src)), None)
        reason = " ".join(str(e).split()).split(" (command line argument")[0]
        raise QRefineError("bad value %s: %s" % (culprit, reason) if culprit
                           else "bad parameter value: %s" % reason)
    return freeze(params), files


def _extracts(master, source):
    try:
        master.fetch(sources=[source]).extract()
        return True
    except (Sorry, RuntimeError):
        return False


def _leaf_matches(master, key):
    """True when ``key`` is the unique last component(s) of a parameter path."""
    return sum(1 for p in _all_paths(master)
               if p == key or p.endswith("." + key)) == 1


def _unknown(key, master, program):
    hint = suggest(key, master)
    msg = "unknown parameter '%s'" % key
    if hint:
        msg += "; did you mean '%s'?" % hint
    return msg + " (%s --show-defaults lists all)" % program


def show_defaults(master_str=MASTER_PHIL_STR, out=None):
    """Text of all parameters with their defaults and help."""
    master = iotbx.phil.parse(master_str)
    return master.as_str(attributes_level=1)


def as_dict(params, master_str=MASTER_PHIL_STR):
    """Flat {full.path: value} of a params object, for the JSON summary."""
    master = iotbx.phil.parse(master_str)
    working = master.format(python_object=thaw(params))
    out = {}
    for d in working.all_definitions():
        value = d.object.extract()
        if isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        elif value is not None and not isinstance(value, (int, float, bool, str)):
            value = str(value)
        if d.object.multiple:
            # One definition per value: all of them, not the last one only.
            values = out.setdefault(d.path, [])
            if value is not None:
                values.append(value)
        else:
            out[d.path] = value
    return out


def as_phil_string(params, master_str=MASTER_PHIL_STR):
    """The working parameters as a PHIL file the user can re-run with."""
    master = iotbx.phil.parse(master_str)
    return master.format(python_object=thaw(params)).as_str()


__all__ = ["parse", "suggest", "show_defaults", "as_dict", "as_phil_string",
           "master_params", "MASTER_PHIL_STR"]


def parse_one_model(args, master_str, program):
    """(params, model path) for tools that take one model and key=value
    parameters; an unknown ``-option`` or not exactly one file is an error."""
    params, files = parse(args, master_str=master_str, program=program)
    flags = [f for f in files if f.startswith("-")]
    if flags:
        raise QRefineError("unknown option %s (%s --help)" % (flags[0], program))
    if len(files) != 1:
        raise QRefineError("give exactly one model (%s model.pdb), got %s"
                           % (program, ", ".join(files) or "none"))
    return params, files[0]
