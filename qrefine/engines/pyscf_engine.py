"""PySCF engine: Hartree-Fock and DFT in process, with D3(BJ) dispersion.

Methods are ``HF`` or a libxc functional name (``B3LYP``, ``PBE``, ...),
optionally with ``-D3``: Grimme's D3 with Becke-Johnson damping from the
``dftd3`` package (two-body terms, as in Grimme's original program).  The
default, ``HF-D3`` with the 6-31G basis, is the TeraChem level of the Q|R
cryo-EM work.  Energies and forces are analytic (SCF gradients from PySCF,
dispersion gradients from dftd3).

Warm start: the calculator keeps the last density matrix and starts the next
SCF on the same atoms from it.
"""

import ctypes
import glob
from importlib import metadata
import importlib.util
import os
import sys

from ase.calculators.calculator import Calculator, all_changes
from ase.io import write
from ase.units import Bohr, Hartree
import numpy as np

from qrefine.engines import EngineFailed, EngineUnavailable
from qrefine.engines.electrons import check_spin
from qrefine.errors import QRefineError

NAME = "pyscf"
# Runs in this process: qm.timeout= is kept by the fragment executor.
IN_PROCESS = True
METHODS = ("HF-D3", "HF", "B3LYP-D3", "B3LYP", "PBE0-D3", "PBE0", "PBE-D3", "PBE",
           "TPSS-D3", "TPSS")

INSTALL_HINT = "pip install pyscf dftd3"
DEFAULT_BASIS = "6-31G"
_D3_SUFFIXES = ("-D3(BJ)", "-D3BJ", "-D3")

# Options make_calculator() accepts besides method/charge/multiplicity/workdir.
DEFAULTS = {
    "basis": DEFAULT_BASIS,
    "conv_tol": 1e-10,        # Hartree; FD-consistent energies
    "conv_tol_grad": 1e-6,    # orbital gradient; forces good to ~1e-4 eV/A
    "max_cycle": 100,
    "level_shift": 0.0,
    "damp": 0.0,
    "diis_start_cycle": 1,
    "init_guess": "minao",
    "warm_start": True,
    "nthreads": None,
    "density_fit": False,
    "auxbasis": None,
    "grid_level": 3,
    "grid_response": True,    # DFT forces consistent with the grid energy
    "d3_atm": False,          # three-body dispersion term
    "max_memory": None,       # MB
}

# The options make_calculator takes (its **options), for qrefine.engines.
OPTIONS = tuple(DEFAULTS)


def _load_pyscf():
    """Import pyscf, binding its bundled OpenBLAS to itself.

    cctbx loads numpy with RTLD_GLOBAL, which exports the internal kernels of
    numpy's 64-bit-integer OpenBLAS; pyscf's own (32-bit) OpenBLAS would then
    call them and crash.  Loading pyscf's copy with RTLD_DEEPBIND first makes
    it use its own kernels.

    pyscf's OpenMP code also aborts ("double free or corruption") in DFT
    gradients when it runs several threads in a process where cctbx is
    loaded, so its OpenMP runtime starts single-threaded unless the user set
    OMP_NUM_THREADS.  On 2 cores one thread was also the faster choice; more
    cores are used through fragments in separate processes.
    """
    if "pyscf.lib" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "pyscf.lib" not in sys.modules and sys.platform.startswith("linux"):
        spec = importlib.util.find_spec("pyscf")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'pyscf'")
        libdir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
        for pattern, mode in (("libquadmath*.so*", os.RTLD_LOCAL),
                              ("libgfortran*.so*", os.RTLD_LOCAL),
                              ("libopenblas*.so*", os.RTLD_LOCAL | os.RTLD_DEEPBIND)):
            for path in sorted(glob.glob(os.path.join(libdir, pattern))):
                try:
                    ctypes.CDLL(path, mode=mode | os.RTLD_NOW)
                except OSError:
                    pass
    import pyscf  # noqa: F401
    from pyscf import dft, gto, lib, scf  # noqa: F401
    return pyscf


