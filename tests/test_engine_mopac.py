"""MOPAC engine: analytic forces against finite differences, warm start,
failures and settings.  Needs the ``mopac`` program (apt-get install mopac);
skipped without it, except under CI where it must be installed."""

import io
import os
import shutil

import numpy as np
import pytest

from common import ACE_GLY_NME, force_errors
from ase.io import read

from qrefine.engines import EngineFailed, engine_module, mopac_engine, resolve_method
from qrefine.errors import QRefineError



# (atom, axis) pairs checked by finite differences: methyl C and H, both
# carbonyls, amide N, CA, methyl H of NME.
FD_COORDINATES = [(0, 1), (1, 0), (4, 1), (6, 1), (8, 0), (9, 2), (13, 0), (15, 2)]


@pytest.fixture(autouse=True)
def _mopac_installed():
    ok, hint = mopac_engine.availability()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(hint)
        pytest.skip(hint)


def peptide():
    return read(io.StringIO(ACE_GLY_NME), format="proteindatabank")


def displaced(atoms, max_shift, seed=3):
    """A copy with every atom moved randomly, the largest move ``max_shift`` A."""
    v = np.random.default_rng(seed).normal(size=atoms.positions.shape)
    v *= max_shift / np.max(np.linalg.norm(v, axis=1))
    moved = atoms.copy()
    moved.positions += v
    return moved


def test_registry_and_availability():
    assert engine_module("mopac") is mopac_engine
    assert resolve_method(mopac_engine, None) == "PM7"
    assert resolve_method(mopac_engine, "pm6-d3h4") == "PM6-D3H4"
    ok, note = mopac_engine.availability()
    assert ok and "mopac" in note.lower()


