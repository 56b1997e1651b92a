"""Partition a weighted residue graph into clusters of bounded size.

Method: recursive spectral bisection with a sweep cut, then greedy merging.

1. Residues that must stay together (disulfides, metal sites) are
   contracted to one node, as long as the group fits.  Connected
   components are clustered separately.
2. A component larger than ``max_size`` is ordered by its Fiedler vector
   (the eigenvector of the second-smallest eigenvalue of the weighted graph
   Laplacian, which places strongly bound residues next to each other), and
   cut at the prefix that minimises the total weight cut, among the cut
   points that do not increase the number of clusters the two halves will
   need (``ceil(k/M) + ceil((m-k)/M) == ceil(m/M)``), so clusters come out
   close to ``max_size`` (fewer, fuller fragments mean less buffer overhead).
   Ties go to the more balanced cut, then to the smaller prefix.
   The halves are treated the same way until every piece fits.
3. Neighbouring clusters are merged, strongest connection first, while the
   merged cluster still fits.

Because covalent links weigh 10 and hydrogen bonds 2 (see
:mod:`qrefine.fragments.graph`), the minimal cut avoids disulfides and helix
hydrogen-bond ladders whenever a cut of equal size elsewhere exists.
Every step is deterministic: the eigenvector's sign is fixed and all ties
are broken by residue index.
"""

import numpy as np
from scipy.linalg import eigh

from qrefine.errors import QRefineError


def cluster_residues(graph, max_size, keep_together=None):
    """Clusters of ``graph`` (a :class:`~qrefine.fragments.graph.ResidueGraph`
    or a dense symmetric weight matrix): a list of ascending residue-index
    arrays, ordered by first residue, each of at most ``max_size``.

    ``keep_together``: residue pairs never to separate while the group they
    form fits in ``max_size`` (default for a graph: disulfides and metal
    sites).  Such groups are contracted to one node before bisection.
    """
    if max_size < 1:
        raise QRefineError("max_cluster_residues must be at least 1, got %s" % max_size)
    if hasattr(graph, "weight_matrix"):
        w = graph.weight_matrix()
        if keep_together is None:
            keep_together = [k for k, kinds in graph.kinds.items()
                             if kinds & {"disulfide", "metal"}]
    else:
        w = np.asarray(graph, dtype=float)
    groups = _groups(len(w), keep_together or (), max_size)
    p = np.zeros((len(w), len(groups)))
    for g, members in enumerate(groups):
        p[members, g] = 1.0
    wg = p.T @ w @ p
    np.fill_diagonal(wg, 0.0)
    sizes = np.array([len(g) for g in groups])
    pieces = []
    work = [np.arange(len(groups))]
    while work:
        nodes = work.pop()
        comps = _components(wg, nodes)
        if len(comps) > 1:
            work.extend(comps)
            continue
        if sizes[nodes].sum() <= max_size:
            pieces.append(nodes)
            continue
        work.extend(_bisect(wg, sizes, nodes, max_size))
    clusters = _merge(wg, sizes, pieces, max_size)
    clusters = [np.sort(np.concatenate([groups[g] for g in c])) for c in clusters]
    return sorted(clusters, key=lambda c: c[0])


def _groups(n, pairs, max_size):
    """Union of ``pairs`` (in sorted order) while a group fits in ``max_size``."""
    parent = list(range(n))
    size = [1] * n

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in sorted(tuple(sorted((int(a), int(b)))) for a, b in pairs):
        a, b = root(i), root(j)
        if a != b and size[a] + size[b] <= max_size:
            a, b = min(a, b), max(a, b)
            parent[b] = a
            size[a] += size[b]
    members = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return [np.array(members[r]) for r in sorted(members)]


def cut_weight(graph, clusters):
    """Total weight of the edges between different clusters."""
    w = graph.weight_matrix() if hasattr(graph, "weight_matrix") else np.asarray(graph, float)
    label = np.empty(len(w), dtype=int)
    for k, c in enumerate(clusters):
        label[c] = k
    i, j = np.nonzero(np.triu(w, 1))
    return float(w[i, j][label[i] != label[j]].sum())


def _components(w, nodes):
    """Connected components of the subgraph on ``nodes`` (ascending arrays)."""
    sub = w[np.ix_(nodes, nodes)] > 0
    seen = np.zeros(len(nodes), dtype=bool)
    comps = []
    for start in range(len(nodes)):
        if seen[start]:
            continue
        stack, members = [start], []
        seen[start] = True
        while stack:
            v = stack.pop()
            members.append(v)
            for u in np.nonzero(sub[v] & ~seen)[0]:
                seen[u] = True
                stack.append(u)
        comps.append(nodes[np.sort(members)])
    return comps


def _bisect(w, sizes, nodes, max_size):
    sub = w[np.ix_(nodes, nodes)]
    m = len(nodes)
    lap = np.diag(sub.sum(axis=1)) - sub
    _, vec = eigh(lap, subset_by_index=[1, 1])
    f = vec[:, 0]
    pivot = np.argmax(np.abs(f) > 1e-6 * np.abs(f).max())  # first clearly non-zero entry
    if f[pivot] < 0:
        f = -f
    order = np.lexsort((np.arange(m), np.round(f, 8)))
    total = int(sizes[nodes].sum())
    need = -(-total // max_size)
    cut = 0.0
    size = 0
    candidates = []
    inside = np.zeros(m, dtype=bool)
    for k in range(1, m):
        v = order[k - 1]
        # moving v into the prefix: its edges to the rest become cut, those
        # to the prefix stop being cut
        cut += sub[v, ~inside].sum() - sub[v, v] - sub[v, inside].sum()
        inside[v] = True
        size += int(sizes[nodes[v]])
        wasted = -(-size // max_size) + -(-(total - size) // max_size) - need
        candidates.append((wasted, round(cut, 9), abs(total - 2 * size), k))
    k = min(candidates)[3]
    return np.sort(nodes[order[:k]]), np.sort(nodes[order[k:]])


def _merge(w, sizes, pieces, max_size):
    """Merge neighbouring pieces, strongest connection first, while they fit."""
    clusters = [np.sort(p) for p in pieces]
    size = [int(sizes[c].sum()) for c in clusters]
    between = np.array([[w[np.ix_(a, b)].sum() for b in clusters] for a in clusters])
    np.fill_diagonal(between, 0.0)
    while True:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if between[a, b] <= 0 or size[a] + size[b] > max_size:
                    continue
                key = (-round(between[a, b], 9), min(clusters[a][0], clusters[b][0]))
                if best is None or key < best[0]:
                    best = (key, a, b)
        if best is None:
            return clusters
        _, a, b = best
        clusters[a] = np.sort(np.concatenate([clusters[a], clusters[b]]))
        size[a] += size[b]
        between[a, :] += between[b, :]
        between[:, a] += between[:, b]
        between[a, a] = 0.0
        del clusters[b], size[b]
        between = np.delete(np.delete(between, b, axis=0), b, axis=1)
