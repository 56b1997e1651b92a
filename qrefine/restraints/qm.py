"""Quantum-chemical restraints: the energy and gradient of the whole model
from an engine (an ASE calculator), as a RestraintSource.

Units: the value is the electronic energy in kcal/mol, relative to the first
energy computed in the run, and the gradient is in kcal/mol/A, so logs and
weights read in chemists' units.  The offset keeps the target near zero:
L-BFGS's convergence test is relative to the target's magnitude, and a total
energy of -10^5 kcal/mol would stop it 1 kcal/mol short.  The data weight is a
gradient-norm ratio, so neither units nor offset change the refinement.

Identical coordinates are never computed twice in a row (L-BFGS and the
weight estimate both ask for the same point), and the calculator object is
kept between calls so engines that can warm-start their SCF do so.
"""

import inspect
import logging
import os
import shutil
import time

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed
from ase.units import kcal, mol

from qrefine import engines
from qrefine.errors import QRefineError
from qrefine.restraints.base import RestraintSource

log = logging.getLogger(__name__)

EV_TO_KCAL_MOL = 1.0 / (kcal / mol)

# What an engine may raise when its SCF or program fails (as opposed to a
# programming error, which must not be retried).
ENGINE_FAILURES = (engines.EngineFailed, CalculationFailed)
try:  # ASE >= 3.23 has SCFError
    from ase.calculators.calculator import SCFError
    ENGINE_FAILURES = ENGINE_FAILURES + (SCFError,)
except ImportError:  # older ASE: CalculationFailed covers it
    pass


class QMRestraints(RestraintSource):
    """Whole-model QM energy and gradient as a restraint term.

    ``engine``: an ``engine=`` name; ``options``: engine keyword options
    (solvent, basis, ...).  ``failed_dir``: where the input of a calculation
    that fails after all retries is kept.  ``reference_sites``: the
    geometry every calculator of these atoms is built at, for engines whose
    force field takes its topology from the first geometry (GFN-FF; the
    engine's ``reference_positions``); default the first sites computed.  A
    retry's fresh calculator, or one rebuilt in a restarted worker, is then
    the same force field as the first.
    """

    def __init__(self, symbols, engine, method=None, charge=0, multiplicity=1,
                 options=None, failed_dir=None, label="whole model", reference_sites=None):
        self.module = engines.engine_module(engine)
        ok, hint = self.module.availability()
        if not ok:
            raise engines.EngineUnavailable("engine %s is not available here: %s"
                                            % (engine, hint))
        self.engine = engine
        self.method = engines.resolve_method(self.module, method)
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.options = dict(options or {})
        # qm.timeout: seconds per engine call, for engines that run a
        # program (the program is killed, then retried); in-process engines
        # are timed by the fragment executor, which can end their worker.
        self.timeout = self.options.pop("timeout", None)
        self.failed_dir = failed_dir
        self.label = label
        self.symbols = list(symbols)
        self.calls = 0          # engine calculations actually run
        self.requests = 0       # value_and_gradient calls, cache hits included
        self.seconds = 0.0
        self.retries = 0
        self.retry_notes = []   # one line per retry, for callers in other processes
        self._calculator = None
        self._cache_sites = None
        self._cache_result = None
        self.reference_energy = None  # eV; the first energy computed
        self.reference_sites = (None if reference_sites is None
                                else np.array(reference_sites, dtype=float).reshape(-1, 3))

    def _new_calculator(self, extra=None):
        options = dict(self.options)
        options.update(extra or {})
        if self.reference_sites is not None and \
                "reference_positions" in inspect.signature(self.module.make_calculator).parameters:
            options["reference_positions"] = self.reference_sites
        calculator = self.module.make_calculator(method=self.method, charge=self.charge,
                                                 multiplicity=self.multiplicity, **options)
        if self.timeout is not None and hasattr(calculator, "timeout"):
            calculator.timeout = float(self.timeout)
        return calculator

    def value_and_gradient(self, sites_cart):
        sites = np.array(sites_cart, dtype=float).reshape(-1, 3)
        self.requests += 1
        if self._cache_sites is not None and np.array_equal(sites, self._cache_sites):
            value, grad = self._cache_result
            return value, grad.copy()
        energy, forces = self._compute(sites)
        if self.reference_energy is None:
            self.reference_energy = energy
        value = (energy - self.reference_energy) * EV_TO_KCAL_MOL
        grad = -forces * EV_TO_KCAL_MOL
        self._cache_sites = sites
        self._cache_result = (value, grad)
        return value, grad.copy()

    def _compute(self, sites):
        if self.reference_sites is None:
            self.reference_sites = np.array(sites, dtype=float)
        atoms = Atoms(symbols=self.symbols, positions=sites)
        attempt = 0
        extra = None
        while True:
            if self._calculator is None:
                self._calculator = self._new_calculator(extra)
            atoms.calc = self._calculator
            t0 = time.time()
            try:
                energy = atoms.get_potential_energy()
                forces = atoms.get_forces()
                if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
                    raise engines.EngineFailed("non-finite energy or forces")
                return float(energy), np.array(forces)
            except ENGINE_FAILURES as error:
                attempt += 1
                extra = self.module.safer_settings(attempt)
                failed = self._calculator
                self._calculator = None  # a fresh start, never a poisoned wavefunction
                if extra is None:
                    kept = self._keep_failed_input(atoms, failed, error)
                    _remove_files(failed)  # kept in failed_dir now
                    raise QRefineError(
                        "%s %s calculation of the %s failed after %d retries (%s); "
                        "its input is kept in %s" % (
                            self.engine, self.method, self.label, attempt - 1,
                            " ".join(str(error).split())[:200], kept))
                _remove_files(failed)  # a failed attempt's temporary folder
                self.retries += 1
                # A retry changes the settings (and may change the energy a
                # little): say which part, why and how.
                note = "%s: %s %s failed (%s), retry %d with %s" % (
                    self.label, self.engine, self.method, " ".join(str(error).split())[:120],
                    attempt, ", ".join("%s=%s" % kv for kv in sorted(extra.items())))
                self.retry_notes.append(note)
                log.warning("%s", note)
            finally:
                self.calls += 1
                self.seconds += time.time() - t0

    def _keep_failed_input(self, atoms, calculator, error):
        """Copy the failed calculation's files (or at least its geometry)."""
        return keep_failed_input(self.failed_dir or os.path.abspath("qrefine_failed"), atoms,
                                 self.engine, self.method, self.charge, self.multiplicity,
                                 self.label, error, getattr(calculator, "directory", None))

    def describe(self):
        return "%s %s on the %s (charge %d, multiplicity %d)" % (
            self.engine, self.method, self.label, self.charge, self.multiplicity)

    def timing(self):
        return {"engine_calls": self.calls, "engine_requests": self.requests,
                "engine_s": round(self.seconds, 3), "engine_retries": self.retries}


