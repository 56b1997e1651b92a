"""Gaussian engine: Hartree-Fock / DFT energies and analytic forces (g16 or g09).

One ``Force`` job per geometry in a work directory:

* input ``gaussian.com``, written by ASE's Gaussian writer
  (``ase.io.gaussian.write_gaussian_in``)::

      %nprocshared=4            (with nprocs=)
      %mem=2000MB               (with memory_mb=)
      #P HF/6-31G ! ASE formatted method and basis
      EmpiricalDispersion(GD3)
      nosymm
      scf(MaxCycle=128)
      force

      Gaussian input prepared by ASE

      0 1
      O     0.0000000000  0.0000000000  0.1190000000   (Angstrom)
      ...

* run ``g16 < gaussian.com > gaussian.log``;
* read ``gaussian.log`` with ASE's reader (``ase.io.gaussian.read_gaussian_out``):
  the energy from the last ``SCF Done:  E(...) = <E> A.U.`` line (Hartree,
  dispersion included), the forces from the block headed
  ``Center  Atomic  Forces (Hartrees/Bohr)`` (forces, not gradients; input
  orientation, which ``nosymm`` keeps equal to ours).  The log must end with
  ``Normal termination of Gaussian``.  These are the formats of the Gaussian
  User's Reference ("Force" keyword, output of links 502/716).

ASE's ``Gaussian`` calculator class is not used directly only to keep one
error type and work-directory handling for all file-based engines; its
writer and reader are.

Methods: ``-D3`` is Grimme's D3 with zero damping (``EmpiricalDispersion=GD3``),
as in the ORCA (``D3ZERO``) and TeraChem (``dispersion d3``) engines.
"""

import os
import shlex

from ase.io.gaussian import read_gaussian_out, write_gaussian_in

from qrefine.engines import EngineUnavailable
from qrefine.engines.fileio import (ProgramCalculator, check_options, choose_method, find_program,
                                    read_text)

NAME = "gaussian"
METHODS = ("HF-D3", "HF", "B3LYP-D3", "B3LYP", "PBE0-D3", "PBE-D3", "BP86",
           "BP86-D3", "wB97XD")
DEFAULT_BASIS = "6-31G"

# method -> (Gaussian method keyword, EmpiricalDispersion or None)
_ROUTE = {
    "HF-D3": ("HF", "GD3"), "HF": ("HF", None),
    "B3LYP-D3": ("B3LYP", "GD3"), "B3LYP": ("B3LYP", None),
    "PBE0-D3": ("PBE1PBE", "GD3"), "PBE-D3": ("PBEPBE", "GD3"),
    "BP86": ("BP86", None), "BP86-D3": ("BP86", "GD3"),
    "wB97XD": ("wB97XD", None),
}

PROGRAMS = ("g16", "g09")

INSTALL_HINT = ("put g16 (or g09) on PATH, e.g. set $g16root and source "
                "$g16root/g16/bsd/g16.profile (which also sets $GAUSS_EXEDIR)")

OPTIONS = ("basis", "nprocs", "memory_mb", "scf_maxiter", "scf_keywords", "route",
           "command")

INPUT, OUTPUT = "gaussian.com", "gaussian.log"


def _program(command=None):
    """Full path of the Gaussian program: ``command``, then g16/g09 in
    $GAUSS_EXEDIR or on PATH; None when not found."""
    if command:
        argv = shlex.split(command)
        return find_program(argv[0]) if argv else None
    exedirs = [d for d in os.environ.get("GAUSS_EXEDIR", "").split(os.pathsep) if d]
    for name in PROGRAMS:
        path = find_program(name, exedirs)
        if path:
            return path
    return None


def availability():
    """(True, where) when g16 or g09 is found, else (False, what to set)."""
    path = _program()
    if path is None:
        return False, "Gaussian not found: " + INSTALL_HINT
    return True, "Gaussian: %s" % path


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: ``SCF=XQC`` (quadratic convergence when DIIS stalls), 512 cycles;
    2: ``SCF=QC``, 1024 cycles.
    """
    if attempt == 1:
        return {"scf_keywords": "XQC", "scf_maxiter": 512}
    if attempt == 2:
        return {"scf_keywords": "QC", "scf_maxiter": 1024}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running Gaussian ``method`` (default HF-D3/6-31G).

    Options: ``basis`` (default 6-31G), ``nprocs`` (%nprocshared),
    ``memory_mb`` (%mem), ``scf_maxiter`` (default 128), ``scf_keywords``
    (more SCF=(...) options, comma-separated, see :func:`safer_settings`),
    ``route`` (more route keywords, text), ``command`` (the g16/g09 program).
    """
    check_options(NAME, options, OPTIONS)
    command = options.pop("command", None)
    program = _program(command)
    if program is None:
        raise EngineUnavailable("Gaussian not found: command '%s' is not a program"
                                % command if command else availability()[1])
    return GaussianCalculator(method=choose_method(NAME, METHODS, method),
                              charge=charge, multiplicity=multiplicity,
                              workdir=workdir, program=program, **options)


