"""xtb engine: GFN2-xTB, GFN1-xTB and GFN-FF in process, through xtb-python.

One :class:`XTBCalculator` per fragment: the xtb objects live as long as the
calculator, and a call with new positions of the same atoms restarts the SCF
from the previous wavefunction (a warm start), which saves SCF iterations
during a minimisation.

Things this module takes care of, found with xtb-python 22.1 (libxtb 6.5.1)
next to the cctbx-base wheel:

* Loading.  cctbx loads its extensions with ``RTLD_GLOBAL``, which puts the
  OpenBLAS bundled with numpy into the global symbol scope.  xtb's own
  OpenBLAS then binds some internal kernels to numpy's and the first SCF
  crashes the interpreter (segmentation fault in ``dswap_``).  xtb is
  therefore loaded with ``RTLD_DEEPBIND`` (its libraries resolve their own
  symbols first), whatever was imported before.
* Silence.  The API prints nothing at verbosity "muted", except GFN-FF, which
  prints its topology to stdout while the calculator is built and writes
  ``gfnff_topo`` and ``gfnff_adjacency`` into the current directory.  That
  step runs in ``workdir`` (or a temporary directory, removed afterwards)
  with stdout captured in ``xtb_gfnff_setup.out`` there.
* Solvation.  The xtb C API behind xtb-python (6.5.1) only offers GBSA: its
  ``xtb_setSolvent`` fixes ``alpb = .false.``.  Checked: the solvation
  energy of the 1us0 helix in water agrees with tblite's GBSA to 1e-6 Eh and
  differs from tblite's ALPB by 0.017 Eh (GFN2).  ``solvent_model="gbsa"``
  is therefore the only choice here; ALPB needs the tblite library.
* Stack.  xtb keeps large work arrays on the stack: 3j63 chain A (1436
  atoms) needs between 64 and 128 MB in the calling thread *and* in each
  OpenMP thread, and crashes the interpreter (segmentation fault in the
  coordination numbers) with Linux's default 8 MB.  Every xtb call therefore
  runs in one worker thread with a 1 GiB stack, and ``OMP_STACKSIZE``
  defaults to 1G (both are address space, not memory, until used).
* Threads.  Idle OpenMP threads that spin (``OMP_WAIT_POLICY=active``) made
  xtb 10-30 times slower on two cores shared with other work, so the policy
  defaults to passive.  A user's ``OMP_*`` settings win.
* Reproducibility.  xtb's OpenMP loops sum in an order that depends on the
  number of threads, and with more than one thread also on their timing:
  two runs of the same 14-call dual-level minimisation (3ds1 with its
  crystal copies, GFN2/GFN-FF) ended at a largest gradient of 1.08 and 1.02
  kcal/mol/A with 2 threads, 5.03 under load, and 2.378 twice with one.
  Left to itself xtb takes one thread per core, so a result would depend on
  the machine.  Each calculator therefore sets its thread count (option
  ``threads``; default ``OMP_NUM_THREADS``, else 1) on xtb's own OpenMP and
  OpenBLAS runtimes before every call: with one thread the numbers are the
  same on every machine, bit for bit.
* Failures.  An SCF that does not converge raises ``XTBException`` (the API
  does report it); a geometry with atoms on top of each other can also give
  NaN energies without an exception (GFN1).  Both become
  :class:`~qrefine.engines.EngineFailed` naming the method.
"""

from concurrent.futures import ThreadPoolExecutor
import contextlib
import ctypes
import glob
import os
import shutil
import sys
import tempfile
import threading

from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree
import numpy as np

from qrefine.engines import EngineFailed, EngineUnavailable, resolve_method
from qrefine.engines.electrons import check_spin
from qrefine.errors import QRefineError
from qrefine.native import int_function

NAME = "xtb"
# Runs in this process (a library, no program): only ending the process that
# runs it can stop a call, so qm.timeout= is kept by the fragment executor.
IN_PROCESS = True
METHODS = ("GFN2-xTB", "GFN1-xTB", "GFN-FF")
SOLVENT_MODELS = ("gbsa",)

# Parameters a rebuild of the xtb objects is needed for; the others are
# changed on the live objects.
_REBUILD = ("method", "charge", "multiplicity", "solvent", "solvent_model",
            "reference_positions")

_STACK_BYTES = 1 << 30   # of the thread that calls xtb; see the module docstring

_xtb = None  # the imported xtb modules, see _load()
_worker = None  # the one thread with a big stack that runs every xtb call
_worker_lock = threading.Lock()


