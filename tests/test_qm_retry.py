"""A failing QM calculation (restraints/qm.py): retried with the engine's
safer settings, each retry logged; when every retry fails, one line naming
what failed, and its input kept.  Real xtb: an SCF allowed one iteration
fails for real."""

import logging
import os

import numpy as np
import pytest

from qrefine.errors import QRefineError

from common import xtb_or_skip
from test_engines_fileio import water_dimer


def _restraints(tmp_path, **options):
    from qrefine.restraints.qm import QMRestraints
    atoms = water_dimer()
    return atoms, QMRestraints(atoms.get_chemical_symbols(), "xtb", "GFN2-xTB",
                               options=options, failed_dir=str(tmp_path / "r_failed"),
                               label="fragment A_1-2")


def test_a_failed_scf_is_retried_with_safer_settings(tmp_path, caplog):
    xtb_or_skip()
    atoms, qm = _restraints(tmp_path, max_iterations=1)
    with caplog.at_level(logging.WARNING, logger="qrefine"):
        value, grad = qm.value_and_gradient(atoms.positions)
    assert qm.retries == 1 and qm.calls == 2
    assert caplog.messages == qm.retry_notes
    assert qm.retry_notes[0].startswith("fragment A_1-2: xtb GFN2-xTB failed (")
    assert qm.retry_notes[0].endswith(
        "retry 1 with electronic_temperature=1000.0, max_iterations=500")
    # the retry's gradient is the converged one (at 1000 K: a closed shell
    # with a large gap, so the same to well below restraint accuracy)
    _, plain = _restraints(tmp_path)
    _, reference = plain.value_and_gradient(atoms.positions)
    assert np.abs(grad - reference).max() < 1e-4
    assert not os.path.exists(tmp_path / "r_failed")


def test_when_every_retry_fails_the_input_is_kept(tmp_path, monkeypatch):
    xtb_or_skip()
    from qrefine.engines import xtb_engine
    ladder = {1: {"max_iterations": 1, "electronic_temperature": 1000.0},
              2: {"max_iterations": 1, "warm_start": False}}
    monkeypatch.setattr(xtb_engine, "safer_settings", ladder.get)
    atoms, qm = _restraints(tmp_path, max_iterations=1)
    with pytest.raises(QRefineError) as error:
        qm.value_and_gradient(atoms.positions)
    line = str(error.value)
    assert "\n" not in line
    assert line.startswith("xtb GFN2-xTB calculation of the fragment A_1-2 failed after 2 "
                           "retries (")
    assert line.endswith("its input is kept in %s" % (tmp_path / "r_failed"))
    assert qm.retries == 2 and qm.calls == 3
    kept = sorted(os.listdir(tmp_path / "r_failed"))
    assert "failed_geometry.xyz" in kept and "failure.txt" in kept
    from ase.io import read
    assert np.allclose(read(str(tmp_path / "r_failed" / "failed_geometry.xyz")).positions,
                       atoms.positions)
    text = open(tmp_path / "r_failed" / "failure.txt").read()
    assert "GFN2-xTB" in text and "fragment A_1-2" in text