class GaussianCalculator(ProgramCalculator):
    """Gaussian ``Force`` single points in ``workdir``."""

    program_name = "Gaussian"
    stale_outputs = (OUTPUT,)

    def __init__(self, method="HF-D3", charge=0, multiplicity=1, workdir=None,
                 program="g16", basis=DEFAULT_BASIS, nprocs=None, memory_mb=None,
                 scf_maxiter=128, scf_keywords="", route=""):
        ProgramCalculator.__init__(self, method, charge, multiplicity, workdir)
        self.program = program
        # g16 finds its links through $GAUSS_EXEDIR and needs a scratch directory.
        if not os.environ.get("GAUSS_EXEDIR"):
            self.env["GAUSS_EXEDIR"] = os.path.dirname(program)
        if not os.environ.get("GAUSS_SCRDIR"):
            self.env["GAUSS_SCRDIR"] = self.workdir
        self.basis = basis
        self.nprocs = int(nprocs) if nprocs else None
        self.memory_mb = int(memory_mb) if memory_mb else None
        self.scf_maxiter = int(scf_maxiter) if scf_maxiter else None
        self.scf_keywords = ",".join(w for w in str(scf_keywords or "").replace(",", " ").split())
        self.route = " ".join(str(route or "").split())

    def route_parameters(self):
        """Keyword arguments for ASE's writer: link 0, route and molecule."""
        gmethod, dispersion = _ROUTE[self.method]
        params = {"method": gmethod, "basis": self.basis,
                  "charge": self.charge, "mult": self.multiplicity}
        if self.nprocs:
            params["nprocshared"] = self.nprocs
        if self.memory_mb:
            params["mem"] = "%dMB" % self.memory_mb
        if dispersion:
            params["EmpiricalDispersion"] = dispersion
        params["nosymm"] = None   # keep our orientation: forces come back in it
        scf = []
        if self.scf_maxiter:
            scf.append("MaxCycle=%d" % self.scf_maxiter)
        if self.scf_keywords:
            scf.append(self.scf_keywords)
        if scf:
            params["scf"] = ",".join(scf)
        if self.route:
            params["extra"] = self.route
        return params

    def write_input(self, atoms):
        molecule = atoms.copy()
        molecule.pbc = False   # no TV (translation vector) lines
        with open(self.path(INPUT), "w") as fd:
            write_gaussian_in(fd, molecule, properties=["energy", "forces"],
                              **self.route_parameters())

    def run_job(self, atoms):
        self.run_program([self.program], stdin=INPUT, stdout=OUTPUT)

    def read_output(self, atoms):
        text = read_text(self.path(OUTPUT))
        if text is None:
            raise self.failure("no %s" % OUTPUT)
        termination = [ln.strip() for ln in text.splitlines() if "termination" in ln]
        if not termination or not termination[-1].startswith("Normal termination"):
            raise self.failure(_gaussian_error(text))
        with open(self.path(OUTPUT)) as fd:
            result = read_gaussian_out(fd, index=-1)
        results = result.calc.results if result.calc is not None else {}
        if results.get("energy") is None:
            raise self.failure("no SCF Done energy in %s" % OUTPUT)
        if results.get("forces") is None:
            raise self.failure("no Forces (Hartrees/Bohr) block in %s" % OUTPUT)
        return results["energy"], results["forces"]

    @property
    def last_input(self):
        return self.path(INPUT)


def _gaussian_error(text):
    """Gaussian's reason for stopping, from its log text."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Error termination"):
            before = lines[i - 1] if i > 0 else ""
            return "%s (%s)" % (line, before) if before else line
    for line in reversed(lines):
        if "Convergence failure" in line:
            return line
    return "the log does not end with Normal termination of Gaussian"
