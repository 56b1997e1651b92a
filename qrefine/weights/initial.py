"""Initial data weight from the ratio of gradient norms (seed 001 §2).

With T = w * T_data + T_restraints, choosing w = |grad T_restraints| /
|grad T_data| makes both terms pull equally hard at the start, whatever the
units of the two terms.
"""

import numpy as np


def gradient_norm_ratio(restraint_gradient, data_gradient):
    """|g_restraints| / |g_data| over all atoms.

    Raises ValueError when the data gradient vanishes (then no ratio exists).
    """
    g_r = float(np.linalg.norm(restraint_gradient))
    g_d = float(np.linalg.norm(data_gradient))
    if g_d == 0.0 or not np.isfinite(g_d):
        raise ValueError("data gradient norm is zero; cannot weight the data term")
    return g_r / g_d
