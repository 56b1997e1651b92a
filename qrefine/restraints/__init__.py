"""Restraint terms (the RestraintSource seam).

A restraint source derives from
:class:`qrefine.restraints.base.RestraintSource` and implements
``value_and_gradient(sites_cart: ndarray (N, 3)) -> (float, ndarray (N, 3))``,
over all N model atoms in model order; the rest (``start_cycle``,
``describe``, ``timing``, ``summary``, ``symmetry_summary``, ``close``,
``is_dual_level``, ``primary``) has defaults there.  The library source is
:class:`qrefine.restraints.cctbx_geometry.CctbxGeometry`.
"""
