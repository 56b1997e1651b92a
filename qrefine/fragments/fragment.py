"""Fragments: a cluster, its buffer of whole residues, caps, charge.

A fragment is the cluster plus every residue with an atom within ``buffer``
A of a cluster atom, and, with ``charged_buffer``, every residue with a
formal charge within that larger distance (when rebuilt after a move, also
the residues of its previous buffer that are still within these distances
plus ``STICKY_MARGIN``).  Covalent links from the fragment to residues
outside it are capped with H (:mod:`qrefine.fragments.capping`).  The charge
is the sum of the formal charges of its residues (:mod:`qrefine.model.charges`;
an H cap on a homolytically cut bond adds no charge), and the multiplicity
is 1; an odd electron count is an error naming the fragment.
"""

import collections

import numpy as np
from scipy.spatial import cKDTree

from qrefine.errors import QRefineError
from qrefine.fragments.capping import Cap, cap_distance, cap_positions
from qrefine.model.charges import check_multiplicity, electron_count


class Fragment(collections.namedtuple(
        "Fragment", "index cluster_residues buffer_residues cluster_atoms buffer_atoms "
                    "caps charge multiplicity")):
    """One fragment calculation, as plain data.

    ``cluster_residues``/``buffer_residues``: residue indices of the
    :class:`~qrefine.fragments.graph.ResidueGraph`; ``cluster_atoms``/
    ``buffer_atoms``: model atom indices (ascending int arrays); ``caps``:
    [:class:`~qrefine.fragments.capping.Cap`].  The engine sees the atoms in
    the order :attr:`atoms` (cluster, then buffer), then one H per cap.
    """

    @property
    def atoms(self):
        return np.concatenate([self.cluster_atoms, self.buffer_atoms])

    @property
    def n_atoms(self):
        """Atoms the engine computes, caps included."""
        return len(self.cluster_atoms) + len(self.buffer_atoms) + len(self.caps)

    def key(self):
        """Hashable identity: the same key means the same calculation setup."""
        return (tuple(int(i) for i in self.atoms),
                tuple((c.inside, c.outside) for c in self.caps), self.charge, self.multiplicity)


def buffer_residues(graph, cluster, sites_cart, buffer):
    """Residues (not in ``cluster``) with an atom within ``buffer`` A of an
    atom of ``cluster``; ascending residue indices."""
    if buffer <= 0:
        return np.zeros(0, dtype=int)
    sites = np.asarray(sites_cart, dtype=float)
    cluster_atoms = graph.atoms_of(cluster)
    tree = cKDTree(sites[cluster_atoms])
    d, _ = tree.query(sites, distance_upper_bound=buffer)
    near = np.unique(graph.residue_of_atom[np.isfinite(d)])
    return np.setdiff1d(near, cluster)


# A residue already in a buffer stays there until it is this much farther
# than ``buffer`` (A).  Why: a changed fragment is a cold engine set-up
# (GFN-FF on 5ly6: 70-150 s a re-clustering against 7-10 s a warm
# gradient).  With the same clusters, after a 1.05 A move along a library
# refinement, 23 of 34 5ly6 fragments kept their atoms (benchmarks/
# recluster.py).  The buffer still holds every residue within ``buffer``,
# so no fragment is smaller.
STICKY_MARGIN = 1.0


def charged_and_near(graph, cluster, sites_cart, buffer, charges, charged_buffer=None):
    """Buffer residues: those within ``buffer`` A of ``cluster``, and with
    ``charged_buffer`` (A, larger) the charged ones (``charges``: one formal
    charge per graph residue) within that distance.  Why charged ones
    farther: their field reaches across the cut, so they lower the gradient
    error more than neutral residues of the same atom count (the measured
    numbers: ``fragments.charged_buffer``'s help, benchmarks/README.md,
    "Charged residues in the buffer")."""
    near = buffer_residues(graph, cluster, sites_cart, buffer)
    if not charged_buffer or charged_buffer <= buffer:
        return near
    far = buffer_residues(graph, cluster, sites_cart, charged_buffer)
    return np.union1d(near, far[np.asarray(charges)[far] != 0]).astype(int)


