"""Hydrogen caps on covalent bonds cut at a fragment's edge.

A cut bond X-Y (X inside the fragment, Y outside) is closed by an H atom
on the X->Y line at the X-H bond length of X's element::

    h = x + d * (y - x) / |y - x|

``h`` is a function of the two atoms' positions, so a force on the cap can
be carried back to them with the chain rule.  With ``u = y - x``,
``L = |u|``, ``n = u / L`` and ``P = I - n n^T`` (projector perpendicular
to the bond)::

    dh/dy = (d / L) P          dh/dx = I - (d / L) P

and the gradient on the cap, ``g``, contributes ``(dh/dx)^T g`` to x and
``(dh/dy)^T g`` to y (both matrices are symmetric).
"""

import collections

import numpy as np

from qrefine.errors import QRefineError

# X-H bond lengths (A) used for caps, by element of the inside atom.
CAP_DISTANCES = {"C": 1.09, "N": 1.01, "S": 1.34, "O": 0.96, "P": 1.42, "SE": 1.46}


class Cap(collections.namedtuple("Cap", "inside outside distance")):
    """A cap H on the cut bond ``inside``-``outside`` (model atom indices),
    ``distance`` A from ``inside``."""


def cap_distance(element):
    """X-H bond length for a cap on an atom of ``element``."""
    try:
        return CAP_DISTANCES[element.strip().upper()]
    except KeyError:
        raise QRefineError("no H-cap bond length for element %s: a fragment boundary cuts a "
                           "covalent bond of this element; use a larger cluster or buffer"
                           % element)


def cap_positions(caps, sites_cart):
    """(n_caps, 3) cap H positions for ``caps`` at ``sites_cart``."""
    if not caps:
        return np.zeros((0, 3))
    sites = np.asarray(sites_cart, dtype=float)
    inside = np.array([c.inside for c in caps])
    outside = np.array([c.outside for c in caps])
    d = np.array([c.distance for c in caps])
    u = sites[outside] - sites[inside]
    return sites[inside] + d[:, None] * u / np.linalg.norm(u, axis=1)[:, None]


def cap_jacobians(x, y, d):
    """(dh/dx, dh/dy), each (3, 3), for a cap ``d`` A from ``x`` toward ``y``."""
    u = np.asarray(y, float) - np.asarray(x, float)
    length = np.linalg.norm(u)
    n = u / length
    p = np.eye(3) - np.outer(n, n)
    dy = (d / length) * p
    return np.eye(3) - dy, dy


def project_cap_gradient(gradient_h, x, y, d):
    """The cap gradient ``gradient_h`` carried onto (x, y): two 3-vectors."""
    jx, jy = cap_jacobians(x, y, d)
    g = np.asarray(gradient_h, float)
    return jx.T @ g, jy.T @ g
