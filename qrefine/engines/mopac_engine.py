"""MOPAC engine: semi-empirical energies and gradients (PM7, PM6-D3H4, ...).

Runs the ``mopac`` program through the file-IO base of every program engine
(:class:`~qrefine.engines.fileio.ProgramCalculator`), one
``1SCF GRADIENTS`` job per call, in a work directory.  The program comes
from ``$ASE_MOPAC_COMMAND`` (an ASE-style command line, ``PREFIX`` is the job
name) or from ``mopac`` on ``PATH`` (Debian/Ubuntu: ``apt-get install mopac``,
MOPAC 22).

Energies are MOPAC's heat of formation (eV; a constant offset from the total
energy) and forces its analytic Cartesian gradients, both read at full
precision from the ``.aux`` file (the ``.out`` file prints them rounded).

Warm start: each job writes its final density (``DENOUT``) and the next job
of the same calculator on the same atoms starts from it (``OLDENS``) when no
atom moved more than ``warm_start_max_shift`` (0.01 A) since; after larger
moves MOPAC's own initial guess converges faster.
"""

import os
import re
import shlex
import shutil

from ase.calculators.calculator import all_changes
from ase.units import kcal, mol
import numpy as np

from qrefine.engines import EngineUnavailable
from qrefine.engines.electrons import check_spin
from qrefine.engines.fileio import ProgramCalculator, choose_method, read_text
from qrefine.errors import QRefineError

NAME = "mopac"
METHODS = ("PM7", "PM6", "PM6-D3H4", "PM6-D3H4X", "PM6-D3", "PM6-DH+", "PM6-DH2",
           "PM6-DH2X", "PM3", "AM1", "RM1", "MNDO", "MNDOD")

INSTALL_HINT = ("apt-get install mopac (MOPAC 22), or set $ASE_MOPAC_COMMAND "
                "to a MOPAC command line")

# SCF criterion: RELSCF multiplies MOPAC's default (1e-4 kcal/mol) criterion.
DEFAULT_RELSCF = 0.0001

_SPIN_KEYWORDS = {1: "SINGLET", 2: "DOUBLET", 3: "TRIPLET", 4: "QUARTET",
                  5: "QUINTET", 6: "SEXTET", 7: "SEPTET", 8: "OCTET", 9: "NONET"}

# Options make_calculator() accepts besides method/charge/multiplicity/workdir.
OPTIONS = ("keywords", "scf_keywords", "relscf", "itry", "warm_start",
           "warm_start_max_shift", "nthreads", "command", "label", "linear_scaling")

# MOZYME (linear_scaling): its localized-orbital SCF does not converge at the
# conventional default (RELSCF=0.0001 of MOZYME's 1e-3 kcal/mol: the 1us0
# helix fails), and converges at 0.1, where its gradient differs from the
# conventional PM7 one by 0.044 kcal/mol/A RMS (max 0.12; |g| RMS 34).
MOZYME_RELSCF = 0.1

# OLDENS pays only for small moves: on the 94-atom 1us0 helix (PM7) a restart
# from the previous density cuts MOPAC's time by a third when no atom moved
# more than 0.01 A, and costs 60 % more than a fresh guess beyond 0.02 A.
DEFAULT_WARM_START_MAX_SHIFT = 0.01

_JOB = "job"


def _command():
    """The MOPAC command line (a string with PREFIX) or None."""
    env = os.environ.get("ASE_MOPAC_COMMAND")
    if env:
        return env
    for name in ("mopac", "MOPAC2016.exe", "mopac2016"):
        path = shutil.which(name)
        if path:
            return "%s PREFIX.mop" % shlex.quote(path)
    return None


def availability():
    """(True, where) when a MOPAC program is found, else (False, what to install)."""
    cmd = _command()
    if cmd is None:
        return False, "MOPAC not found: " + INSTALL_HINT
    return True, "MOPAC command: %s" % cmd


def spin_keywords(numbers, charge, multiplicity):
    """MOPAC keywords for ``multiplicity``; a clear error when it cannot be."""
    multiplicity = int(multiplicity)
    if multiplicity not in _SPIN_KEYWORDS:
        raise QRefineError("MOPAC multiplicity must be 1..9, not %d" % multiplicity)
    # Core electrons are paired for every element, so the parity of
    # sum(Z) - charge is that of MOPAC's valence electrons.
    check_spin(numbers, charge, multiplicity, who="MOPAC")
    if multiplicity == 1:
        return []
    return [_SPIN_KEYWORDS[multiplicity], "UHF"]