def availability():
    """(True, versions) when pyscf and dftd3 are installed, else (False, what to install).

    Looks for the packages without importing them (pyscf takes seconds).
    """
    missing = [name for name in ("pyscf", "dftd3")
               if importlib.util.find_spec(name) is None]
    if missing:
        return False, "%s not installed: %s" % (" and ".join(missing), INSTALL_HINT)
    versions = []
    for name in ("pyscf", "dftd3"):
        try:
            versions.append("%s %s" % (name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append(name)
    return True, ", ".join(versions)


def parse_method(method):
    """(canonical name, functional or 'HF', dispersion?) for ``method``.

    Any libxc functional is accepted, with an optional ``-D3`` suffix; the
    D3(BJ) parameters must exist for it.
    """
    if method is None:
        method = METHODS[0]
    name = str(method).strip().upper()
    d3 = False
    for suffix in _D3_SUFFIXES:
        if name.endswith(suffix):
            name, d3 = name[:-len(suffix)], True
            break
    if not name:
        raise QRefineError("engine pyscf: empty method name '%s'" % method)
    if name not in ("HF", "RHF", "UHF"):
        try:
            _load_pyscf()
            from pyscf.dft import libxc
            libxc.parse_xc(name)
        except ImportError as e:
            raise EngineUnavailable("pyscf cannot be loaded (%s): %s" % (e, INSTALL_HINT))
        except (KeyError, ValueError) as e:
            raise QRefineError("engine pyscf has no method '%s': not HF and not a libxc "
                               "functional (%s); e.g. %s"
                               % (method, e, ", ".join(METHODS)))
    else:
        name = "HF"
    if d3:
        _d3_param(name, atm=False, method=method)
    return name + ("-D3" if d3 else ""), name, d3


def canonical_method(method):
    """Canonical spelling of ``method`` (default HF-D3); QRefineError if unknown."""
    return parse_method(method)[0]


def _d3_param(functional, atm, method=None):
    try:
        from dftd3.interface import RationalDampingParam
    except ImportError as e:
        raise EngineUnavailable("dftd3 cannot be loaded (%s): %s" % (e, INSTALL_HINT))
    try:
        return RationalDampingParam(method=functional.lower(), atm=bool(atm))
    except RuntimeError as e:
        raise QRefineError("no D3(BJ) parameters for '%s' (%s); drop the -D3 suffix"
                           % (method or functional, e))


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: level shift; 2: level shift and damping; 3: both, from a fresh
    superposition-of-atomic-potentials guess instead of the previous density
    (pyscf's "atom" guess emits a DeprecationWarning in pyscf 2.14).
    """
    if attempt == 1:
        return {"level_shift": 0.5, "max_cycle": 200}
    if attempt == 2:
        return {"level_shift": 0.5, "damp": 0.5, "diis_start_cycle": 4, "max_cycle": 300}
    if attempt == 3:
        return {"level_shift": 0.5, "damp": 0.5, "diis_start_cycle": 4, "max_cycle": 300,
                "init_guess": "sap", "warm_start": False}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running PySCF ``method`` (default HF-D3/6-31G) in process.

    Options (defaults in :data:`DEFAULTS`): ``basis``, ``conv_tol``,
    ``conv_tol_grad``, ``max_cycle``, ``level_shift``, ``damp``,
    ``diis_start_cycle``, ``init_guess``, ``warm_start``, ``nthreads``,
    ``density_fit``/``auxbasis``, ``grid_level``, ``grid_response``, ``d3_atm``,
    ``max_memory``.  ``workdir``, when given, receives the geometry of a
    failed calculation.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise QRefineError("unknown PySCF option(s) %s; known: %s"
                           % (", ".join(unknown), ", ".join(DEFAULTS)))
    ok, hint = availability()
    if not ok:
        raise EngineUnavailable(hint)
    try:
        _load_pyscf()
        import dftd3.interface  # noqa: F401
    except ImportError as e:
        raise EngineUnavailable("pyscf/dftd3 cannot be loaded (%s): %s" % (e, INSTALL_HINT))
    canonical = parse_method(method)[0]
    multiplicity = int(multiplicity)
    if multiplicity < 1:
        raise QRefineError("multiplicity must be >= 1, not %d" % multiplicity)
    return PyscfCalculator(method=canonical, charge=int(charge),
                           multiplicity=multiplicity, workdir=workdir, **options)


class PyscfCalculator(Calculator):
    """ASE calculator: PySCF SCF energy and analytic forces, plus D3(BJ).

    ``n_calls`` counts SCF runs, ``n_warm`` those started from the previous
    density, ``scf_cycles`` lists the SCF iterations of each run.
    """

    implemented_properties = ["energy", "forces", "free_energy"]
    default_parameters = dict(DEFAULTS, method=METHODS[0], charge=0, multiplicity=1)

    def __init__(self, workdir=None, **kwargs):
        self.workdir = workdir
        self.n_calls = 0
        self.n_warm = 0
        self.scf_cycles = []
        self._dm = None
        self._dm_key = None
        self._scf = None          # (converged SCF, functional, D3 gradient)
        Calculator.__init__(self, **kwargs)

    def set(self, **kwargs):
        changed = Calculator.set(self, **kwargs)
        if changed:
            self._scf = None
        if changed.get("warm_start") is False:
            self._dm = None
        return changed

    # -- the calculation -----------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        want_forces = "forces" in properties
        if not system_changes and self._scf is not None and want_forces:
            # Energy already done here; add the gradient of the same SCF.
            Calculator.calculate(self, atoms, properties, system_changes)
            self._forces_from(self._scf)
            return
        Calculator.calculate(self, atoms, properties, system_changes)
        self._scf = None
        p = self.parameters
        functional, d3 = parse_method(p.method)[1:]
        spin = int(p.multiplicity) - 1
        check_spin(self.atoms.numbers, p.charge, p.multiplicity, who="PySCF")
        with self._threads():
            try:
                mf, energy = self._run_scf(functional, spin)
                e_disp, g_disp = self._dispersion(mf.mol, functional) if d3 else (0.0, 0.0)
            except (EngineFailed, QRefineError):
                raise
            except Exception as e:  # pyscf/numpy errors: bad geometry, memory, ...
                raise self._failure("%s: %s" % (type(e).__name__, e))
        energy += e_disp
        if not np.isfinite(energy):
            raise self._failure("non-finite energy")
        self._scf = (mf, functional, g_disp)
        self.results["energy"] = energy * Hartree
        self.results["free_energy"] = self.results["energy"]
        if want_forces:
            self._forces_from(self._scf)

    def _forces_from(self, scf_state):
        mf, functional, g_disp = scf_state
        with self._threads():
            try:
                grad = mf.nuc_grad_method()
                grad.verbose = 0
                if functional != "HF":
                    grad.grid_response = bool(self.parameters.grid_response)
                gradient = np.asarray(grad.kernel()) + g_disp
            except Exception as e:
                raise self._failure("gradient: %s: %s" % (type(e).__name__, e))
        if not np.all(np.isfinite(gradient)):
            raise self._failure("non-finite gradient")
        self.results["forces"] = -gradient * (Hartree / Bohr)

    def _threads(self):
        from pyscf import lib
        n = self.parameters.nthreads
        return lib.with_omp_threads(int(n) if n else lib.num_threads())

    def _molecule(self, spin):
        from pyscf import gto
        p = self.parameters
        mol = gto.Mole()
        mol.atom = [(s, tuple(x)) for s, x in
                    zip(self.atoms.get_chemical_symbols(), self.atoms.positions)]
        mol.unit = "Angstrom"
        mol.basis = p.basis
        mol.charge = int(p.charge)
        mol.spin = spin
        mol.verbose = 0
        if p.max_memory:
            mol.max_memory = p.max_memory
        mol.build(dump_input=False, parse_arg=False)
        return mol

    def _mean_field(self, mol, functional):
        from pyscf import dft, scf
        p = self.parameters
        if functional == "HF":
            mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if mol.spin == 0 else dft.UKS(mol)
            mf.xc = functional
            mf.grids.level = int(p.grid_level)
        if p.density_fit:
            mf = mf.density_fit(auxbasis=p.auxbasis)
        mf.verbose = 0
        mf.chkfile = None
        mf.conv_tol = float(p.conv_tol)
        mf.conv_tol_grad = float(p.conv_tol_grad)
        mf.max_cycle = int(p.max_cycle)
        mf.level_shift = float(p.level_shift)
        mf.damp = float(p.damp)
        mf.diis_start_cycle = int(p.diis_start_cycle)
        mf.init_guess = p.init_guess
        if p.max_memory:
            mf.max_memory = p.max_memory
        return mf

    def _run_scf(self, functional, spin):
        p = self.parameters
        mol = self._molecule(spin)
        mf = self._mean_field(mol, functional)
        key = (tuple(int(z) for z in self.atoms.numbers), str(p.basis), mol.charge,
               mol.spin, p.method, bool(p.density_fit))
        dm0 = None
        if p.warm_start and self._dm is not None and self._dm_key == key:
            dm0 = self._dm
        self._dm = None
        self.n_calls += 1
        self.n_warm += int(dm0 is not None)
        energy = mf.kernel(dm0=dm0)
        self.scf_cycles.append(int(getattr(mf, "cycles", -1)))
        if not mf.converged:
            raise self._failure("SCF did not converge in %d cycles (level_shift %g, "
                                "damp %g)" % (mf.max_cycle, mf.level_shift, mf.damp))
        if p.warm_start:
            self._dm, self._dm_key = mf.make_rdm1(), key
        mf._eri = None    # the gradient recomputes what it needs; free the memory
        return mf, float(energy)

    def _dispersion(self, mol, functional):
        from dftd3.interface import DispersionModel
        param = _d3_param(functional, self.parameters.d3_atm)
        model = DispersionModel(self.atoms.numbers, mol.atom_coords(unit="Bohr"))
        result = model.get_dispersion(param, grad=True)
        return float(result["energy"]), np.asarray(result["gradient"])

    def _failure(self, why):
        p = self.parameters
        where = ""
        if self.workdir:
            os.makedirs(self.workdir, exist_ok=True)
            path = os.path.join(self.workdir, "failed_%d.xyz" % self.n_calls)
            write(path, self.atoms, format="xyz")
            where = "; geometry in %s" % path
        return EngineFailed("PySCF %s/%s (charge %d, multiplicity %d) failed: %s%s"
                            % (p.method, p.basis, int(p.charge), int(p.multiplicity),
                               why, where))
