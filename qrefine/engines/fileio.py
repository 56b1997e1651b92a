"""Plumbing shared by the engines that run an external program through files.

MOPAC, ORCA, TeraChem, Turbomole and Gaussian engines all do the same three steps
in a work directory: write the input files, run the program, read the energy
and gradient back.  :class:`ProgramCalculator` holds those steps and the
error handling; an engine supplies ``write_input``, ``run_job`` and
``read_output``.

Units: readers hand back the energy in eV and forces in eV/A.  Programs
print Hartree and Hartree/Bohr gradients; :func:`energy_from_hartree` and
:func:`forces_from_gradient` are the one place that converts them
(forces = -gradient).
"""

import abc
import contextlib
import os
import shutil
import subprocess
import tempfile
import types
import weakref

from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree
import numpy as np

from qrefine import children
from qrefine.engines import EngineFailed, resolve_method
from qrefine.engines.electrons import check_spin
from qrefine.errors import QRefineError

#: eV/A per Hartree/Bohr
HARTREE_PER_BOHR = Hartree / Bohr


def energy_from_hartree(energy):
    """Energy in eV from Hartree."""
    return float(energy) * Hartree


def forces_from_gradient(gradient):
    """Forces in eV/A from a gradient in Hartree/Bohr (forces = -gradient)."""
    return -np.asarray(gradient, dtype=float).reshape(-1, 3) * HARTREE_PER_BOHR


def find_program(name, directories=()):
    """Absolute path of executable ``name``: first in ``directories``, then on PATH."""
    for d in directories:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    path = shutil.which(name)
    return os.path.abspath(path) if path else None


def choose_method(engine, methods, method):
    """The entry of ``methods`` matching ``method`` (case-insensitive); first when None."""
    return resolve_method(types.SimpleNamespace(NAME=engine, METHODS=methods), method)


def check_options(engine, options, known):
    """A one-line error naming unknown ``options`` and the ``known`` ones."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise QRefineError("unknown %s option(s) %s; known: %s"
                           % (engine, ", ".join(unknown), ", ".join(known)))


def last_lines(path, n=3, width=300):
    """The last ``n`` non-blank lines of a text file as one line ('' if none)."""
    try:
        with open(path, errors="replace") as fd:
            lines = [ln.strip() for ln in fd.read().splitlines() if ln.strip()]
    except OSError:
        return ""
    text = " | ".join(lines[-n:])
    return text if len(text) <= width else "..." + text[-width:]


def read_text(path):
    """Contents of a text file, or None when it does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path, errors="replace") as fd:
        return fd.read()


def _remove_tree(path, state):
    if not state["keep"]:
        shutil.rmtree(path, ignore_errors=True)