def safer_settings(attempt):
    """Options for retry ``attempt`` after a failed SCF; None when none are left.

    1: level shift (SHIFT=) and Pulay's converger, more iterations;
    2: the Camp-King converger, starting afresh (no old density).
    """
    if attempt == 1:
        return {"scf_keywords": "SHIFT=20 PULAY", "itry": 5000}
    if attempt == 2:
        return {"scf_keywords": "CAMP", "itry": 5000, "warm_start": False}
    return None


def make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options):
    """An ASE calculator running MOPAC ``method`` (default PM7).

    Options: ``keywords`` (extra MOPAC keywords, a string), ``scf_keywords``
    (SCF aids, see :func:`safer_settings`), ``relscf`` (SCF criterion factor,
    default 1e-4), ``itry`` (maximum SCF iterations), ``warm_start``
    (default True), ``warm_start_max_shift`` (A, default 0.01), ``nthreads``,
    ``command`` (overrides the MOPAC command), ``linear_scaling`` (MOZYME,
    MOPAC's linear-scaling SCF over localized orbitals, for whole proteins;
    its SCF criterion then defaults to ``MOZYME_RELSCF``).
    Files go in ``workdir``; without one, a temporary directory removed when
    the calculator is freed (kept when a calculation failed).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise QRefineError("unknown MOPAC option(s) %s; known: %s"
                           % (", ".join(unknown), ", ".join(OPTIONS)))
    command = options.pop("command", None) or _command()
    if command is None:
        raise EngineUnavailable("MOPAC not found: " + INSTALL_HINT)
    if options.get("linear_scaling") and "relscf" not in options:
        options["relscf"] = MOZYME_RELSCF
    return MopacCalculator(method=choose_method(NAME, METHODS, method), charge=charge,
                           multiplicity=multiplicity, workdir=workdir,
                           command=command, **options)


class MopacCalculator(ProgramCalculator):
    """MOPAC through files (:class:`~qrefine.engines.fileio.ProgramCalculator`):
    qrefine's keywords, errors and warm start.

    ``n_calls`` counts MOPAC jobs, ``n_warm`` those started from the previous
    density, ``scf_cycles`` lists the SCF iterations of each successful job;
    ``last_input`` names the latest input file.  The command is a shell
    command line with ``PREFIX`` for the job name, as ASE's
    ``ASE_MOPAC_COMMAND``.
    """

    program_name = "MOPAC"

    def __init__(self, method="PM7", charge=0, multiplicity=1, workdir=None,
                 command=None, keywords="", scf_keywords="", relscf=DEFAULT_RELSCF,
                 itry=None, warm_start=True,
                 warm_start_max_shift=DEFAULT_WARM_START_MAX_SHIFT, nthreads=None,
                 label=_JOB, linear_scaling=False):
        ProgramCalculator.__init__(self, method, charge, multiplicity, workdir,
                                   env={"OMP_NUM_THREADS": str(int(nthreads))} if nthreads
                                   else None)
        self.mopac_command = command
        self.prefix = label
        self.relscf = relscf
        self.keywords = " ".join(str(keywords or "").split())
        self.scf_keywords = " ".join(str(scf_keywords or "").split())
        self.itry = itry
        self.warm_start = bool(warm_start)
        self.warm_start_max_shift = float(warm_start_max_shift)
        self.nthreads = nthreads
        self.linear_scaling = bool(linear_scaling)
        self.n_warm = 0
        self.scf_cycles = []
        self._density_for = None   # (numbers, positions) of the saved density

    @property
    def stale_outputs(self):
        return tuple(self.prefix + ext for ext in (".out", ".aux", ".arc"))

    @property
    def last_input(self):
        return self.path(self.prefix + ".mop")

    def failure_detail(self):
        return " (input %s.mop)" % self.prefix

    # -- the job -----------------------------------------------------------
    def keyword_line(self, atoms, warm):
        # PL prints one line per SCF iteration (counted in scf_cycles).
        words = [self.method, "1SCF", "GRADIENTS", "AUX(PRECISION=9)", "PL"]
        if self.linear_scaling:
            words.append("MOZYME")
        if self.charge:
            words.append("CHARGE=%d" % self.charge)
        words += spin_keywords(atoms.numbers, self.charge, self.multiplicity)
        if self.relscf:
            words.append("RELSCF=%g" % self.relscf)
        if self.itry:
            words.append("ITRY=%d" % int(self.itry))
        if self.nthreads:
            words.append("THREADS=%d" % int(self.nthreads))
        if self.warm_start:
            words.append("DENOUT")
            if warm:
                words.append("OLDENS")
        if self.scf_keywords:
            words.append(self.scf_keywords)
        if self.keywords:
            words.append(self.keywords)
        return " ".join(words)

    def write_input(self, atoms):
        numbers = tuple(int(z) for z in atoms.numbers)
        warm = self._can_restart(numbers, atoms.positions)
        self.n_warm += int(warm)
        self._density_for = None  # until this job has written its density
        lines = [self.keyword_line(atoms, warm), "qrefine %s job" % self.method, ""]
        for symbol, xyz in zip(atoms.get_chemical_symbols(), atoms.positions):
            lines.append(" %-2s %.10f 1 %.10f 1 %.10f 1" % (symbol, xyz[0], xyz[1], xyz[2]))
        self.write_file(self.prefix + ".mop", "\n".join(lines) + "\n")

    def run_job(self, atoms):
        command = self.mopac_command.replace("PREFIX", self.prefix)
        if "PREFIX" not in self.mopac_command:
            command += " %s.mop" % self.prefix
        self.run_program(command, stdout=self.prefix + ".stdout")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        ProgramCalculator.calculate(self, atoms, properties, system_changes)
        if self.warm_start:
            self._density_for = (tuple(int(z) for z in self.atoms.numbers),
                                 self.atoms.positions.copy())

    def _can_restart(self, numbers, positions):
        if not self.warm_start or self._density_for is None:
            return False
        old_numbers, old_positions = self._density_for
        if old_numbers != numbers or not os.path.isfile(self.path(self.prefix + ".den")):
            return False
        shift = np.max(np.linalg.norm(positions - old_positions, axis=1))
        return shift <= self.warm_start_max_shift

    # -- results -------------------------------------------------------------
    def read_output(self, atoms):
        """(heat of formation in eV, forces in eV/A) from the .aux file, after
        the .out file's reasons for a failed job."""
        text = read_text(self.path(self.prefix + ".out"))
        if text is None:
            raise self.failure("no output file %s.out" % self.prefix)
        problems = _errors_in(text)
        if problems:
            raise self.failure("; ".join(problems))
        aux = _read_aux(self.path(self.prefix + ".aux"))
        if "gradients" not in aux or aux["gradients"].size != 3 * len(atoms):
            raise self.failure("no gradients in the output")
        if "energy" not in aux:
            raise self.failure("no heat of formation in the output")
        self.scf_cycles.append(len(re.findall(r"^\s*ITERATION\s+\d+", text, re.M)))
        return aux["energy"], -aux["gradients"].reshape(len(atoms), 3) * kcal / mol


