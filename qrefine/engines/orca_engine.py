"""ORCA engine: Hartree-Fock / DFT energies and analytic gradients.

One ``EnGrad`` job per geometry in a work directory:

* input ``orca.inp``, written by ASE's ORCA writer (``ase.io.orca.write_orca``)::

      ! HF D3ZERO 6-31G EnGrad TightSCF
      %maxcore 1000          (with memory_mb=)
      %pal nprocs 4 end      (with nprocs=)
      %scf maxiter 200 end
      *xyz 0 1
      O   0.0 0.0 0.119      (Angstrom)
      ...
      *

* run ``orca orca.inp > orca.out 2> orca.err``;
* energy: the last ``FINAL SINGLE POINT ENERGY`` line of ``orca.out``
  (Hartree; ``ase.io.orca.read_energy``), which must end with
  ``ORCA TERMINATED NORMALLY``;
* gradient: ``orca.engrad``, the block after ``# The current gradient in
  Eh/bohr`` (3N numbers, x1 y1 z1 x2 ...; ``ase.io.orca.read_orca_engrad``).

Both formats are described in the ORCA manual (sections "Single point
energies and gradients" / the ``.engrad`` file).

The program: ``$ASE_ORCA_COMMAND`` (ASE's variable; the ORCA binary, with its
full path), else ``orca`` on PATH when ORCA's ``orca_*`` modules sit beside it
(so GNOME's screen reader of the same name is not taken for it), resolved to
its full path because ORCA needs it for parallel (``%pal``) runs.  ASE's own ``ORCA`` class is not used
directly: it is not an ``ase...Calculator`` and its reader prints to stdout;
its input writer and readers are.

Methods: ``-D3`` means Grimme's D3 with zero damping (``D3ZERO``), the same
correction as TeraChem's ``dispersion d3`` and Gaussian's ``GD3``; the
``-3c`` composite methods bring their own basis.
"""

import os
import shlex

from ase.io.orca import read_energy, read_orca_engrad, write_orca

from qrefine.engines import EngineUnavailable
from qrefine.engines.fileio import (ProgramCalculator, check_options, choose_method, find_program,
                                    read_text)

NAME = "orca"
METHODS = ("HF-D3", "HF", "HF-3c", "B3LYP-D3", "B3LYP", "PBE0-D3", "PBE-D3",
           "BP86", "BP86-D3", "r2SCAN-3c", "PBEh-3c", "B97-3c")
DEFAULT_BASIS = "6-31G"

# method -> ORCA simple-input keywords
_KEYWORDS = {
    "HF-D3": "HF D3ZERO", "HF": "HF", "HF-3c": "HF-3c",
    "B3LYP-D3": "B3LYP D3ZERO", "B3LYP": "B3LYP",
    "PBE0-D3": "PBE0 D3ZERO", "PBE-D3": "PBE D3ZERO",
    "BP86": "BP86", "BP86-D3": "BP86 D3ZERO",
    "r2SCAN-3c": "r2SCAN-3c", "PBEh-3c": "PBEh-3c", "B97-3c": "B97-3c",
}

INSTALL_HINT = ("install ORCA (https://orcaforum.kofo.mpg.de) and set "
                "$ASE_ORCA_COMMAND to the full path of the orca binary, or put "
                "its directory on PATH")

# Options make_calculator() accepts besides method/charge/multiplicity/workdir.
OPTIONS = ("basis", "nprocs", "memory_mb", "scf_maxiter", "scf_keywords",
           "keywords", "blocks", "command")

INPUT, OUTPUT, ERROR, ENGRAD = "orca.inp", "orca.out", "orca.err", "orca.engrad"


def _command(command=None):
    """The ORCA argv prefix (full path first) or None when not found."""
    command = command or os.environ.get("ASE_ORCA_COMMAND")
    if command:
        argv = shlex.split(command)
        if argv and not os.path.isabs(argv[0]):
            full = find_program(argv[0])
            if full is None:
                return None
            argv[0] = full
        return argv if argv and os.path.isfile(argv[0]) else None
    path = find_program("orca")
    return [path] if path and _has_orca_modules(path) else None


def _has_orca_modules(path):
    """Whether the ``orca`` at ``path`` sits among ORCA's ``orca_*`` module
    programs (GNOME's screen reader, also called orca, does not)."""
    directory = os.path.dirname(path)
    return any(name.startswith("orca_") for name in os.listdir(directory))


