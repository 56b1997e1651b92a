"""PySCF engine: HF-D3/6-31G forces against finite differences, a geometry
optimisation, warm start, failures and method names.  Needs pyscf and dftd3
(pip install pyscf dftd3); skipped without them, except under CI.

Small molecules keep it fast on two cores: N-methylacetamide (the capped
peptide bond, ACE-NME) for the checks, formamide for the optimisation.
"""

import io
import os

import numpy as np
import pytest

from common import force_errors
from ase import Atoms
from ase.io import read
from ase.optimize import BFGS

from qrefine.engines import EngineFailed, engine_module, pyscf_engine, resolve_method
from qrefine.errors import QRefineError

# ACE-NME cut from the 1us0 helix (residues 87-88), capped with H.
ACE_NME = """\
ATOM      1  CH3 ACE A   1       6.777  11.037   5.889  1.00  0.00           C
ATOM      2  H1  ACE A   1       6.151  10.181   6.142  1.00  0.00           H
ATOM      3  H2  ACE A   1       7.670  10.673   5.382  1.00  0.00           H
ATOM      4  H3  ACE A   1       6.228  11.701   5.222  1.00  0.00           H
ATOM      5  C   ACE A   1       7.208  11.727   7.197  1.00  0.00           C
ATOM      6  O   ACE A   1       7.552  11.016   8.143  1.00  0.00           O
ATOM      7  N   NME A   2       7.248  13.042   7.248  1.00  0.00           N
ATOM      8  H   NME A   2       6.872  13.660   6.529  1.00  0.00           H
ATOM      9  C   NME A   2       7.861  13.744   8.387  1.00  0.00           C
ATOM     10  H1  NME A   2       8.894  13.419   8.512  1.00  0.00           H
ATOM     11  H2  NME A   2       7.847  14.820   8.212  1.00  0.00           H
ATOM     12  H3  NME A   2       7.308  13.526   9.300  1.00  0.00           H
END
"""

# Formamide from the same peptide bond (CH3 groups replaced by H).
FORMAMIDE = """\
ATOM      1  C   FOR A   1       7.208  11.727   7.197  1.00  0.00           C
ATOM      2  O   FOR A   1       7.552  11.016   8.143  1.00  0.00           O
ATOM      3  H   FOR A   1       6.900  11.234   6.263  1.00  0.00           H
ATOM      4  N   FOR A   1       7.248  13.042   7.248  1.00  0.00           N
ATOM      5  H1  FOR A   1       6.872  13.660   6.529  1.00  0.00           H
ATOM      6  H2  FOR A   1       7.669  13.524   8.030  1.00  0.00           H
END
"""

# (atom, axis): methyl C, carbonyl C and O, amide N and H, NME C.
FD_COORDINATES = [(0, 1), (4, 1), (5, 2), (6, 0), (7, 2), (8, 0)]

# One thread: on a busy two-core machine OpenMP threads only wait for each other.
FAST = {"nthreads": 1}


@pytest.fixture(autouse=True)
def _pyscf_installed():
    ok, hint = pyscf_engine.availability()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(hint)
        pytest.skip(hint)


def molecule(text):
    return read(io.StringIO(text), format="proteindatabank")


def test_registry_and_method_names():
    assert engine_module("pyscf") is pyscf_engine
    assert resolve_method(pyscf_engine, None) == "HF-D3"
    canonical = pyscf_engine.canonical_method
    assert canonical(None) == "HF-D3"
    assert canonical("b3lyp-d3") == "B3LYP-D3"
    assert canonical("B3LYP-D3(BJ)") == "B3LYP-D3"
    assert canonical("pbe") == "PBE"
    assert canonical("hf") == "HF"
    with pytest.raises(QRefineError, match="not a libxc functional"):
        canonical("NOSUCHXC-D3")
    with pytest.raises(QRefineError, match="no D3"):
        canonical("M06-D3")        # M06 has no D3(BJ) parameters
    with pytest.raises(QRefineError, match="unknown PySCF option"):
        pyscf_engine.make_calculator(keywords="PRECISE")