_AUX_NUMBER = r"[-+]?\d*\.?\d+(?:[DEde][-+]?\d+)?"


def _read_aux(path):
    """Heat of formation (eV) and gradients (kcal/mol/A) from a MOPAC .aux file."""
    if not os.path.isfile(path):
        return {}
    with open(path, errors="replace") as fd:
        text = fd.read()
    found = {}
    m = re.search(r"HEAT_OF_FORMATION:KCAL/MOL=(%s)" % _AUX_NUMBER, text)
    if m:
        found["energy"] = _aux_float(m.group(1)) * kcal / mol
    m = re.search(r"GRADIENTS:KCAL/MOL/ANGSTROM\[(\d+)\]=\s*", text)
    if m:
        n = int(m.group(1))
        values = re.findall(_AUX_NUMBER, text[m.end():])[:n]
        if len(values) == n:
            found["gradients"] = np.array([_aux_float(v) for v in values])
    return found


def _aux_float(s):
    return float(s.replace("D", "E").replace("d", "e"))


def _errors_in(text):
    """MOPAC's reasons for a failed or untrustworthy job, from its .out text."""
    problems = []
    if "UNABLE TO ACHIEVE SELF-CONSISTENCE" in text:
        problems.append("SCF did not converge (UNABLE TO ACHIEVE SELF-CONSISTENCE)")
    m = re.search(r"UNRECOGNIZED KEY-WORDS:\s*\(([^)]*)\)", text)
    if m:
        problems.append("unrecognized keywords: %s" % m.group(1).strip())
    m = re.search(r"SCF CALCULATIONS\s*=\s*(\d+)", text)
    if m and int(m.group(1)) == 0:
        problems.append("no SCF was completed")
    if "FINAL HEAT OF FORMATION" not in text and not problems:
        problems += _termination_messages(text) or ["the job stopped before the final energy"]
    return problems


def _termination_messages(text):
    """The lines of MOPAC's 'Error and normal termination messages' box."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Error and normal termination messages" in line:
            break
    else:
        return []
    messages = []
    for line in lines[i + 1:]:
        body = line.strip()
        if not body.startswith("*") or set(body) == {"*"}:
            break
        body = body.strip("* ").strip()
        if body and body != "JOB ENDED NORMALLY":
            messages.append(body)
    return messages
