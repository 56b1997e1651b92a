"""Conformation-dependent library (CDL) restraints kept up to date.

cctbx builds the backbone's ideal bond angles (and some lengths) from the
(phi, psi) of each residue when it processes a model (the CDL, on by
default).  They are right for the geometry processed and go stale as the
model moves: phenix refreshes them every macro cycle.  Left at the start
model's values, a refinement minimises against the start's ideals, and a
validation measures against them: 5fn5_C refined with library restraints
reported angle RMSD 0.36 against its start's CDL, 0.59 against the CDL of
its own conformation (what any program reading the refined file reports).
"""

from mmtbx.conformation_dependent_library import update_restraints
from mmtbx.conformation_dependent_library.cdl_setup import setup_restraints
from libtbx.utils import null_out


def uses_cdl(model):
    """Whether the model's restraints were built with the CDL."""
    params = model.get_current_pdb_interpretation_params()
    if params is None or not model.restraints_manager_available():
        return False
    return params.pdb_interpretation.restraints_library.cdl is True


def refresh(geometry, hierarchy, sites_cart=None):
    """Set the CDL restraints of ``geometry`` for the (phi, psi) at
    ``sites_cart`` (default: the hierarchy's own coordinates).  With
    ``sites_cart`` the hierarchy's atoms are moved there: pass one the
    caller owns.  0.06 s on 5fn5_C (3787 atoms)."""
    update_restraints(hierarchy, geometry, sites_cart=sites_cart,
                      cdl_proxies=setup_restraints(geometry), log=null_out())