class ProgramCalculator(Calculator, metaclass=abc.ABCMeta):
    """An ASE calculator that runs one external program job per geometry.

    Subclasses set ``program_name`` (for messages) and ``stale_outputs``
    (files deleted before each run, so a failed run can never be read as the
    previous one's result), and implement ``write_input(atoms)``,
    ``run_job(atoms)`` and ``read_output(atoms) -> (energy_eV, forces_eV_per_A)``.

    Files go in ``workdir``; without one, a temporary directory that is
    removed when the calculator is freed, unless a calculation failed (then
    its inputs and outputs stay for inspection).  ``n_calls`` counts jobs.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    program_name = "program"
    stale_outputs = ()
    timeout = None  # s per job (qm.timeout); the program is killed after it

    def __init__(self, method, charge=0, multiplicity=1, workdir=None, env=None):
        self._cleanup_state = {"keep": False}
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="qrefine-%s-" % self.program_name.lower())
            weakref.finalize(self, _remove_tree, workdir, self._cleanup_state)
            self._own_workdir = True
        else:
            os.makedirs(workdir, exist_ok=True)
        self.workdir = os.path.abspath(workdir)
        Calculator.__init__(self, directory=self.workdir)
        self.method = method
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.env = dict(env or {})
        self.n_calls = 0

    # -- the job -----------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.results = {}
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        check_spin(atoms.numbers, self.charge, self.multiplicity, who=self.program_name)
        for name in self.stale_outputs:
            path = self.path(name)
            if os.path.isfile(path):
                os.remove(path)
        self.write_input(atoms)
        self.n_calls += 1
        self.run_job(atoms)
        try:
            energy, forces = self.read_output(atoms)
        except EngineFailed:
            raise
        except Exception as e:  # the reader's boundary: ParseError, ValueError, ...
            raise self.failure("unreadable output (%s: %s)" % (type(e).__name__, e))
        forces = np.asarray(forces, dtype=float)
        if forces.shape != (len(atoms), 3):
            raise self.failure("gradient for %d atoms, expected %d"
                               % (forces.size // 3, len(atoms)))
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise self.failure("non-finite energy or gradient")
        self.results = {"energy": float(energy), "free_energy": float(energy),
                        "forces": forces}

    # Each engine implements these three; ABCMeta refuses to instantiate one
    # that does not.
    @abc.abstractmethod
    def write_input(self, atoms):
        """Write the program's input files for ``atoms`` into the workdir."""

    @abc.abstractmethod
    def run_job(self, atoms):
        """Run the program; raise EngineFailed when it fails."""

    @abc.abstractmethod
    def read_output(self, atoms):
        """Return (energy in eV, forces in eV/A) read from the outputs."""

    def get_spin_polarized(self):
        # Defined here, as ASE asks: without it ase.Calculator binds a
        # deprecated method to the instance, a reference cycle that keeps a
        # freed calculator (and its temporary directory) until the next
        # garbage collection.
        return self.multiplicity != 1

    # -- helpers for subclasses ---------------------------------------------
    def path(self, name):
        """Absolute path of ``name`` in the work directory."""
        return os.path.join(self.workdir, name)

    def write_file(self, name, text):
        with open(self.path(name), "w") as fd:
            fd.write(text)

    def run_program(self, argv, stdout, stderr=None, stdin=None):
        """Run ``argv`` in the work directory; EngineFailed unless it exits 0.

        ``argv`` is a list, or a string run by the shell (a user's command
        line, as ASE's ``ASE_<NAME>_COMMAND``).  ``stdout``/``stderr``/``stdin``
        are file names in the work directory (``stderr`` None: merged into
        ``stdout``).  Returns the stderr text.
        """
        env = dict(os.environ)
        env.update(self.env)
        shell = isinstance(argv, str)
        program = "'%s'" % argv if shell else os.path.basename(argv[0])
        out_path = self.path(stdout)
        err_path = self.path(stderr) if stderr else None
        try:
            with contextlib.ExitStack() as stack:
                out = stack.enter_context(open(out_path, "wb"))
                err = (stack.enter_context(open(err_path, "wb")) if err_path
                       else subprocess.STDOUT)
                inp = (stack.enter_context(open(self.path(stdin), "rb")) if stdin
                       else subprocess.DEVNULL)
                rc = children.run(argv if shell else list(argv), cwd=self.workdir, env=env,
                                  stdin=inp, stdout=out, stderr=err, timeout=self.timeout,
                                  shell=shell)
        except children.ChildTimeout as e:
            raise self.failure("%s %s" % (program, e))
        except OSError as e:
            raise self.failure("could not run %s: %s" % (argv if shell else argv[0], e))
        err_text = read_text(err_path) if err_path else ""
        if rc != 0:
            detail = last_lines(err_path) if err_path else ""
            detail = detail or last_lines(out_path)
            raise self.failure("%s exited with status %d%s"
                               % (program, rc, ": " + detail if detail else ""))
        return err_text or ""

    def remove_files(self):
        """Delete the temporary work directory now (a failed attempt's, once
        its files are kept elsewhere or a retry has replaced it)."""
        if getattr(self, "_own_workdir", False):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def failure(self, why):
        """EngineFailed naming the program, method and work directory; keeps the files."""
        self._cleanup_state["keep"] = True
        return EngineFailed("%s %s failed in %s%s: %s"
                            % (self.program_name, self.method, self.workdir,
                               self.failure_detail(), why))

    def failure_detail(self):
        """More to say where a failure happened (e.g. the input file's name)."""
        return ""

