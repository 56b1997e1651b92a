"""Turbomole engine: (RI-)DFT and Hartree-Fock energies and analytic gradients.

Per geometry, in a work directory:

* ``coord``: the geometry as a Turbomole ``$coord`` data group
  (``x y z element`` in Bohr; ``ase.io`` format ``turbomole``);
* first job only (and when the atoms change): ``define < define.inp``, where
  ``define.inp`` is the answer script made by ASE's Turbomole parameters
  (``TurbomoleParameters.get_define_str``: basis ``b all``, charge,
  occupation, ``dft``/``func``, ``ri``, ``scf iter``/``damp``); for ``-D3``
  methods ``$disp3`` (Grimme D3, zero damping) is then added to ``control``.
  Later jobs rewrite ``coord`` only, so the SCF starts from the previous
  orbitals;
* ``ridft`` + ``rdgrad`` (RI methods) or ``dscf`` + ``grad``, stdout to
  ``<program>.out``, stderr to ``<program>.err``.  Each must exit 0 and write
  ``<program> ended normally`` to stderr; a ``dscf_problem`` file means the
  SCF did not converge;
* read ``gradient`` (the ``$grad`` data group, Turbomole manual "Format of
  the gradient file") with ASE's reader (``ase.io.turbomole``): the last
  cycle's line ``cycle = n  SCF energy = <E>  |dE/dxyz| = ...`` (Hartree), N
  lines ``x y z element`` (Bohr, checked against ours) and N lines
  ``gx gy gz`` (Hartree/Bohr, Fortran ``D`` exponents allowed).

The stale ``gradient`` and ``energy`` files are removed before each run
(``rdgrad`` appends a new cycle to an old file).

ASE's ``Turbomole`` calculator class is not used directly: it runs in the
current directory and needs Turbomole's ``sdg``/``kdg`` tools to read
results; its define script and file readers are used.

The programs: ``$TURBODIR`` set and ``define``, ``ridft``, ``rdgrad``,
``dscf``, ``grad`` on PATH (Turbomole's ``Config_turbo_env`` does both).
Default RI-BP86/def-SV(P), the Q|R helix paper's level.
"""

import os

from ase.calculators.turbomole.parameters import TurbomoleParameters
from ase.io import write
from ase.io.turbomole import read_turbomole_gradient
import numpy as np

from qrefine.engines import EngineUnavailable
from qrefine.engines.fileio import (ProgramCalculator, check_options, choose_method, find_program,
                                    read_text)
from qrefine.errors import QRefineError

NAME = "turbomole"
METHODS = ("RI-BP86", "RI-BP86-D3", "BP86", "RI-PBE", "RI-PBE-D3", "RI-B3LYP",
           "RI-B3LYP-D3", "RI-PBE0-D3", "HF", "HF-D3")
DEFAULT_BASIS = "def-SV(P)"

# method -> (density functional or None for HF, RI-J?, D3?)
_METHOD = {
    "RI-BP86": ("b-p", True, False), "RI-BP86-D3": ("b-p", True, True),
    "BP86": ("b-p", False, False),
    "RI-PBE": ("pbe", True, False), "RI-PBE-D3": ("pbe", True, True),
    "RI-B3LYP": ("b3-lyp", True, False), "RI-B3LYP-D3": ("b3-lyp", True, True),
    "RI-PBE0-D3": ("pbe0", True, True),
    "HF": (None, False, False), "HF-D3": (None, False, True),
}

PROGRAMS = ("define", "ridft", "rdgrad", "dscf", "grad")

INSTALL_HINT = ("set $TURBODIR to the Turbomole installation and put its programs "
                "on PATH (source $TURBODIR/Config_turbo_env)")

OPTIONS = ("basis", "nprocs", "scf_maxiter", "scf_damping", "ri_memory_mb")

COORD, DEFINE_INPUT, CONTROL, GRADIENT = "coord", "define.inp", "control", "gradient"

# Files define makes; removed before a fresh define (define asks other
# questions when a control file exists).
_DEFINE_FILES = ("control", "basis", "auxbasis", "mos", "alpha", "beta", "energy",
                 "gradient", "dscf_problem", "statistics")


def _programs():
    """{name: full path} for the Turbomole programs found on PATH."""
    return {name: find_program(name) for name in PROGRAMS}


def _missing():
    """What is missing for a Turbomole run, as words ([] when nothing)."""
    missing = []
    if not os.environ.get("TURBODIR"):
        missing.append("$TURBODIR is not set")
    absent = [name for name, path in _programs().items() if path is None]
    if absent:
        missing.append("%s not on PATH" % ", ".join(absent))
    return missing


def availability():
    """(True, where) when Turbomole is set up, else (False, what to set)."""
    missing = _missing()
    if missing:
        return False, "Turbomole not found: %s; %s" % ("; ".join(missing), INSTALL_HINT)
    return True, "Turbomole: %s (TURBODIR=%s)" % (
        os.path.dirname(_programs()["ridft"]), os.environ["TURBODIR"])


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: stronger damping (start 1.5, step 0.05, minimum 0.5), 300 iterations;
    2: heavy damping (start 5.0, step 0.1, minimum 1.0), 600 iterations.
    """
    if attempt == 1:
        return {"scf_damping": (1.5, 0.05, 0.5), "scf_maxiter": 300}
    if attempt == 2:
        return {"scf_damping": (5.0, 0.1, 1.0), "scf_maxiter": 600}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running Turbomole ``method`` (default RI-BP86/def-SV(P)).

    Options: ``basis`` (a Turbomole basis-library name, default def-SV(P)),
    ``nprocs`` (SMP threads: sets $PARA_ARCH=SMP and $PARNODES; PATH must
    then hold the SMP programs, $TURBODIR/bin/<sysname>_smp), ``scf_maxiter``
    (default 100), ``scf_damping`` ((start, step, minimum), see
    :func:`safer_settings`), ``ri_memory_mb`` (default 1000).
    """
    check_options(NAME, options, OPTIONS)
    missing = _missing()
    if missing:
        raise EngineUnavailable("Turbomole not found: %s; %s"
                                % ("; ".join(missing), INSTALL_HINT))
    return TurbomoleCalculator(method=choose_method(NAME, METHODS, method),
                               charge=charge, multiplicity=multiplicity,
                               workdir=workdir, programs=_programs(), **options)


