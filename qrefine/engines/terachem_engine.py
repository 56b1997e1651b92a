"""TeraChem engine: GPU Hartree-Fock / DFT energies and analytic gradients.

ASE has no TeraChem calculator; this one runs one ``run gradient`` job per
geometry in a work directory:

* ``tc.xyz``: the geometry, plain xyz (count line, comment line, then
  ``symbol x y z`` in Angstrom);
* ``tc.in``: the TeraChem start file, one ``keyword value`` per line::

      run gradient
      coordinates tc.xyz
      units angstrom
      charge 0
      spinmult 1
      method rhf             (uhf, ub3lyp, ... when spinmult > 1)
      basis 6-31g
      dispersion d3          (no for methods without -D3)
      scrdir scr
      maxit 100
      gpus 1                 (with gpus=)
      end

* run ``terachem tc.in > tc.out 2> tc.err``;
* parse ``tc.out`` (TeraChem's standard output):

  - energy: the last line ``FINAL ENERGY: <E> a.u.`` (Hartree);
  - gradient: the last block that follows the line
    ``Gradient units are Hartree/Bohr``: a dashed line, the header
    ``dE/dX  dE/dY  dE/dZ``, then one ``gx gy gz`` row per atom (input order),
    closed by a dashed line;
  - a line with ``DIE called`` (TeraChem's fatal-error report) or a
    non-zero exit status is a failure.

  This is the stdout layout of TeraChem 1.5-1.9 "SINGLE POINT GRADIENT"
  jobs, the one read by QCEngine's and qcparse's TeraChem harnesses; the
  ``scr/grad.xyz`` file is not read.

The program: ``$TeraChem`` (the installation directory; runs
``$TeraChem/bin/terachem`` with ``$TeraChem/lib`` on ``LD_LIBRARY_PATH``), else
``terachem`` on PATH.

Methods: the Q|R cryo-EM paper's level HF-D3/6-31G is the default; ``-D3``
is TeraChem's ``dispersion d3`` (Grimme's D3 as TeraChem implements it).
"""

import os
import re

import numpy as np

from qrefine.engines import EngineUnavailable
from qrefine.engines.fileio import (ProgramCalculator, check_options, choose_method,
                                    energy_from_hartree, find_program, forces_from_gradient,
                                    read_text)

NAME = "terachem"
METHODS = ("HF-D3", "HF", "B3LYP-D3", "B3LYP", "PBE0-D3", "PBE-D3", "BLYP-D3")
DEFAULT_BASIS = "6-31G"

# method -> (TeraChem closed-shell method, open-shell method, dispersion d3?)
_METHOD = {
    "HF-D3": ("rhf", "uhf", True), "HF": ("rhf", "uhf", False),
    "B3LYP-D3": ("b3lyp", "ub3lyp", True), "B3LYP": ("b3lyp", "ub3lyp", False),
    "PBE0-D3": ("pbe0", "upbe0", True), "PBE-D3": ("pbe", "upbe", True),
    "BLYP-D3": ("blyp", "ublyp", True),
}

INSTALL_HINT = ("set $TeraChem to the TeraChem installation directory "
                "(the one with bin/terachem), or put terachem on PATH")

OPTIONS = ("basis", "gpus", "scf_maxiter", "scf_keywords", "keywords", "command")

INPUT, XYZ, OUTPUT, ERROR, SCRATCH = "tc.in", "tc.xyz", "tc.out", "tc.err", "scr"


def _program(command=None):
    """(path of terachem, installation root) or (None, None)."""
    if command:
        path = find_program(command)
    else:
        root = os.environ.get("TeraChem")
        if root:
            path = find_program("terachem", [os.path.join(root, "bin")])
            return (path, os.path.abspath(root)) if path else (None, None)
        path = find_program("terachem")
    if path is None:
        return None, None
    return path, os.path.dirname(os.path.dirname(path))


def availability():
    """(True, where) when TeraChem is found, else (False, what to set)."""
    path, _ = _program()
    if path is None:
        root = os.environ.get("TeraChem")
        if root:
            return False, ("TeraChem not found: $TeraChem=%s has no bin/terachem; %s"
                           % (root, INSTALL_HINT))
        return False, "TeraChem not found: " + INSTALL_HINT
    return True, "TeraChem: %s" % path


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: ADIIS+DIIS (``scf diis+a``) and 300 iterations; 2: with level shifts
    (0.3/0.1 Hartree) and 1000 iterations.
    """
    if attempt == 1:
        return {"scf_keywords": {"scf": "diis+a"}, "scf_maxiter": 300}
    if attempt == 2:
        return {"scf_keywords": {"scf": "diis+a", "levelshift": "yes",
                                 "levelshiftvala": "0.3", "levelshiftvalb": "0.1"},
                "scf_maxiter": 1000}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running TeraChem ``method`` (default HF-D3/6-31G).

    Options: ``basis`` (default 6-31G), ``gpus`` (number of GPUs),
    ``scf_maxiter`` (TeraChem ``maxit``, default 100), ``scf_keywords``
    (dict of SCF aids, see :func:`safer_settings`), ``keywords`` (dict of
    more TeraChem keywords), ``command`` (the terachem program).
    """
    check_options(NAME, options, OPTIONS)
    command = options.pop("command", None)
    path, root = _program(command)
    if path is None:
        raise EngineUnavailable("TeraChem not found: command '%s' is not a program"
                                % command if command else availability()[1])
    return TeraChemCalculator(method=choose_method(NAME, METHODS, method),
                              charge=charge, multiplicity=multiplicity,
                              workdir=workdir, program=path, root=root, **options)


