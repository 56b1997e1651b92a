"""Fragmentation of a model for QM restraints (the Q|R scheme).

The fragmenter is a one-way pipeline over plain records; it never calls an
engine:

    model -> :func:`residue_graph` -> :func:`cluster_residues`
          -> :func:`make_fragments` -> [:class:`Fragment`]

:class:`FragmentQMRestraints` runs an engine on each fragment and assembles
the gradient of the whole model (a RestraintSource).
"""

from qrefine.fragments.capping import Cap, cap_jacobians, cap_positions, project_cap_gradient
from qrefine.fragments.clustering import cluster_residues, cut_weight
from qrefine.fragments.fragment import (Fragment, buffer_residues, fragment_positions,
                                        fragment_symbols, make_fragments)
from qrefine.fragments.graph import Residue, ResidueGraph, residue_graph


def __getattr__(name):
    # The restraint source imports the engine registry; load it only when asked.
    if name == "FragmentQMRestraints":
        from qrefine.fragments.restraints import FragmentQMRestraints
        return FragmentQMRestraints
    raise AttributeError(name)


__all__ = ["Cap", "Fragment", "FragmentQMRestraints", "Residue", "ResidueGraph",
           "buffer_residues", "cap_jacobians", "cap_positions", "cluster_residues",
           "cut_weight", "fragment_positions", "fragment_symbols", "make_fragments",
           "project_cap_gradient", "residue_graph"]