def keep_failed_input(target, atoms, engine, method, charge, multiplicity, label, error,
                      workdir=None):
    """Write a failed calculation's geometry, a failure.txt saying what
    failed and why, and the engine's files (``workdir``) into ``target``;
    return ``target``."""
    os.makedirs(target, exist_ok=True)
    atoms.write(os.path.join(target, "failed_geometry.xyz"))
    with open(os.path.join(target, "failure.txt"), "w") as f:
        f.write("engine: %s\nmethod: %s\ncharge: %d\nmultiplicity: %d\n"
                "part: %s\nerror: %s\n" % (engine, method, charge, multiplicity, label, error))
    if workdir and os.path.isdir(workdir) and os.path.abspath(workdir) != os.getcwd():
        shutil.copytree(workdir, os.path.join(target, "engine_files"), dirs_exist_ok=True)
    return target


def _remove_files(calculator):
    remove = getattr(calculator, "remove_files", None)
    if remove is not None:
        remove()


class PathValue:
    """A value that agrees with a gradient field that is not (exactly) the
    gradient of a function: the line integral of the gradient by the
    trapezoid rule, from the nearest of the last ``memory`` evaluated points::

        V(x) = V(p) + (g(p) + g(x)) . (x - p) / 2,   p = nearest earlier point

    Along one search line this is the integral of the gradient along the
    line.  Taking the nearest point (not the last one) keeps a backtracking
    line search consistent: after a long trial step that hit a steep wall,
    the shorter steps are integrated from the line's start, so their values
    tend to the start value plus slope x step, and the sufficient-decrease
    test can be met.  (Integrating from the long step back instead leaves an
    error of about curvature x long step x short step, which can exceed the
    decrease the test asks for at every step length.)
    """

    def __init__(self, memory=8):
        self.memory = int(memory)
        self.points = []  # (sites, value, gradient), newest last

    def cached(self, sites):
        """(value, gradient) of a point already evaluated at exactly
        ``sites``, or None: repeated points cost no engine call."""
        for p, vp, gp in self.points:
            if np.array_equal(p, sites):
                return vp, gp.copy()
        return None

    def add_to_gradients(self, delta):
        """Add ``delta`` (N, 3) to every stored gradient: the gradient field
        changed by a constant (a refreshed fragment correction), and the
        next values are integrated from the stored points in the new field,
        so value and gradient stay consistent across the change."""
        self.points = [(p, vp, gp + delta) for p, vp, gp in self.points]

    def value(self, sites, grad):
        """The value at ``sites`` with gradient ``grad`` (both (N, 3));
        0 at the first point."""
        sites = np.asarray(sites, dtype=float)
        grad = np.asarray(grad, dtype=float)
        if not self.points:
            v = 0.0
        else:
            p, vp, gp = min(self.points, key=lambda q: float(((q[0] - sites) ** 2).sum()))
            v = vp + 0.5 * float(((gp + grad) * (sites - p)).sum())
        self.points.append((sites.copy(), v, grad.copy()))
        if len(self.points) > self.memory:
            self.points.pop(0)
        return v