class TeraChemCalculator(ProgramCalculator):
    """TeraChem ``run gradient`` single points in ``workdir``."""

    program_name = "TeraChem"
    stale_outputs = (OUTPUT, ERROR)

    def __init__(self, method="HF-D3", charge=0, multiplicity=1, workdir=None,
                 program="terachem", root=None, basis=DEFAULT_BASIS, gpus=None,
                 scf_maxiter=100, scf_keywords=None, keywords=None):
        ProgramCalculator.__init__(self, method, charge, multiplicity, workdir)
        self.program = program
        self.basis = basis
        self.gpus = int(gpus) if gpus else None
        self.scf_maxiter = int(scf_maxiter) if scf_maxiter else None
        self.scf_keywords = dict(scf_keywords or {})
        self.keywords = dict(keywords or {})
        if root:
            # TeraChem finds its basis sets through $TeraChem, its libraries
            # through LD_LIBRARY_PATH.
            self.env["TeraChem"] = root
            lib = os.path.join(root, "lib")
            old = os.environ.get("LD_LIBRARY_PATH", "")
            self.env["LD_LIBRARY_PATH"] = lib + (os.pathsep + old if old else "")

    def start_file(self):
        """The (keyword, value) lines of ``tc.in``."""
        closed, opened, d3 = _METHOD[self.method]
        lines = [("run", "gradient"), ("coordinates", XYZ), ("units", "angstrom"),
                 ("charge", str(self.charge)), ("spinmult", str(self.multiplicity)),
                 ("method", closed if self.multiplicity == 1 else opened),
                 ("basis", self.basis.lower()), ("dispersion", "d3" if d3 else "no"),
                 ("scrdir", SCRATCH)]
        if self.scf_maxiter:
            lines.append(("maxit", str(self.scf_maxiter)))
        if self.gpus:
            lines.append(("gpus", str(self.gpus)))
        fixed = {k for k, _ in lines}
        for extra in (self.scf_keywords, self.keywords):
            for key, value in extra.items():
                if key in fixed:
                    lines = [(k, v) for k, v in lines if k != key]
                lines.append((str(key), str(value)))
        return lines

    def write_input(self, atoms):
        xyz = ["%d" % len(atoms), "qrefine TeraChem job (Angstrom)"]
        for symbol, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions):
            xyz.append("%-2s %20.12f %20.12f %20.12f" % (symbol, x, y, z))
        self.write_file(XYZ, "\n".join(xyz) + "\n")
        lines = ["%-12s %s" % kv for kv in self.start_file()]
        self.write_file(INPUT, "\n".join(lines + ["end"]) + "\n")

    def run_job(self, atoms):
        self.run_program([self.program, INPUT], stdout=OUTPUT, stderr=ERROR)

    def read_output(self, atoms):
        text = read_text(self.path(OUTPUT))
        if text is None:
            raise self.failure("no %s" % OUTPUT)
        for line in text.splitlines():
            if "DIE called" in line:
                raise self.failure(line.strip())
        try:
            energy, gradient = parse_output(text, len(atoms))
        except ValueError as e:
            raise self.failure("%s (in %s)" % (e, OUTPUT))
        return energy_from_hartree(energy), forces_from_gradient(gradient)

    @property
    def last_input(self):
        return self.path(INPUT)


_FINAL_ENERGY = re.compile(r"FINAL ENERGY:\s*(\S+)\s*a\.u\.")


def parse_output(text, natoms):
    """(energy in Hartree, gradient (natoms, 3) in Hartree/Bohr) from TeraChem stdout.

    ValueError saying what is missing when the text has no energy or gradient.
    """
    energies = _FINAL_ENERGY.findall(text)
    if not energies:
        raise ValueError("no 'FINAL ENERGY: ... a.u.' line")
    gradient = _last_gradient_block(text.splitlines())
    if gradient is None:
        raise ValueError("no 'Gradient units are Hartree/Bohr' block")
    if len(gradient) != natoms:
        raise ValueError("gradient block has %d rows for %d atoms" % (len(gradient), natoms))
    return float(energies[-1]), np.array(gradient)


def _last_gradient_block(lines):
    """Rows of the last gradient block: the line 'Gradient units are
    Hartree/Bohr', a dashed line, the 'dE/dX dE/dY dE/dZ' header, then rows of
    three numbers up to the closing dashed line."""
    block = None
    for i, line in enumerate(lines):
        if "Gradient units are Hartree/Bohr" not in line:
            continue
        header = [j for j in range(i + 1, min(i + 4, len(lines))) if "dE/dX" in lines[j]]
        if not header:
            continue
        rows = []
        for row in lines[header[0] + 1:]:
            fields = row.split()
            if len(fields) != 3 or row.strip().startswith("--"):
                break
            try:
                rows.append([float(f) for f in fields])
            except ValueError:
                break
        block = rows
    return block
