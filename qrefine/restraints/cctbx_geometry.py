"""Library geometry restraints from cctbx (bonds, angles, dihedrals,
chirality, planarity, non-bonded repulsion)."""

import numpy as np
from scitbx.array_family import flex

from qrefine.model import cdl
from qrefine.restraints.base import RestraintSource


class CctbxGeometry(RestraintSource):
    """cctbx standard geometry restraints as a RestraintSource.

    The value is the cctbx geometry target: the sum of weighted squared
    deviations of all restraint terms (dimensionless).  Non-bonded pair
    proxies are refreshed by cctbx itself when atoms have moved far enough,
    so value and gradient always describe the sites passed in.  The CDL
    backbone restraints are set for each macro cycle's start sites
    (:mod:`qrefine.model.cdl`), as phenix does.
    """

    name = "cctbx"

    def __init__(self, model):
        self._geometry = model.get_restraints_manager().geometry
        # A hierarchy of our own: refreshing the CDL moves its atoms.
        self._cdl_hierarchy = (model.get_hierarchy().deep_copy() if cdl.uses_cdl(model)
                               else None)
        self.n_atoms = model.get_number_of_atoms()
        self.calls = 0

    def describe(self):
        return "cctbx library geometry restraints"

    def start_cycle(self, sites_cart):
        """Set the CDL restraints and rebuild the non-bonded pair proxies at
        ``sites_cart``."""
        sites = flex.vec3_double(np.asarray(sites_cart, dtype=float).reshape(self.n_atoms, 3))
        if self._cdl_hierarchy is not None:
            cdl.refresh(self._geometry, self._cdl_hierarchy, sites)
        # cctbx has no public "refresh now"; forgetting the sites of the last
        # refresh is what its own checks test for.
        self._geometry._sites_cart_used_for_pair_proxies = None
        self._geometry.pair_proxies(sites_cart=sites)

    def value_and_gradient(self, sites_cart):
        sites = np.asarray(sites_cart, dtype=float).reshape(self.n_atoms, 3)
        es = self._geometry.energies_sites(
            sites_cart=flex.vec3_double(sites), compute_gradients=True)
        self.calls += 1
        return float(es.target), es.gradients.as_numpy_array().reshape(self.n_atoms, 3)
