"""Conformation-dependent library (CDL) restraints kept up to date.

cctbx builds the backbone's ideal bond angles (and some lengths) from the
(phi, psi) of each residue when it processes a model (the CDL, on by
default).  They are right for the geometry processed and go stale as the
model moves: phenix refreshes them every macro cycle.  Left at the start
model's values, a refinement minimises against the start's ideals, and a
validation measures against them: 5fn5_C refined with library restraints
reported angle RMSD 0.36 against its start's CDL, 0.59 against the CDL of
its own conformation (what any program reading the refined file reports).

mmtbx's update is not a function of the sites alone: it sets the C-N-H and
CA-N-H ideals from their current values (so that the three angles at N add
up to 360), and rounding accumulates from one update to the next.  A
refresh therefore first puts back the values the restraints were built
with, so that the same sites always give the same restraints, bit for bit
(a resumed refinement repeats an uninterrupted one).
"""

import weakref

from libtbx.utils import null_out
from mmtbx.conformation_dependent_library import update_restraints
from mmtbx.conformation_dependent_library.cdl_setup import setup_restraints


def uses_cdl(model):
    """Whether the model's restraints were built with the CDL."""
    params = model.get_current_pdb_interpretation_params()
    if params is None or not model.restraints_manager_available():
        return False
    return params.pdb_interpretation.restraints_library.cdl is True


# geometry -> the (angle, bond) ideals and weights it was built with
_BUILT = weakref.WeakKeyDictionary()


def _snapshot(geometry):
    angles = [(p.angle_ideal, p.weight) for p in geometry.angle_proxies]
    bonds = [[(j, p.distance_ideal, p.weight) for j, p in d.items()]
             for d in geometry.bond_params_table]
    return angles, bonds


def _restore(geometry, built):
    angles, bonds = built
    for p, (ideal, weight) in zip(geometry.angle_proxies, angles):
        p.angle_ideal, p.weight = ideal, weight
    table = geometry.bond_params_table
    for i, row in enumerate(bonds):
        d = table[i]
        for j, ideal, weight in row:
            p = d[j]
            p.distance_ideal, p.weight = ideal, weight


def refresh(geometry, hierarchy, sites_cart=None):
    """Set the CDL restraints of ``geometry`` for the (phi, psi) at
    ``sites_cart`` (default: the hierarchy's own coordinates), starting
    from the values it was built with.  With ``sites_cart`` the hierarchy's
    atoms are moved there: pass one the caller owns.  About 0.1 s on
    5fn5_C (3787 atoms)."""
    built = _BUILT.get(geometry)
    if built is None:
        built = _BUILT[geometry] = _snapshot(geometry)
    else:
        _restore(geometry, built)
    update_restraints(hierarchy, geometry, sites_cart=sites_cart,
                      cdl_proxies=setup_restraints(geometry), log=null_out())