def make_fragments(graph, clusters, sites_cart, buffer, residue_charges, previous=None,
                   charged_buffer=None):
    """[:class:`Fragment`] for ``clusters`` of ``graph``.

    ``residue_charges``: one integer per graph residue (the order of
    :func:`qrefine.model.charges.residue_charges`).  ``charged_buffer``:
    charged residues within this distance (A) join the buffer too
    (:func:`charged_and_near`).  ``previous``: the
    fragments of the same ``clusters`` at the last clustering; their buffer
    residues stay while within ``buffer + STICKY_MARGIN`` (charged ones
    within ``charged_buffer + STICKY_MARGIN``) (hysteresis, so a fragment's
    atoms, and its engine's set-up, change only when a residue comes within
    reach or moves well out).
    """
    charges = np.asarray(residue_charges, dtype=int)
    if len(charges) != graph.n_residues:
        raise QRefineError("%d residue charges for %d residues"
                           % (len(charges), graph.n_residues))
    if previous is not None and len(previous) != len(clusters):
        raise QRefineError("%d previous fragments for %d clusters"
                           % (len(previous), len(clusters)))
    fragments = []
    for k, cluster in enumerate(clusters):
        cluster = np.asarray(cluster, dtype=int)
        buf = charged_and_near(graph, cluster, sites_cart, buffer, charges, charged_buffer)
        if previous is not None and buffer > 0:
            kept = np.intersect1d(previous[k].buffer_residues, charged_and_near(
                graph, cluster, sites_cart, buffer + STICKY_MARGIN, charges,
                charged_buffer + STICKY_MARGIN if charged_buffer else None))
            buf = np.union1d(buf, kept).astype(int)
        residues = np.concatenate([cluster, buf])
        in_fragment = np.zeros(len(graph.residue_of_atom), dtype=bool)
        in_fragment[graph.atoms_of(residues)] = True
        caps = []
        for a, b in graph.links:
            if in_fragment[a] != in_fragment[b]:
                inside, outside = (a, b) if in_fragment[a] else (b, a)
                caps.append(Cap(int(inside), int(outside),
                                cap_distance(graph.elements[inside])))
        caps.sort()
        charge = int(charges[residues].sum())
        cluster_atoms = graph.atoms_of(cluster)
        buffer_atoms = graph.atoms_of(buf)
        symbols = [graph.elements[i] for i in np.concatenate([cluster_atoms, buffer_atoms])]
        n_el = electron_count([s.capitalize() for s in symbols] + ["H"] * len(caps), charge)
        try:
            multiplicity = check_multiplicity(n_el)
        except QRefineError as e:
            raise QRefineError("fragment %d (residues %s): %s" % (
                k, ", ".join(graph.residues[i].label for i in residues), e))
        fragments.append(Fragment(k, cluster, buf, cluster_atoms, buffer_atoms, caps,
                                  charge, multiplicity))
    return fragments


def fragment_name(graph, fragment):
    """A file-name-safe name of the fragment's cluster, by chain and residue
    range (``A_12-19``; chains joined by ``+``): a failed fragment's folder
    and error message name the residues, which a user can find in the model,
    and two workers' failures never share a folder."""
    ranges = collections.OrderedDict()
    for i in fragment.cluster_residues:
        parts = graph.residues[i].label.split()
        chain, resseq = (parts + [""])[:2] if len(parts) > 1 else ("_", parts[0])
        ranges.setdefault(chain, []).append(resseq)
    name = "+".join("%s_%s" % (c, r[0] if len(r) == 1 else "%s-%s" % (r[0], r[-1]))
                    for c, r in ranges.items())
    return "".join(ch if ch.isalnum() or ch in "+-_" else "_" for ch in name)


def fragment_symbols(graph, fragment):
    """Element symbols the engine sees (ASE spelling), caps last."""
    return [graph.elements[i].capitalize() for i in fragment.atoms] + ["H"] * len(fragment.caps)


def fragment_positions(fragment, sites_cart):
    """(n_atoms, 3) positions the engine sees, caps last."""
    sites = np.asarray(sites_cart, dtype=float)
    return np.concatenate([sites[fragment.atoms], cap_positions(fragment.caps, sites)])
