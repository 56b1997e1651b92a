"""Helpers shared by the tests."""

import numpy as np


def central_difference(func, x, indices, step=1e-4):
    """Numerical gradient of scalar ``func`` at the (atom, xyz) ``indices``."""
    out = []
    for i, k in indices:
        xp = x.copy(); xp[i, k] += step
        xm = x.copy(); xm[i, k] -= step
        out.append((func(xp) - func(xm)) / (2 * step))
    return np.array(out)
