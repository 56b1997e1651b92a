"""Data terms: the fit of the model to a map or to reflections.

Every data target has the same narrow interface (the DataTarget seam), so
the refinement target never needs to know which kind it holds:

``value_and_gradient(sites_cart) -> (float, ndarray (N, 3))``
    target value (lower is better) and its gradient with respect to the
    Cartesian sites of all N model atoms, in the model's own frame.
``update(sites_cart) -> None``
    re-fit nuisance parameters (scales, bulk solvent) between macro cycles.
``statistics(sites_cart) -> dict``
    fit statistics for the validation report: ``{"cc_mask": x, "fsc_avg": f}`` for maps,
    ``{"r_work": x, "r_free": y}`` for reflections.
"""
