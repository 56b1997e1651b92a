"""Restraint terms (the RestraintSource seam).

A restraint source has one method,
``value_and_gradient(sites_cart: ndarray (N, 3)) -> (float, ndarray (N, 3))``,
over all N model atoms in model order.  The library source is
:class:`qrefine.restraints.cctbx_geometry.CctbxGeometry`.
"""
