"""The engine seam as a contract, run over every registered engine.

Every engine module offers the same names (qrefine/engines/__init__.py);
every one that can run here gives an ASE calculator whose forces are minus
the gradient of its energy and which refuses an impossible spin.  Engines
that cannot run here (ORCA, TeraChem, Turbomole, Gaussian) are held to the
module part only; their file boundary is tested in test_engines_fileio.py.
"""

import inspect

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator

from qrefine.engines import REGISTRY, engine_module, resolve_method
from qrefine.errors import QRefineError

ENGINES = list(REGISTRY)
# A cheap method for the finite-difference check, per engine that runs here.
CHEAP = {"xtb": "GFN2-xTB", "mopac": "PM7", "pyscf": "HF"}


def _water():
    return Atoms("OH2", positions=[[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.78, -0.46]])


@pytest.mark.parametrize("name", ENGINES)
def test_module_offers_the_seam(name):
    module = engine_module(name)
    assert module.NAME == name
    assert module.METHODS and resolve_method(module, None) == module.METHODS[0]
    assert resolve_method(module, module.METHODS[0].lower()) == module.METHODS[0]
    with pytest.raises(QRefineError, match="engine %s has no method" % name):
        resolve_method(module, "no-such-method")
    ok, note = module.availability()
    assert isinstance(ok, bool) and isinstance(note, str) and note
    parameters = inspect.signature(module.make_calculator).parameters
    assert list(parameters)[:4] == ["method", "charge", "multiplicity", "workdir"]
    # Retries: each attempt's settings are a dict, and the ladder ends.
    attempts = [module.safer_settings(i) for i in range(1, 10)]
    assert all(a is None or isinstance(a, dict) for a in attempts)
    assert attempts[-1] is None


def _runnable(name):
    ok, why = engine_module(name).availability()
    if not ok:
        pytest.skip("%s cannot run here: %s" % (name, why))
    return engine_module(name)


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_calculator_forces_are_minus_the_energy_gradient(name, tmp_path):
    module = _runnable(name)
    calc = module.make_calculator(CHEAP[name], charge=0, multiplicity=1,
                                  workdir=str(tmp_path / "run"))
    assert isinstance(calc, Calculator)
    assert {"energy", "forces"} <= set(calc.implemented_properties)
    atoms = _water()
    atoms.calc = calc
    forces = atoms.get_forces()
    assert forces.shape == (3, 3) and np.all(np.isfinite(forces))
    h = 1e-3  # A
    for atom, axis in ((1, 1), (2, 2)):
        energies = []
        for step in (h, -h):
            moved = atoms.copy()
            moved.positions[atom, axis] += step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert abs(numeric - forces[atom, axis]) < 2e-3 + 2e-3 * abs(numeric), (
            name, atom, axis, numeric, forces[atom, axis])


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_calculator_refuses_an_impossible_spin(name, tmp_path):
    """Water has 10 electrons: a doublet cannot be; the engine says so in one
    line before computing anything."""
    module = _runnable(name)
    atoms = _water()
    with pytest.raises(QRefineError) as e:
        atoms.calc = module.make_calculator(CHEAP[name], charge=0, multiplicity=2,
                                            workdir=str(tmp_path / "spin"))
        atoms.get_potential_energy()
    assert "\n" not in str(e.value) and "multiplicity" in str(e.value).lower()