def test_missing_program_hint(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ASE_MOPAC_COMMAND", raising=False)
    ok, hint = mopac_engine.availability()
    assert not ok and "apt-get install mopac" in hint


@pytest.mark.parametrize("method", ["PM7", "PM6-D3H4"])
def test_forces_match_finite_differences(method, tmp_path):
    atoms = peptide()
    calc = mopac_engine.make_calculator(method, workdir=str(tmp_path))
    errors = force_errors(atoms, calc, FD_COORDINATES)
    # Measured: PM7 3.4e-4, PM6-D3H4 7.7e-4 eV/A (MOPAC's own gradient accuracy).
    assert max(errors) <= 1e-3, errors
    # The probes moved atoms by 1e-3 A: all but the first job restarted.
    assert calc.n_calls == 1 + 2 * len(FD_COORDINATES)
    assert calc.n_warm == calc.n_calls - 1


def test_keywords_charge_and_multiplicity(tmp_path):
    atoms = peptide()
    calc = mopac_engine.make_calculator("pm6", charge=1, multiplicity=2,
                                        workdir=str(tmp_path), nthreads=1)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    with open(calc.last_input) as fd:
        keywords = fd.readline().split()
    for word in ("PM6", "1SCF", "GRADIENTS", "CHARGE=1", "DOUBLET", "UHF", "THREADS=1"):
        assert word in keywords
    # 79 electrons cannot be a singlet.
    calc = mopac_engine.make_calculator(charge=1, workdir=str(tmp_path))
    atoms.calc = calc
    with pytest.raises(QRefineError, match="multiplicity 1"):
        atoms.get_potential_energy()


def test_warm_start_same_energy_fewer_cycles():
    atoms = peptide()
    moved = displaced(atoms, 0.005)
    energies, cycles = {}, {}
    for warm in (False, True):
        calc = mopac_engine.make_calculator(warm_start=warm)
        atoms.calc = calc
        atoms.get_forces()
        moved.calc = calc
        energies[warm] = moved.get_potential_energy()
        cycles[warm] = calc.scf_cycles[-1]
        assert calc.n_warm == int(warm)
    # Measured: 2e-11 eV apart, 9 SCF iterations instead of 15.
    assert abs(energies[True] - energies[False]) <= 1e-6
    assert cycles[True] < cycles[False]


def test_no_restart_after_large_moves():
    atoms = peptide()
    calc = mopac_engine.make_calculator()
    atoms.calc = calc
    atoms.get_potential_energy()
    far = displaced(atoms, 0.05)
    far.calc = calc
    far.get_potential_energy()
    assert calc.n_calls == 2 and calc.n_warm == 0


def test_bad_keyword_fails_and_keeps_input(tmp_path):
    atoms = peptide()
    atoms.calc = mopac_engine.make_calculator("PM7", keywords="NOSUCHKEYWORD",
                                              workdir=str(tmp_path))
    with pytest.raises(EngineFailed) as err:
        atoms.get_forces()
    message = str(err.value)
    assert "MOPAC" in message and "PM7" in message and str(tmp_path) in message
    assert "NOSUCHKEYWORD" in message
    assert (tmp_path / "job.mop").is_file()


def test_unconverged_scf_fails():
    atoms = peptide()
    calc = mopac_engine.make_calculator("PM7", itry=3)
    atoms.calc = calc
    with pytest.raises(EngineFailed, match="SCF did not converge"):
        atoms.get_potential_energy()
    # A failed job's temporary directory is kept for inspection.
    workdir = calc.workdir
    atoms.calc = None
    del calc
    assert os.path.isfile(os.path.join(workdir, "job.mop"))
    shutil.rmtree(workdir)


def test_temporary_workdir_is_removed():
    atoms = peptide()
    atoms.calc = mopac_engine.make_calculator()
    atoms.get_potential_energy()
    workdir = atoms.calc.workdir
    assert os.path.isfile(os.path.join(workdir, "job.out"))
    atoms.calc = None
    assert not os.path.exists(workdir)


def test_safer_settings_run():
    atoms = peptide()
    reference = None
    attempt = 1
    while mopac_engine.safer_settings(attempt) is not None:
        options = mopac_engine.safer_settings(attempt)
        atoms.calc = mopac_engine.make_calculator(**options)
        energy = atoms.get_potential_energy()
        reference = energy if reference is None else reference
        assert abs(energy - reference) < 1e-3
        attempt += 1
    assert attempt == 3


def test_unknown_method_and_option():
    with pytest.raises(QRefineError, match="no method"):
        mopac_engine.make_calculator("PM9")
    with pytest.raises(QRefineError, match="unknown MOPAC option"):
        mopac_engine.make_calculator(basis="6-31G")


def test_mozyme_gradient_matches_conventional_pm7(helix_model, tmp_path):
    """qm.linear_scaling (MOZYME) on the 94-atom 1us0 helix: the same PM7
    gradient to 0.2 kcal/mol/A (measured 0.044 RMS, 0.12 max, |g| RMS 34)."""
    from ase import Atoms
    from qrefine.model.elements import symbol_of
    atoms_h = helix_model.get_hierarchy().atoms()
    atoms = Atoms([symbol_of(a) for a in atoms_h], positions=np.array(atoms_h.extract_xyz()))
    grads = {}
    for name, options in (("conventional", {}), ("mozyme", {"linear_scaling": True})):
        calc = mopac_engine.make_calculator("PM7", workdir=str(tmp_path / name), **options)
        atoms.calc = calc
        grads[name] = -atoms.get_forces() * 23.060548
        words = open(calc.last_input).readline().split()
        assert ("MOZYME" in words) == bool(options)
        assert ("RELSCF=0.1" in words) == bool(options)
    d = np.linalg.norm(grads["mozyme"] - grads["conventional"], axis=1)
    assert np.sqrt((d ** 2).mean()) < 0.1 and d.max() < 0.3
    assert np.sqrt((np.linalg.norm(grads["conventional"], axis=1) ** 2).mean()) > 10


def test_linear_scaling_is_for_mopac_only():
    from qrefine.config import phil as params
    from qrefine.config.checks import engine_options
    on, _ = params.parse(["qm.linear_scaling=true", "mode=opt"])
    assert engine_options(engine_module("mopac"), on.qm) == {"linear_scaling": True}
    with pytest.raises(QRefineError, match="engine xtb does not use qm.linear_scaling"):
        engine_options(engine_module("xtb"), on.qm)
    off, _ = params.parse(["qm.linear_scaling=false", "mode=opt"])
    assert engine_options(engine_module("xtb"), off.qm) == {"solvent": "water"}