class TurbomoleCalculator(ProgramCalculator):
    """Turbomole energy + gradient runs in ``workdir``."""

    program_name = "Turbomole"
    stale_outputs = ("gradient", "energy", "dscf_problem")

    def __init__(self, method="RI-BP86", charge=0, multiplicity=1, workdir=None,
                 programs=None, basis=DEFAULT_BASIS, nprocs=None, scf_maxiter=100,
                 scf_damping=None, ri_memory_mb=1000):
        ProgramCalculator.__init__(self, method, charge, multiplicity, workdir)
        self.programs = dict(programs or {name: name for name in PROGRAMS})
        self.basis = basis
        self.scf_maxiter = int(scf_maxiter) if scf_maxiter else None
        self.scf_damping = tuple(float(x) for x in scf_damping) if scf_damping else None
        if self.scf_damping is not None and len(self.scf_damping) != 3:
            raise QRefineError("turbomole option scf_damping needs three numbers "
                               "(start, step, minimum), not %r" % (scf_damping,))
        self.ri_memory_mb = int(ri_memory_mb)
        if nprocs and int(nprocs) > 1:
            self.env.update({"PARA_ARCH": "SMP", "PARNODES": str(int(nprocs))})
        functional, ri, _ = _METHOD[method]
        self.energy_program = "ridft" if ri else "dscf"
        self.gradient_program = "rdgrad" if ri else "grad"
        self._defined_for = None   # atomic numbers of the current control file

    def define_parameters(self):
        """ASE's Turbomole parameters for this method, basis, charge and spin."""
        functional, ri, _ = _METHOD[self.method]
        params = {"multiplicity": self.multiplicity, "total charge": self.charge,
                  "basis set name": self.basis, "use dft": functional is not None,
                  "density functional": functional,
                  "grid size": "m3" if functional else None,
                  "use resolution of identity": ri, "ri memory": self.ri_memory_mb,
                  "scf iterations": self.scf_maxiter}
        if self.scf_damping:
            start, step, minimum = self.scf_damping
            params.update({"initial damping": start, "damping adjustment step": step,
                           "minimal damping": minimum})
        p = TurbomoleParameters(**params)
        p.verify()
        return p

    def define_script(self, natoms):
        """The answers fed to ``define`` on stdin."""
        return self.define_parameters().get_define_str(natoms)

    def write_input(self, atoms):
        numbers = tuple(int(z) for z in atoms.numbers)
        if self._defined_for != numbers:
            for name in _DEFINE_FILES:
                if os.path.isfile(self.path(name)):
                    os.remove(self.path(name))
            self.write_file(DEFINE_INPUT, self.define_script(len(atoms)))
        molecule = atoms.copy()
        molecule.pbc = False
        molecule.set_constraint()   # no 'f' (frozen) flags in coord
        write(self.path(COORD), molecule, format="turbomole")

    def run_job(self, atoms):
        numbers = tuple(int(z) for z in atoms.numbers)
        if self._defined_for != numbers:
            self._defined_for = None
            self._run("define", stdin=DEFINE_INPUT)
            if not os.path.isfile(self.path(CONTROL)):
                raise self.failure("define wrote no control file")
            if _METHOD[self.method][2]:
                self.add_data_group("$disp3")
            self._defined_for = numbers
        self._run(self.energy_program)
        if os.path.isfile(self.path("dscf_problem")):
            raise self.failure("%s: SCF did not converge (dscf_problem: %s)"
                               % (self.energy_program, _first_line(self.path("dscf_problem"))))
        self._run(self.gradient_program)

    def _run(self, name, stdin=None):
        err = self.run_program([self.programs[name]], stdin=stdin,
                               stdout=name + ".out", stderr=name + ".err")
        if "ended normally" not in err:
            detail = " ".join(err.split())[-200:] or "no 'ended normally' on stderr"
            raise self.failure("%s: %s" % (name, detail))

    def add_data_group(self, group):
        """Insert the data group line ``group`` before ``$end`` in ``control``."""
        text = read_text(self.path(CONTROL)) or ""
        lines = text.splitlines()
        if group.split()[0] in (ln.split()[0] for ln in lines if ln.strip()):
            return
        end = [i for i, ln in enumerate(lines) if ln.strip() == "$end"]
        if not end:
            raise self.failure("control file has no $end")
        lines.insert(end[-1], group)
        self.write_file(CONTROL, "\n".join(lines) + "\n")

    def read_output(self, atoms):
        if not os.path.isfile(self.path(GRADIENT)):
            raise self.failure("%s wrote no gradient file" % self.gradient_program)
        with open(self.path(GRADIENT)) as fd:
            result = read_turbomole_gradient(fd, index=-1)
        if len(result) != len(atoms):
            raise self.failure("gradient file has %d atoms, expected %d"
                               % (len(result), len(atoms)))
        if np.abs(result.positions - atoms.positions).max() > 1e-4:
            raise self.failure("gradient file is for another geometry")
        return result.calc.results["energy"], result.calc.results["forces"]

    @property
    def last_input(self):
        return self.path(COORD)


def _first_line(path):
    text = read_text(path) or ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else "empty"