@pytest.mark.slow
def test_hf_d3_forces_match_finite_differences():
    atoms = molecule(ACE_NME)
    calc = pyscf_engine.make_calculator("HF-D3", **FAST)
    errors = force_errors(atoms, calc, FD_COORDINATES)
    # Measured: 5.3e-5 eV/A.
    assert max(errors) <= 1e-3, errors
    assert calc.n_warm == calc.n_calls - 1 == 2 * len(FD_COORDINATES)


def test_dft_forces_match_finite_differences():
    water = Atoms("OH2", positions=[[0, 0, 0.1], [0.76, 0, -0.48], [-0.74, 0.05, -0.5]])
    water.calc = pyscf_engine.make_calculator("PBE-D3", **FAST)
    forces = water.get_forces()
    h = 1e-3
    for i, axis in [(0, 2), (1, 0), (2, 1)]:
        probe = water.copy()
        probe.calc = water.calc
        probe.positions[i, axis] += h
        e_plus = probe.get_potential_energy()
        probe.positions[i, axis] -= 2 * h
        e_minus = probe.get_potential_energy()
        # Measured: 2.6e-5 eV/A (with grid response).
        assert abs(-(e_plus - e_minus) / (2 * h) - forces[i, axis]) <= 1e-3


def test_dispersion_is_added():
    atoms = molecule(FORMAMIDE)
    atoms.calc = pyscf_engine.make_calculator("HF", **FAST)
    e_hf = atoms.get_potential_energy()
    atoms.calc = pyscf_engine.make_calculator("HF-D3", **FAST)
    e_hf_d3 = atoms.get_potential_energy()
    # D3(BJ) for HF lowers the energy by a few tenths of an eV in formamide.
    assert -1.0 < e_hf_d3 - e_hf < -0.01


def test_geometry_optimisation_converges():
    atoms = molecule(FORMAMIDE)
    calc = pyscf_engine.make_calculator("HF-D3", **FAST)
    atoms.calc = calc
    start = np.linalg.norm(atoms.get_forces(), axis=1).max()
    optimiser = BFGS(atoms, logfile=None)
    assert optimiser.run(fmax=0.05, steps=40)
    final = np.linalg.norm(atoms.get_forces(), axis=1).max()
    assert start > 1.0 and final < 0.05
    # HF/6-31G formamide: C=O about 1.21 A, C-N about 1.35 A.
    assert abs(atoms.get_distance(0, 1) - 1.21) < 0.03
    assert abs(atoms.get_distance(0, 3) - 1.35) < 0.03
    assert calc.n_warm == calc.n_calls - 1


def test_warm_start_same_energy_fewer_cycles():
    atoms = molecule(ACE_NME)
    moved = atoms.copy()
    moved.positions += 0.003 * np.sin(np.arange(moved.positions.size)).reshape(-1, 3)
    warm = pyscf_engine.make_calculator(**FAST)
    atoms.calc = warm
    atoms.get_potential_energy()
    moved.calc = warm
    e_warm = moved.get_potential_energy()
    cold = pyscf_engine.make_calculator(warm_start=False, **FAST)
    moved.calc = cold
    e_cold = moved.get_potential_energy()
    assert warm.n_warm == 1 and cold.n_warm == 0
    assert abs(e_warm - e_cold) <= 1e-6
    assert warm.scf_cycles[-1] < cold.scf_cycles[-1]


def test_unconverged_scf_fails(tmp_path):
    atoms = molecule(ACE_NME)
    atoms.calc = pyscf_engine.make_calculator("HF-D3", workdir=str(tmp_path),
                                              max_cycle=1, **FAST)
    with pytest.raises(EngineFailed) as err:
        atoms.get_potential_energy()
    message = str(err.value)
    assert "PySCF" in message and "HF-D3" in message and "did not converge" in message
    assert list(tmp_path.glob("failed_*.xyz"))


