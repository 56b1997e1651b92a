"""Fragmentation of a model for QM restraints (the Q|R scheme).

The fragmenter is a one-way pipeline over plain records; it never calls an
engine:

    model -> :func:`residue_graph` -> :func:`cluster_residues`
          -> :func:`make_fragments` -> [:class:`Fragment`]

:class:`qrefine.restraints.fragment_qm.FragmentQMRestraints` runs an engine on
each fragment and assembles the gradient of the whole model (a
RestraintSource); this package knows nothing of engines.
"""

from qrefine.fragments.capping import Cap, cap_jacobians, cap_positions, project_cap_gradient
from qrefine.fragments.clustering import cluster_residues, cut_weight
from qrefine.fragments.fragment import (Fragment, buffer_residues, fragment_positions,
                                        fragment_symbols, make_fragments)
from qrefine.fragments.graph import Residue, ResidueGraph, residue_graph


__all__ = ["Cap", "Fragment", "Residue", "ResidueGraph",
           "buffer_residues", "cap_jacobians", "cap_positions", "cluster_residues",
           "cut_weight", "fragment_positions", "fragment_symbols", "make_fragments",
           "project_cap_gradient", "residue_graph"]
