"""Shared fixtures.  Test data stays in ../shared/data (env QREFINE_TEST_DATA).

Under CI (CI=true) missing data is an error; elsewhere the tests that need it
are skipped.
"""

import os

import qrefine  # noqa: F401  (loads cctbx before scipy; see qrefine/__init__.py)
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data")


def _data_root():
    return os.path.abspath(os.environ.get("QREFINE_TEST_DATA", DEFAULT_DATA))


@pytest.fixture(scope="session")
def test_data():
    """Root of the shared test data, with chem_data registered for mmtbx."""
    root = _data_root()
    if not os.path.isdir(os.path.join(root, "structures")):
        msg = "test data not found at %s (set QREFINE_TEST_DATA)" % root
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from qrefine.model import chem_data
    chem_data.activate(os.path.join(root, "chem_data"))
    return root


@pytest.fixture(scope="session")
def structures(test_data):
    return os.path.join(test_data, "structures")


@pytest.fixture(scope="session")
def helix_model(structures):
    """The 1us0 helix with H (a87_99_h.pdb, 94 atoms), read without restraints."""
    from qrefine.model.io import read_model
    return read_model(os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb"),
                      make_restraints=False)


@pytest.fixture(scope="module")
def start_3j63(structures):
    """The 3j63_A start model (1436 atoms, 89 residues), restraints built."""
    from qrefine.model import io as model_io
    path = os.path.join(structures, "cryo_em", "3j63_A", "3j63_A_box_complete.pdb")
    return model_io.read_model(path)


@pytest.fixture(scope="module")
def map_3j63(structures):
    """(3j63_A with restraints, its map's RealSpaceTarget at 3.8 A); a module
    may move the model's sites only if it puts them back."""
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.model.io import read_model
    d = os.path.join(structures, "cryo_em", "3j63_A")
    model = read_model(os.path.join(d, "3j63_A_box_complete.pdb"))
    return model, RealSpaceTarget(model, read_map(os.path.join(d, "3j63_A_box.ccp4")), 3.8)


# --- slow tests run last ------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes over about 20 s on 2 cores; run after the fast tests "
                   "(deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    """Fast tests first, slow ones last, each group in file order: a failure
    in the quick part of the suite shows within minutes, also on a loaded
    machine.  (sort is stable.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