def test_safer_settings():
    attempts = []
    attempt = 1
    while pyscf_engine.safer_settings(attempt) is not None:
        attempts.append(pyscf_engine.safer_settings(attempt))
        attempt += 1
    assert len(attempts) == 3
    assert attempts[0]["level_shift"] > 0 and attempts[1]["damp"] > 0
    assert attempts[-1]["init_guess"] == "sap" and attempts[-1]["warm_start"] is False
    # The options are accepted, and a level-shifted SCF reaches the same energy.
    water = Atoms("OH2", positions=[[0, 0, 0.1], [0.76, 0, -0.48], [-0.74, 0.05, -0.5]])
    energies = []
    for options in [{}] + attempts:
        water.calc = pyscf_engine.make_calculator(**dict(FAST, **options))
        energies.append(water.get_potential_energy())
    assert np.ptp(energies) < 1e-6


def test_spin_and_charge():
    hydroxyl = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    hydroxyl.calc = pyscf_engine.make_calculator(multiplicity=2, **FAST)
    assert np.isfinite(hydroxyl.get_potential_energy())
    hydroxyl.calc = pyscf_engine.make_calculator(**FAST)
    with pytest.raises(QRefineError, match="9 electrons"):
        hydroxyl.get_potential_energy()
    hydroxyl.calc = pyscf_engine.make_calculator(charge=-1, **FAST)    # hydroxide
    assert np.isfinite(hydroxyl.get_potential_energy())


@pytest.mark.slow
def test_qr_refine_optimises_a_capped_dipeptide_at_hf_d3(tmp_path, test_data):
    """The acceptance run, qr.refine mode=opt engine=pyscf method=HF-D3
    basis=6-31G on ACE-GLY-NME, converges to a small gradient.

    For CI speed: density fitting (4x faster gradients here), and a start
    pre-relaxed with GFN2-xTB (seconds), which is still ~1 eV/A from the
    HF-D3 minimum (a gradient 0.5-2 eV/A).  Without qm.density_fit each
    gradient takes about 4x longer (14 s against 3.5 s here)."""
    import json
    from common import ACE_GLY_NME
    from qrefine.engines import xtb_engine
    from qrefine.scripts.refine import main
    start = read(io.StringIO(ACE_GLY_NME), format="proteindatabank")
    start.calc = xtb_engine.make_calculator(method="GFN2-xTB", solvent="none")
    BFGS(start, logfile=None).run(fmax=0.05, steps=200)
    model = tmp_path / "ace_gly_nme.pdb"
    lines = ACE_GLY_NME.splitlines()
    atoms = [l for l in lines if l.startswith(("ATOM", "HETATM"))]
    model.write_text("".join("%s%8.3f%8.3f%8.3f%s\n" % (l[:30], x, y, z, l[54:])
                             for l, (x, y, z) in zip(atoms, start.positions)) + "END\n")
    hf = dict(method="HF-D3", basis="6-31G", density_fit=True)
    assert main([str(model), "mode=opt", "restraints=qm", "engine=pyscf", "method=HF-D3",
                 "basis=6-31G", "qm.density_fit=true", "refine.macro_cycles=1",
                 "refine.max_iterations=80", "refine.convergence_tolerance=1e-9",
                 "refine.gradient_tolerance=1.0",
                 "output.prefix=opt", "output.dir=%s" % tmp_path]) == 0
    with open(tmp_path / "opt_summary.json") as f:
        summary = json.load(f)
    cycle = summary["macro_cycles"][0]
    assert cycle["converged"] and "gradient" in cycle["message"], cycle["message"]
    assert cycle["final_target"] < cycle["start_target"] - 1.0   # kcal/mol
    # The gradient at the start and at the written model, from fresh calculations.
    first = read(str(model), format="proteindatabank")
    first.calc = pyscf_engine.make_calculator(**hf)
    final = read(str(tmp_path / "opt_refined.pdb"), format="proteindatabank")
    final.calc = pyscf_engine.make_calculator(**hf)
    start_max = np.linalg.norm(first.get_forces(), axis=1).max()
    final_max = np.linalg.norm(final.get_forces(), axis=1).max()
    # Converged at 1 kcal/mol/A = 0.043 eV/A per atom; the written
    # coordinates are rounded to 1e-3 A, which adds up to a few 0.01 eV/A.
    assert start_max > 0.5
    assert final_max < 0.1, (start_max, final_max)
