"""Helpers shared by the tests."""

import numpy as np

from qrefine.restraints.base import RestraintSource


def central_difference(func, x, indices, step=1e-4):
    """Numerical gradient of scalar ``func`` at the (atom, xyz) ``indices``."""
    out = []
    for i, k in indices:
        xp = x.copy(); xp[i, k] += step
        xm = x.copy(); xm[i, k] -= step
        out.append((func(xp) - func(xm)) / (2 * step))
    return np.array(out)

class ZeroSource(RestraintSource):
    """A restraint source of value 0 everywhere: what a wrapper adds, alone."""

    def value_and_gradient(self, sites_cart):
        return 0.0, np.zeros((len(sites_cart), 3))


def added_term_value(source, x):
    """The value of ``source``'s added term at ``x``, after checking that
    value and gradient are its inner source's plus the term's."""
    value, g = source.value_and_gradient(x)
    inner_value, inner_g = source.inner.value_and_gradient(x)
    term_value, term_g = source.term(x)
    assert abs(value - (inner_value + term_value)) <= 1e-9 * max(1.0, abs(value))
    assert np.allclose(g, inner_g + term_g)
    return term_value


def force_errors(atoms, calc, coordinates, h=1e-3):
    """|analytic force - central difference of the energy| (eV/A) for each
    (atom, axis) in ``coordinates``, all computed with the one ``calc``."""
    atoms.calc = calc
    forces = atoms.get_forces()
    assert forces.shape == (len(atoms), 3)
    errors = []
    for i, axis in coordinates:
        probe = atoms.copy()
        probe.calc = calc
        probe.positions[i, axis] += h
        e_plus = probe.get_potential_energy()
        probe.positions[i, axis] -= 2 * h
        e_minus = probe.get_potential_energy()
        errors.append(abs(-(e_plus - e_minus) / (2 * h) - forces[i, axis]))
    return errors



# ACE-GLY-NME cut from the 1us0 helix (residues 87-89), capped with H
# (monomer-library atom names, so cctbx can restrain it).
ACE_GLY_NME = """\
ATOM      1  CH3 ACE A   1       6.777  11.037   5.889  1.00  0.00           C
ATOM      2 HH31 ACE A   1       6.151  10.181   6.142  1.00  0.00           H
ATOM      3 HH32 ACE A   1       7.670  10.673   5.382  1.00  0.00           H
ATOM      4 HH33 ACE A   1       6.228  11.701   5.222  1.00  0.00           H
ATOM      5  C   ACE A   1       7.208  11.727   7.197  1.00  0.00           C
ATOM      6  O   ACE A   1       7.552  11.016   8.143  1.00  0.00           O
ATOM      7  N   GLY A   2       7.248  13.042   7.248  1.00  0.00           N
ATOM      8  CA  GLY A   2       7.861  13.744   8.387  1.00  0.00           C
ATOM      9  C   GLY A   2       7.082  13.437   9.673  1.00  0.00           C
ATOM     10  O   GLY A   2       7.692  13.174  10.712  1.00  0.00           O
ATOM     11  H   GLY A   2       6.872  13.660   6.529  1.00  0.00           H
ATOM     12  HA2 GLY A   2       8.894  13.419   8.512  1.00  0.00           H
ATOM     13  HA3 GLY A   2       7.847  14.820   8.212  1.00  0.00           H
ATOM     14  N   NME A   3       5.753  13.529   9.640  1.00  0.00           N
ATOM     15  HN  NME A   3       5.191  13.727   8.812  1.00  0.00           H
ATOM     16  CH3 NME A   3       5.000  13.335  10.878  1.00  0.00           C
ATOM     17 HH31 NME A   3       5.328  14.057  11.626  1.00  0.00           H
ATOM     18 HH32 NME A   3       3.937  13.484  10.690  1.00  0.00           H
ATOM     19 HH33 NME A   3       5.148  12.330  11.273  1.00  0.00           H
END
"""


def xtb_or_skip():
    """Skip a test when the xtb engine cannot run here."""
    import pytest
    from qrefine import engines
    from qrefine.errors import QRefineError
    try:
        ok, note = engines.engine_module("xtb").availability()
    except QRefineError as e:
        ok, note = False, str(e)
    if not ok:
        pytest.skip("xtb not available: %s" % note)


def refine_3j63(tmp_path, structures, test_data, prefix, *args):
    """qr.refine of 3j63_A into its map at 3.8 A with ``args``; returns the
    exit code and the summary (None when there is none)."""
    import json
    import os
    from qrefine.scripts.refine import main
    d = os.path.join(structures, "cryo_em", "3j63_A")
    code = main([os.path.join(d, "3j63_A_box_complete.pdb"), os.path.join(d, "3j63_A_box.ccp4"),
                 "resolution=3.8", "chem_data=%s" % os.path.join(test_data, "chem_data"),
                 "output.prefix=%s" % prefix, "output.dir=%s" % tmp_path] + list(args))
    summary = tmp_path / (prefix + "_summary.json")
    return code, json.loads(summary.read_text()) if summary.exists() else None
