"""The one electron-count and spin rule, for the model (qr.charges, the QM
set-up) and for every engine before it runs.

All-electron counts: effective core potentials and semi-empirical cores
remove electrons in pairs, so the parity, which is all the spin rule needs,
is the same with them.
"""

import numpy as np

from qrefine.errors import QRefineError


def electron_count(numbers, charge):
    """sum(Z) - charge, checked: an integer charge that leaves electrons."""
    if int(charge) != charge:
        raise QRefineError("total charge must be an integer, got %s" % charge)
    numbers = np.asarray(numbers, dtype=int)
    total = int(numbers.sum())
    n = total - int(charge)
    if n < 0:
        raise QRefineError("charge %+d removes more electrons than the %d atoms have (%d)"
                           % (charge, len(numbers), total))
    return n


def check_multiplicity(n_electrons, multiplicity=None, who=None):
    """The spin multiplicity to use for ``n_electrons``, checked.

    With ``multiplicity=None`` an even count gives 1 (closed shell) and an odd
    count is an error: an odd count almost always means a wrong charge or a
    missing hydrogen, so the user must say ``multiplicity=2`` to mean a radical.
    A given multiplicity must be a positive integer whose unpaired electrons
    (``multiplicity - 1``) have the parity of ``n_electrons`` and fit in it.
    ``who`` (an engine's name) starts the error line.
    """
    prefix = "%s: " % who if who else ""
    n = int(n_electrons)
    if multiplicity is None:
        if n % 2:
            raise QRefineError(
                "%sodd number of electrons (%d) and no multiplicity given: set multiplicity=2 "
                "for a radical, or fix the charge (one more or one fewer) or the "
                "missing hydrogen" % (prefix, n))
        return 1
    if int(multiplicity) != multiplicity or multiplicity < 1:
        raise QRefineError("%smultiplicity must be a positive integer, got %s"
                           % (prefix, multiplicity))
    m = int(multiplicity)
    if (m - 1) % 2 != n % 2:
        raise QRefineError(
            "%smultiplicity %d does not fit %d electrons: an %s electron count needs an %s "
            "multiplicity (e.g. %d); check the charge, the protonation or the multiplicity"
            % (prefix, m, n, "odd" if n % 2 else "even", "even" if n % 2 else "odd",
               2 if n % 2 else 1))
    if m - 1 > n:
        raise QRefineError("%smultiplicity %d needs %d unpaired electrons but there are only %d"
                           % (prefix, m, m - 1, n))
    return m


def check_spin(numbers, charge, multiplicity, who=None):
    """:func:`check_multiplicity` for atoms of atomic ``numbers`` at ``charge``."""
    return check_multiplicity(electron_count(numbers, charge), multiplicity, who)