def availability():
    """(True, where) when ORCA is found, else (False, what to set)."""
    argv = _command()
    if argv is None:
        where = os.environ.get("ASE_ORCA_COMMAND")
        if where:
            return False, "ORCA not found: $ASE_ORCA_COMMAND='%s' is not a program" % where
        other = find_program("orca")
        if other:
            return False, ("ORCA not found: %s has no orca_* modules beside it (the "
                           "GNOME screen reader?); set $ASE_ORCA_COMMAND to the full "
                           "path of ORCA's orca binary" % other)
        return False, "ORCA not found: " + INSTALL_HINT
    return True, "ORCA: %s" % " ".join(argv)


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: ``SlowConv`` (damping) and 500 iterations; 2: ``VerySlowConv`` and 1000.
    """
    if attempt == 1:
        return {"scf_keywords": "SlowConv", "scf_maxiter": 500}
    if attempt == 2:
        return {"scf_keywords": "VerySlowConv", "scf_maxiter": 1000}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running ORCA ``method`` (default HF-D3/6-31G).

    Options: ``basis`` (default 6-31G; ignored by the -3c methods),
    ``nprocs``, ``memory_mb`` (%maxcore, per process), ``scf_maxiter``
    (default 200), ``scf_keywords`` (SCF aids, see :func:`safer_settings`),
    ``keywords`` (more simple-input words), ``blocks`` (more %-blocks, text),
    ``command`` (the orca binary, overrides the environment).
    """
    check_options(NAME, options, OPTIONS)
    command = options.pop("command", None)
    argv = _command(command)
    if argv is None:
        raise EngineUnavailable("ORCA not found: command '%s' is not a program" % command
                                if command else availability()[1])
    return OrcaCalculator(method=choose_method(NAME, METHODS, method), charge=charge,
                          multiplicity=multiplicity, workdir=workdir, argv=argv, **options)


class OrcaCalculator(ProgramCalculator):
    """ORCA ``EnGrad`` single points in ``workdir``."""

    program_name = "ORCA"
    stale_outputs = (OUTPUT, ERROR, ENGRAD)

    def __init__(self, method="HF-D3", charge=0, multiplicity=1, workdir=None, argv=None,
                 basis=DEFAULT_BASIS, nprocs=None, memory_mb=None, scf_maxiter=200,
                 scf_keywords="", keywords="", blocks=""):
        ProgramCalculator.__init__(self, method, charge, multiplicity, workdir)
        self.argv = list(argv or ["orca"])
        self.basis = basis
        self.nprocs = int(nprocs) if nprocs else None
        self.memory_mb = int(memory_mb) if memory_mb else None
        self.scf_maxiter = int(scf_maxiter) if scf_maxiter else None
        self.scf_keywords = " ".join(str(scf_keywords or "").split())
        self.keywords = " ".join(str(keywords or "").split())
        self.blocks = str(blocks or "").strip()

    def simple_input(self):
        """The words of the ``!`` line."""
        words = [_KEYWORDS[self.method]]
        if not self.method.endswith("-3c") and self.basis:
            words.append(self.basis)
        words += ["EnGrad", "TightSCF"]
        for extra in (self.scf_keywords, self.keywords):
            if extra:
                words.append(extra)
        return " ".join(words)

    def block_input(self):
        """The %-blocks, one per line."""
        lines = []
        if self.memory_mb:
            lines.append("%%maxcore %d" % self.memory_mb)
        if self.nprocs and self.nprocs > 1:
            lines.append("%%pal nprocs %d end" % self.nprocs)
        if self.scf_maxiter:
            lines.append("%%scf maxiter %d end" % self.scf_maxiter)
        if self.blocks:
            lines.append(self.blocks)
        return "\n".join(lines)

    def write_input(self, atoms):
        molecule = atoms.copy()
        molecule.pbc = False
        molecule.set_tags(0)   # ASE writes tag 71 as a ghost atom
        write_orca(self.path(INPUT), molecule,
                   {"orcasimpleinput": self.simple_input(),
                    "orcablocks": self.block_input(),
                    "charge": self.charge, "mult": self.multiplicity})

    def run_job(self, atoms):
        self.run_program(self.argv + [INPUT], stdout=OUTPUT, stderr=ERROR)

    def read_output(self, atoms):
        text = read_text(self.path(OUTPUT))
        if text is None:
            raise self.failure("no %s" % OUTPUT)
        if "ORCA TERMINATED NORMALLY" not in text:
            raise self.failure(_orca_error(text))
        energy = read_energy(text.splitlines())
        if energy is None:
            raise self.failure("no FINAL SINGLE POINT ENERGY in %s" % OUTPUT)
        if energy != energy:   # NaN: ASE's mark for "Wavefunction not fully converged"
            raise self.failure("SCF not converged (wavefunction not fully converged)")
        if not os.path.isfile(self.path(ENGRAD)):
            raise self.failure("no gradient file %s" % ENGRAD)
        forces = read_orca_engrad(self.path(ENGRAD))
        return energy, forces

    @property
    def last_input(self):
        return self.path(INPUT)


def _orca_error(text):
    """ORCA's reason for stopping, from its output text."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for marker in ("error termination", "not converged", "aborting"):
        for line in reversed(lines):
            if marker in line.lower():
                return line
    return "the output does not end with ORCA TERMINATED NORMALLY"