def _forget_worker():
    """A forked child has no copy of the worker thread: start a new one there."""
    global _worker, _worker_lock
    _worker, _worker_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_worker)


def availability():
    """(True, version) when xtb-python imports, else (False, what to install)."""
    try:
        mods = _load()
    except EngineUnavailable as e:
        return False, str(e)
    return True, "xtb-python (libxtb API %s)" % mods["api_version"]


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None,
                    solvent="water", electronic_temperature=300.0, accuracy=1.0,
                    max_iterations=250, solvent_model="gbsa", warm_start=True,
                    threads=None, reference_positions=None):
    """An :class:`XTBCalculator` (ASE; energy in eV, forces in eV/A).

    ``solvent``: implicit solvent name (``water``, ``methanol``, ``dmso`` ...)
    or ``None``/``"none"`` for vacuum.  ``multiplicity`` sets the number of
    unpaired electrons (``multiplicity - 1``); it must fit the electron count
    of the atoms (checked at the first calculation).  ``workdir`` only
    receives GFN-FF's setup files (nothing is written for GFN1/GFN2).
    ``threads``: OpenMP/OpenBLAS threads of every call (default:
    ``OMP_NUM_THREADS``, else 1, so that results do not depend on the
    machine; see the module docstring).  ``reference_positions`` (A, one
    row per atom): where GFN-FF takes its topology from (see
    :class:`XTBCalculator`); ignored by GFN1/GFN2.
    """
    _load()
    return XTBCalculator(method=resolve_method(sys.modules[__name__], method), charge=charge,
                         multiplicity=multiplicity, workdir=workdir, solvent=solvent,
                         electronic_temperature=electronic_temperature,
                         accuracy=accuracy, max_iterations=max_iterations,
                         solvent_model=solvent_model, warm_start=warm_start,
                         threads=threads, reference_positions=reference_positions)


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF, or None.

    1. Electronic temperature 1000 K and twice the iterations, starting from
       the last converged wavefunction.  Fermi smearing over a wider window
       gives fractional occupations near the Fermi level, which damps the
       charge sloshing between near-degenerate orbitals that makes the
       SCC iterations oscillate (the usual cause of failure for fragments
       with small HOMO-LUMO gaps, such as distorted geometries early in
       refinement).  The energy is then a free energy at 1000 K, slightly
       different from the 300 K one where both converge (GFN2, measured):
       1us0 helix, gap 3.3 eV: 4e-9 eV and 4e-8 eV/A; 3j63 residues 1-20,
       gap 1.9 eV: 8e-6 eV and 3e-4 eV/A; a Thr-Ala dipeptide, gap 1.5 eV:
       7e-5 eV and 2e-3 eV/A.  Small next to restraint errors, but a retry
       should be logged.
    2. The same without the previous wavefunction: when the geometry moved
       far, the old charges can be a worse guess than xtb's own (EEQ).
    """
    if attempt == 1:
        return {"electronic_temperature": 1000.0, "max_iterations": 500}
    if attempt == 2:
        return {"electronic_temperature": 1000.0, "max_iterations": 500,
                "warm_start": False}
    return None


class XTBCalculator(Calculator):
    """ASE calculator around one ``xtb.interface.Calculator``.

    ``n_calls`` counts the SCF runs, ``n_warm`` those that started from the
    previous wavefunction, and ``last_call_warm`` says whether the latest did.
    Besides energy and forces, the xTB methods give Mulliken ``charges``,
    orbital ``occupations`` (0..2; fractional ones at 300 K mean that the
    charge or multiplicity does not give a closed shell) and
    ``homo_lumo_gap`` (eV).  The atoms are always treated as a molecule:
    ``cell`` and ``pbc`` (which ASE sets from a PDB CRYST1 record) are ignored.
    ``set(**parameters)`` (ASE) changes settings: temperature, accuracy,
    iterations and ``warm_start`` apply to the live xtb objects; method,
    charge, multiplicity and solvent rebuild them.

    GFN-FF topology.  GFN-FF assigns bonds, rings and atom types once, from
    the geometry the xtb objects are built at, and keeps them when the atoms
    move.  A calculator built again at moved coordinates is therefore a
    different force field: on the 1us0 helix (94 atoms) moved along a
    perturbed model's displacements, its gradient differed from the running
    calculator's by 3e-9 kcal/mol/A at 0.1 and 0.3 A RMS and by 179 at 0.5 A
    (other bonds and atom types).  With
    ``reference_positions`` the objects are always built there and then
    moved, so any calculator for the same atoms and reference (a restarted
    worker's, a retry's) is the same force field, bit for bit.
    """

    implemented_properties = ["energy", "free_energy", "forces", "charges", "homo_lumo_gap",
                              "occupations"]
    default_parameters = {
        "method": METHODS[0], "charge": 0, "multiplicity": 1, "solvent": "water",
        "solvent_model": "gbsa", "electronic_temperature": 300.0, "accuracy": 1.0,
        "max_iterations": 250, "warm_start": True, "threads": None,
        "reference_positions": None,
    }

    def __init__(self, workdir=None, **kwargs):
        self.workdir = workdir
        self._api = None       # xtb.interface.Calculator for the current atoms
        self._wavefunction = None  # Results of the last converged SCF
        self.n_calls = 0
        self.n_warm = 0
        self.last_call_warm = False
        self._point_charges = None  # (numbers, charges, positions in A) or None
        self._point_charges_live = False  # whether the live xtb objects hold them
        Calculator.__init__(self, **kwargs)

    def set_point_charges(self, numbers, charges, positions):
        """Embed the atoms in fixed point charges (electrostatic embedding).

        ``numbers``: the element of each charge (xtb damps the Coulomb
        interaction at short range with that element's chemical hardness);
        ``charges`` in e; ``positions`` in A.  ``None`` for all three, or no
        charges, removes the embedding.  The forces are those on the atoms
        only (the charges are not atoms of this calculator).  GFN-FF ignores
        point charges in the xtb API; they are refused for it.
        """
        if numbers is None or len(numbers) == 0:
            new = None
        else:
            if self.parameters.method == "GFN-FF":
                raise QRefineError("xtb engine: GFN-FF takes no point charges")
            new = (np.ascontiguousarray(numbers, dtype=np.int32),
                   np.ascontiguousarray(charges, dtype=float),
                   np.ascontiguousarray(np.asarray(positions, dtype=float).reshape(-1, 3)))
        self._point_charges = new
        self.results = {}

    # -- ASE protocol ------------------------------------------------------

    def set(self, **kwargs):
        changed = Calculator.set(self, **kwargs)
        if changed:
            self._check_parameters(self.parameters)
            # The atoms stay: the next call recomputes them with the new settings.
            self.results = {}
            if any(k in changed for k in _REBUILD):
                self._drop()
            elif self._api is not None:
                self._apply_settings(self._api)
        return changed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        mods = _load()
        if self._api is not None and set(system_changes) - {"positions", "cell"}:
            self._drop()
        positions = np.ascontiguousarray(self.atoms.positions / Bohr)
        if self._api is None:
            self._api = self._build(mods, positions)
        elif "positions" in system_changes:
            try:
                self._api.update(positions)
            except mods["XTBException"] as e:
                self._drop()  # rebuilt from scratch at the next call
                raise EngineFailed("xtb %s: cannot take the new positions: %s"
                                   % (self.parameters.method, _gist(e)))
        self._apply_point_charges(mods)
        warm = bool(self.parameters.warm_start and self._wavefunction is not None)
        self.n_calls += 1
        self.last_call_warm = warm
        if warm:
            self.n_warm += 1
        try:
            # copy=True keeps the last converged wavefunction intact if this fails.
            result = _in_worker(_threaded, mods, _threads(self.parameters),
                                self._api.singlepoint,
                                self._wavefunction if warm else None, warm)
            energy = result.get_energy()
            gradient = result.get_gradient()
        except mods["XTBException"] as e:
            raise EngineFailed("xtb %s: %s" % (self.parameters.method, _gist(e)))
        if not (np.isfinite(energy) and np.all(np.isfinite(gradient))):
            raise EngineFailed("xtb %s: the energy or gradient is not finite (atoms too "
                               "close together?)" % self.parameters.method)
        self._wavefunction = result
        self.results["energy"] = energy * Hartree
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = -gradient * (Hartree / Bohr)
        if self.parameters.method != "GFN-FF":
            self.results["charges"] = result.get_charges()
            occupations = result.get_orbital_occupations()
            self.results["occupations"] = occupations
            self.results["homo_lumo_gap"] = _gap(result.get_orbital_eigenvalues(), occupations)

    def reset(self):
        Calculator.reset(self)
        self._drop()

    # -- internals ---------------------------------------------------------

    def _check_parameters(self, p):
        for key in ("method", "solvent_model"):
            if p[key] is None:
                raise QRefineError("xtb engine: %s must be given" % key)
        if p.method not in METHODS:
            raise QRefineError("xtb engine has no method '%s'; choose one of: %s"
                               % (p.method, ", ".join(METHODS)))
        if str(p.solvent_model).lower() not in SOLVENT_MODELS:
            raise QRefineError(
                "xtb engine: solvent_model '%s' is not available through xtb-python, "
                "whose API offers only GBSA (use solvent_model=gbsa)" % p.solvent_model)
        if _solvent_name(p.solvent) is not None and _load()["solvent"](p.solvent) is None:
            raise QRefineError("xtb engine: unknown solvent '%s'; choose one of: %s, or none"
                               % (p.solvent, ", ".join(_load()["solvents"])))
        if int(p.charge) != p.charge:
            raise QRefineError("xtb engine: charge must be an integer, got %s" % p.charge)
        if int(p.multiplicity) != p.multiplicity or p.multiplicity < 1:
            raise QRefineError("xtb engine: multiplicity must be a positive integer, got %s"
                               % p.multiplicity)
        if p.threads is not None and (int(p.threads) != p.threads or p.threads < 1):
            raise QRefineError("xtb engine: threads must be a positive integer, got %s"
                               % p.threads)

    def _build(self, mods, positions):
        p = self.parameters
        numbers = np.ascontiguousarray(self.atoms.numbers)
        check_spin(numbers, int(p.charge), int(p.multiplicity), who="xtb")
        uhf = int(p.multiplicity) - 1
        param = mods["param"][p.method]
        try:
            if p.method == "GFN-FF":
                build_at = positions
                if p.reference_positions is not None:
                    build_at = np.ascontiguousarray(
                        np.asarray(p.reference_positions, dtype=float).reshape(positions.shape)
                        / Bohr)
                args = (param, numbers, build_at, float(p.charge), uhf)
                with _gfnff_scratch(self.workdir, mods):
                    api = _in_worker(_threaded, mods, _threads(p), mods["Calculator"], *args)
                if build_at is not positions:
                    api.update(positions)
            else:
                args = (param, numbers, positions, float(p.charge), uhf)
                api = _in_worker(_threaded, mods, _threads(p), mods["Calculator"], *args)
            api.set_verbosity(mods["VERBOSITY_MUTED"])
            self._apply_settings(api)
            solvent = _solvent_name(p.solvent)
            if solvent is not None:
                api.set_solvent(mods["solvent"](solvent))
        except mods["XTBException"] as e:
            raise EngineFailed("xtb %s: setup failed: %s" % (p.method, _gist(e)))
        self._wavefunction = None
        return api

    def _apply_settings(self, api):
        p = self.parameters
        if p.method == "GFN-FF":
            return  # a force field: no SCF settings (xtb would log warnings)
        api.set_accuracy(float(p.accuracy))
        api.set_electronic_temperature(float(p.electronic_temperature))
        api.set_max_iterations(int(p.max_iterations))

    def _apply_point_charges(self, mods):
        """Hand the current point charges to the live xtb objects (every
        call: the charges move with the model)."""
        try:
            if self._point_charges is None:
                if self._point_charges_live:
                    self._api.release_external_charges()
                    self._point_charges_live = False
                return
            numbers, charges, positions = self._point_charges
            self._api.set_external_charges(numbers, charges,
                                           np.ascontiguousarray(positions / Bohr))
            self._point_charges_live = True
        except mods["XTBException"] as e:
            raise EngineFailed("xtb %s: cannot set the point charges: %s"
                               % (self.parameters.method, _gist(e)))

    def _drop(self):
        self._api = None
        self._point_charges_live = False
        self._wavefunction = None


def _threads(parameters):
    """The thread count of a call: the option, else OMP_NUM_THREADS, else 1."""
    if parameters.threads is not None:
        return int(parameters.threads)
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1").split(",")[0]))
    except ValueError:
        return 1


def _threaded(mods, threads, fn, *args):
    """``fn(*args)`` with ``threads`` threads; runs in the xtb worker thread.

    omp_set_num_threads sets the count of the calling thread's parallel
    regions, which is why it is called here and not in the caller.
    """
    mods["set_threads"](threads)
    return fn(*args)


def _gap(eigenvalues, occupations):
    """HOMO-LUMO gap in eV (orbitals filled more/less than half), or None."""
    occupied = eigenvalues[occupations > 0.5]
    empty = eigenvalues[occupations <= 0.5]
    if not len(occupied) or not len(empty):
        return None
    return float((empty.min() - occupied.max()) * Hartree)


def _solvent_name(solvent):
    if solvent is None:
        return None
    name = str(solvent).strip().lower()
    return None if name in ("", "none", "vacuum", "gas") else name


def _gist(error):
    """xtb's error stack as one line, innermost message last."""
    return " ".join(str(error).split())


def _load():
    """Import xtb-python once, binding its libraries to their own BLAS."""
    global _xtb
    if _xtb is not None:
        return _xtb
    flags = sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    # xtb's own OpenMP runtime reads these when it loads (module docstring).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_STACKSIZE", "1G")
    try:
        if flags is not None and deepbind:
            sys.setdlopenflags(os.RTLD_NOW | deepbind)
        import xtb.interface as interface
        import xtb.libxtb as libxtb
        import xtb.utils as utils
    except ImportError as e:
        raise EngineUnavailable("xtb-python is not installed (pip install xtb): %s" % e)
    finally:
        if flags is not None and deepbind:
            sys.setdlopenflags(flags)
    _xtb = {
        "Calculator": interface.Calculator,
        "XTBException": interface.XTBException,
        "VERBOSITY_MUTED": libxtb.VERBOSITY_MUTED,
        "api_version": libxtb.get_api_version(),
        "param": {"GFN2-xTB": interface.Param.GFN2xTB, "GFN1-xTB": interface.Param.GFN1xTB,
                  "GFN-FF": interface.Param.GFNFF},
        "solvent": utils.get_solvent,
        "solvents": sorted(utils._solvents),
        "fortran_flush": _fortran_flush(interface.__file__),
        "set_threads": _thread_setter(interface.__file__),
    }
    return _xtb


def _in_worker(fn, *args):
    """``fn(*args)`` in the xtb worker thread (1 GiB stack); exceptions pass.

    One persistent thread, so that xtb's OpenMP thread team is kept too.
    """
    global _worker
    with _worker_lock:
        if _worker is None:
            try:
                previous = threading.stack_size(_STACK_BYTES)
            except ValueError:  # a platform with a lower limit: keep its default
                previous = None
            try:
                worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xtb")
                worker.submit(int).result()  # start the thread while the size is set
            finally:
                if previous is not None:
                    threading.stack_size(previous)
            _worker = worker
    return _worker.submit(fn, *args).result()


def _fortran_flush(interface_file):
    """``FLUSH`` for all units of the gfortran runtime bundled with xtb, or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(interface_file)), "xtb.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libgfortran*.so*"))):
        try:
            fn = ctypes.CDLL(path)._gfortran_flush_i4
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_void_p]
        fn.restype = None
        return lambda: fn(None)
    return None


def _thread_setter(interface_file):
    """``set(n)``: n threads for the OpenMP and OpenBLAS runtimes bundled
    with xtb (its own copies, not numpy's: xtb is bound to them with
    RTLD_DEEPBIND).  dlopen of a library already loaded returns that one."""
    libs = os.path.join(os.path.dirname(os.path.dirname(interface_file)), "xtb.libs")
    setters = [fn for fn in (int_function(libs, "libgomp*.so*", ("omp_set_num_threads",)),
                             int_function(libs, "libopenblas*.so*",
                                          ("openblas_set_num_threads",)))
               if fn is not None]

    def set_threads(n):
        for fn in setters:  # cheap, and each worker thread has its own count
            fn(int(n))
    set_threads.found = len(setters)
    return set_threads


@contextlib.contextmanager
def _gfnff_scratch(workdir, mods):
    """Run GFN-FF's setup in ``workdir`` (or a temporary directory) with the
    process's stdout (file descriptor 1) going to a file there."""
    scratch = workdir or tempfile.mkdtemp(prefix="qrefine_xtb_")
    os.makedirs(scratch, exist_ok=True)
    sys.stdout.flush()
    cwd = os.getcwd()
    saved = os.dup(1)
    try:
        with open(os.path.join(scratch, "xtb_gfnff_setup.out"), "ab") as log:
            os.dup2(log.fileno(), 1)
            try:
                os.chdir(scratch)
                yield
            finally:
                if mods["fortran_flush"] is not None:
                    mods["fortran_flush"]()
                os.chdir(cwd)
                os.dup2(saved, 1)
    finally:
        os.close(saved)
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
