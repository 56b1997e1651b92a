"""Fragmentation: graph, clustering, buffers and caps, and the assembled
fragment gradient against the whole-model gradient (GFN-FF, 1us0 helix_model)."""

import os

import numpy as np
import pytest

from qrefine.errors import QRefineError
from qrefine.fragments import (cap_jacobians, cap_positions, cluster_residues, cut_weight,
                               make_fragments, residue_graph)
from qrefine.fragments.capping import CAP_DISTANCES, Cap
from common import xtb_or_skip


@pytest.fixture(scope="module")
def helix_3j63(structures):
    from qrefine.model.io import read_model
    return read_model(os.path.join(structures, "cryo_em", "3j63_A",
                                   "3j63_A_box_complete.pdb"), make_restraints=False)


def _chain(n, hbonds=(), strong=()):
    """Weight matrix of a chain of n residues (peptide bonds, weight 10)."""
    w = np.zeros((n, n))
    for i in range(n - 1):
        w[i, i + 1] = w[i + 1, i] = 10.0
    for i, j in hbonds:
        w[i, j] = w[j, i] = 2.0
    for i, j in strong:
        w[i, j] = w[j, i] = 15.0  # a disulfide
    return w


# -- graph and clustering ----------------------------------------------------

def test_graph_of_helix(helix_model):
    g = residue_graph(helix_model)
    assert g.n_residues == 13
    assert len(g.links) == 12  # the peptide bonds, each a C-N pair
    for a, b in g.links:
        assert {g.elements[a], g.elements[b]} == {"C", "N"}
    # alpha helix_model: the i -> i+4 backbone H-bonds are found
    hb = [k for k, kinds in g.kinds.items() if "hbond" in kinds and k[1] - k[0] == 4]
    assert len(hb) >= 6


def test_clustering_is_deterministic_and_a_partition(helix_3j63):
    runs = []
    for _ in range(2):
        g = residue_graph(helix_3j63)
        runs.append(cluster_residues(g, 10))
    assert [list(c) for c in runs[0]] == [list(c) for c in runs[1]]
    members = np.concatenate(runs[0])
    assert sorted(members) == list(range(g.n_residues))
    assert max(len(c) for c in runs[0]) <= 10
    assert len(runs[0]) == -(-g.n_residues // 10)  # as few clusters as the cap allows


def test_disulfide_not_cut_when_avoidable():
    # 1 and 5 are S-S bonded; clusters of 5 can keep them together.
    w = _chain(8, strong=[(1, 5)])
    clusters = cluster_residues(w, 5, keep_together=[(1, 5)])
    together = [c for c in clusters if 1 in c]
    assert 5 in together[0]
    assert max(len(c) for c in clusters) <= 5
    assert len(clusters) == 2
    # a group that does not fit is split after all
    clusters = cluster_residues(_chain(8, strong=[(0, 7)]), 3, keep_together=[(0, 7)])
    assert max(len(c) for c in clusters) <= 3


def test_helix_hbonds_not_cut_when_avoidable():
    # helical start: i -> i+4 H-bonds 0-4 and 1-5; a cut after residue 5 cuts none
    w = _chain(10, hbonds=[(0, 4), (1, 5)])
    clusters = cluster_residues(w, 6)
    assert [list(c) for c in clusters] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]]
    assert cut_weight(w, clusters) == 10.0


def test_bad_cluster_size():
    with pytest.raises(QRefineError):
        cluster_residues(_chain(3), 0)


# -- buffers, caps, charges --------------------------------------------------

def test_caps_on_cut_bonds(helix_model):
    g = residue_graph(helix_model)
    sites = np.array(helix_model.get_sites_cart())
    clusters = cluster_residues(g, 4)
    fragments = make_fragments(g, clusters, sites, 0.0, [0] * g.n_residues)
    n_caps = 0
    for f in fragments:
        pos = cap_positions(f.caps, sites)
        for cap, h in zip(f.caps, pos):
            n_caps += 1
            x, y = sites[cap.inside], sites[cap.outside]
            assert cap.inside in set(f.cluster_atoms) and cap.outside not in set(f.atoms)
            d = CAP_DISTANCES[g.elements[cap.inside]]
            assert abs(np.linalg.norm(h - x) - d) < 1e-9
            # on the bond, between the two atoms
            u = (y - x) / np.linalg.norm(y - x)
            assert np.linalg.norm(np.cross(h - x, u)) < 1e-9 and np.dot(h - x, u) > 0
    assert n_caps == 2 * (len(clusters) - 1)  # each cut peptide bond, from both sides


def test_cap_jacobian_by_finite_differences():
    rng = np.random.RandomState(3)
    x, y = rng.normal(size=3), rng.normal(size=3) + 1.5
    jx, jy = cap_jacobians(x, y, 1.09)
    h = 1e-6
    sites = np.array([x, y])
    for atom, jac in ((0, jx), (1, jy)):
        for k in range(3):
            plus, minus = sites.copy(), sites.copy()
            plus[atom, k] += h
            minus[atom, k] -= h
            fd = (cap_positions([Cap(0, 1, 1.09)], plus)[0]
                  - cap_positions([Cap(0, 1, 1.09)], minus)[0]) / (2 * h)
            assert np.allclose(fd, jac[:, k], atol=1e-7)


def test_fragment_charges(helix_3j63):
    from qrefine.model.charges import residue_charges, total_charge
    g = residue_graph(helix_3j63)
    sites = np.array(helix_3j63.get_sites_cart())
    charges = [r.charge for r in residue_charges(helix_3j63)]
    clusters = cluster_residues(g, 12)
    bare = make_fragments(g, clusters, sites, 0.0, charges)
    assert sum(f.charge for f in bare) == total_charge(helix_3j63) == -2
    buffered = make_fragments(g, clusters, sites, 3.5, charges)
    for f in buffered:
        residues = np.concatenate([f.cluster_residues, f.buffer_residues])
        assert f.charge == sum(charges[i] for i in residues)
        assert f.multiplicity == 1
        assert len(set(f.atoms)) == len(f.atoms)
        # whole residues only
        assert set(g.residue_of_atom[f.atoms]) == set(residues)


def test_rebuilt_buffers_keep_residues_within_the_margin(helix_3j63):
    """make_fragments(previous=...): a residue of the previous buffer stays
    while within buffer + STICKY_MARGIN, one beyond leaves, and every
    residue within buffer is in.  Same sites, the previous fragments built
    with wider buffers."""
    from qrefine.fragments.fragment import STICKY_MARGIN, buffer_residues
    from qrefine.model.charges import residue_charges
    g = residue_graph(helix_3j63)
    sites = np.array(helix_3j63.get_sites_cart())
    charges = [r.charge for r in residue_charges(helix_3j63)]
    clusters = cluster_residues(g, 12)
    buffer = 3.5
    fresh = make_fragments(g, clusters, sites, buffer, charges)
    inside = make_fragments(g, clusters, sites, buffer + 0.5 * STICKY_MARGIN, charges)
    kept = make_fragments(g, clusters, sites, buffer, charges, previous=inside)
    assert [f.key() for f in kept] == [f.key() for f in inside]
    assert sum(len(f.atoms) for f in inside) > sum(len(f.atoms) for f in fresh)
    beyond = make_fragments(g, clusters, sites, buffer + 2.0 * STICKY_MARGIN, charges)
    trimmed = make_fragments(g, clusters, sites, buffer, charges, previous=beyond)
    for f, c in zip(trimmed, clusters):
        assert np.array_equal(f.buffer_residues,
                              buffer_residues(g, c, sites, buffer + STICKY_MARGIN))
    # no previous buffer: the fresh one
    empty = [f._replace(buffer_residues=np.zeros(0, dtype=int)) for f in fresh]
    again = make_fragments(g, clusters, sites, buffer, charges, previous=empty)
    assert [f.key() for f in again] == [f.key() for f in fresh]
    with pytest.raises(QRefineError, match="previous fragments"):
        make_fragments(g, clusters, sites, buffer, charges, previous=fresh[:1])


def test_reclustering_keeps_the_clusters_and_unchanged_fragments(helix_3j63):
    """FragmentQMRestraints (15 residues, 8 A, keep_clusters) on 3j63_A after every atom
    moved (seeded, 0.1 A sigma) past recluster_shift: the same clusters,
    buffers that hold every residue within 8 A at the new sites, and most
    fragments unchanged (same key: their calculator and warm start stay).
    Measured: 5 of 7 unchanged; with fresh buffers 2, with a new partition 1."""
    xtb_or_skip()
    from qrefine.fragments.fragment import buffer_residues
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    sites = np.array(helix_3j63.get_sites_cart())
    moved = sites + np.random.default_rng(0).normal(0.0, 0.1, sites.shape)
    source = FragmentQMRestraints(helix_3j63, "xtb", "GFN-FF", recluster_shift=0.1,
                                  keep_clusters=True)
    default = FragmentQMRestraints(helix_3j63, "xtb", "GFN-FF", recluster_shift=0.1)
    try:
        before = [f.key() for f in source.cluster(sites)]
        clusters = [c.copy() for c in source.clusters]
        assert not source._needs_clustering(sites) and source._needs_clustering(moved)
        after = source.cluster(moved)
        assert source.n_clusterings == 2 and len(after) == len(clusters) == 7
        assert all(np.array_equal(a, b) for a, b in zip(source.clusters, clusters))
        for f, c in zip(after, clusters):
            assert set(buffer_residues(source.graph, c, moved, 8.0)) <= set(f.buffer_residues)
        assert sum(k in before for k in (f.key() for f in after)) >= 4
        # the default: a new partition and fresh buffers at the moved sites
        assert [f.key() for f in default.cluster(sites)] == before
        renewed = default.cluster(moved)
        assert sum(k in before for k in (f.key() for f in renewed)) <= 2
    finally:
        source.close()
        default.close()


def test_keep_clusters_parameter_reaches_the_fragments(helix_model):
    """fragments.keep_clusters (default false) is the source's setting."""
    xtb_or_skip()
    from qrefine.config import phil
    from qrefine.restraints.factory import build_restraints
    for value, expected in (([], False), (["fragments.keep_clusters=true"], True)):
        p, _ = phil.parse(["restraints=qm", "engine=xtb", "method=GFN-FF",
                           "qm.clustering=true"] + value)
        source = build_restraints(helix_model, "model.pdb", p, None)
        try:
            assert source.keep_clusters is expected
        finally:
            source.close()


def test_charged_buffer_adds_charged_residues_only(helix_3j63):
    """make_fragments(charged_buffer=10) on 3j63_A, buffer 5 A: every
    residue within 5 A is in, and beyond it exactly the charged residues
    within 10 A; the fragment charge is their sum; charged_buffer at or
    below buffer changes nothing.  And a rebuild (previous=) with the same
    sites keeps the same fragments."""
    from qrefine.fragments.fragment import buffer_residues
    from qrefine.model.charges import residue_charges
    g = residue_graph(helix_3j63)
    sites = np.array(helix_3j63.get_sites_cart())
    charges = np.array([r.charge for r in residue_charges(helix_3j63)])
    clusters = cluster_residues(g, 15)
    plain = make_fragments(g, clusters, sites, 5.0, charges)
    charged = make_fragments(g, clusters, sites, 5.0, charges, charged_buffer=10.0)
    added = 0
    for f, p, c in zip(charged, plain, clusters):
        near = buffer_residues(g, c, sites, 5.0)
        far = buffer_residues(g, c, sites, 10.0)
        assert np.array_equal(p.buffer_residues, near)
        extra = np.setdiff1d(f.buffer_residues, near)
        assert np.array_equal(extra, np.setdiff1d(far[charges[far] != 0], near))
        assert f.charge == charges[np.concatenate([c, f.buffer_residues])].sum()
        added += len(extra)
    assert added >= 2 * len(clusters)  # 26 of 3j63_A's 91 residues are charged
    same = make_fragments(g, clusters, sites, 5.0, charges, charged_buffer=5.0)
    assert [f.key() for f in same] == [f.key() for f in plain]
    again = make_fragments(g, clusters, sites, 5.0, charges, previous=charged,
                           charged_buffer=10.0)
    assert [f.key() for f in again] == [f.key() for f in charged]


def test_charged_buffer_parameter_reaches_the_fragments(helix_model):
    """fragments.charged_buffer (default None) is the source's setting, and
    a negative one is refused."""
    xtb_or_skip()
    from qrefine.config import phil
    from qrefine.config.checks import check_parameters
    from qrefine.restraints.factory import build_restraints
    for value, expected in (([], None), (["fragments.charged_buffer=10"], 10.0)):
        p, _ = phil.parse(["restraints=qm", "engine=xtb", "method=GFN-FF",
                           "qm.clustering=true"] + value)
        source = build_restraints(helix_model, "model.pdb", p, None)
        try:
            assert source.charged_buffer == expected
        finally:
            source.close()
    p, _ = phil.parse(["fragments.charged_buffer=-1"])
    with pytest.raises(QRefineError, match="charged_buffer"):
        check_parameters(p, None)


def test_odd_electron_fragment_is_an_error(helix_model):
    g = residue_graph(helix_model)
    sites = np.array(helix_model.get_sites_cart())
    charges = [0] * g.n_residues
    charges[0] = 1  # a wrong charge makes the electron count odd
    with pytest.raises(QRefineError, match="odd number of electrons"):
        make_fragments(g, [np.arange(g.n_residues)], sites, 0.0, charges)


# -- assembled gradient ------------------------------------------------------

def _whole_gradient(model, sites, method="GFN-FF"):
    from qrefine.restraints.qm import QMRestraints
    g = residue_graph(model)
    whole = QMRestraints([e.capitalize() for e in g.elements], "xtb", method, charge=0)
    return whole.value_and_gradient(sites)[1]


def test_fragment_gradient_matches_whole_model(helix_model):
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    sites = np.array(helix_model.get_sites_cart())
    reference = _whole_gradient(helix_model, sites)
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=5, buffer=8.0)
    value, grad = source.value_and_gradient(sites)
    assert value == 0.0 and len(source.fragments) == 3
    err = np.linalg.norm(grad - reference, axis=1)
    # measured: RMS 0.080, max 0.234 kcal/mol/A (gradient RMS 31)
    assert np.sqrt((err ** 2).mean()) < 0.15
    assert err.max() < 0.5
    # a same-point request is served from the cache
    calls = source.timing()["engine_calls"]
    source.value_and_gradient(sites)
    assert source.timing()["engine_calls"] == calls


def test_parallel_equals_serial(helix_model):
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    sites = np.array(helix_model.get_sites_cart())
    serial = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=4, buffer=3.0)
    parallel = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=4,
                                    buffer=3.0, nproc=2)
    try:
        g1 = serial.value_and_gradient(sites)[1]
        g2 = parallel.value_and_gradient(sites)[1]
        moved = sites + 0.01
        g3 = serial.value_and_gradient(moved)[1]
        g4 = parallel.value_and_gradient(moved)[1]
    finally:
        parallel.close()
    assert np.abs(g1 - g2).max() < 1e-6
    assert np.abs(g3 - g4).max() < 1e-6


def test_minimisation_lowers_the_whole_model_energy(helix_model):
    """L-BFGS with QM step control (as qr.refine runs it) on the fragment
    source (line-integral value) lowers the true energy."""
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.refine.minimizer import lbfgs
    from qrefine.refine.protocol import QM_MAX_STEP
    from qrefine.restraints.qm import QMRestraints
    rng = np.random.RandomState(0)
    start = np.array(helix_model.get_sites_cart()) + rng.normal(scale=0.1, size=(94, 3))
    g = residue_graph(helix_model)
    whole = QMRestraints([e.capitalize() for e in g.elements], "xtb", "GFN-FF")
    e0 = whole.value_and_gradient(start)[0]
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=5,
                                  buffer=4.0, recluster_shift=0.3)
    result = lbfgs(source.value_and_gradient, start, max_iterations=40,
                   max_step=QM_MAX_STEP)
    assert result.iterations == 40 or result.converged, result.message
    assert source.n_clusterings > 1          # atoms moved past recluster_shift
    e1 = whole.value_and_gradient(result.sites_cart)[0]
    # measured: the true GFN-FF energy falls by about 400 kcal/mol in 40 steps
    assert e1 < e0 - 100.0
    assert result.value < 0


def test_value_is_continuous_when_a_line_search_backtracks(helix_model):
    """A long trial step and back: the value near the start of the line must
    come back to the start value (integrated from the nearest point)."""
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    x = np.array(helix_model.get_sites_cart())
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", max_cluster_residues=5,
                                  buffer=4.0)
    v0, g0 = source.value_and_gradient(x)
    d = -g0 / np.linalg.norm(g0, axis=1).max()
    source.value_and_gradient(x + 0.5 * d)      # far into the wall
    source.value_and_gradient(x + 0.05 * d)
    v, g = source.value_and_gradient(x + 1e-4 * d)
    assert abs(v - v0) < 1e-3 * abs(float((g0 * d).sum()))
    assert v < v0                               # a descent direction


# -- qr.fragments --------------------------------------------------------------

def test_command_line(structures, capsys):
    xtb_or_skip()
    from qrefine.scripts import fragments as cli
    path = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    assert cli.main([path, "method=GFN-FF", "max_cluster_residues=5", "buffer=8",
                     "compare=true"]) == 0
    out = capsys.readouterr().out
    assert "clusters: 3" in out
    assert "gradient error vs whole model" in out and "worst atoms:" in out
    assert cli.main([path, "buffer=x"]) == 1
    assert "buffer=x" in capsys.readouterr().err


def test_command_line_charged_buffer(helix_3j63, structures, capsys):
    """qr.fragments charged_buffer=10 on 3j63_A (clustering only): larger
    fragments than buffer=5 alone, by the charged residues make_fragments
    adds, and the setting in the header."""
    xtb_or_skip()
    from qrefine.scripts import fragments as cli
    path = os.path.join(structures, "cryo_em", "3j63_A", "3j63_A_box_complete.pdb")
    totals = []
    for extra in ([], ["charged_buffer=10"]):
        assert cli.main([path, "method=GFN-FF", "buffer=5"] + extra) == 0
        out = capsys.readouterr().out
        totals.append(int(out.split("fragment atoms:")[1].split("total")[1].split()[0]))
    assert "charged_buffer=10.00 A" in out
    from qrefine.model.charges import residue_charges
    g = residue_graph(helix_3j63)
    sites = np.array(helix_3j63.get_sites_cart())
    charges = [r.charge for r in residue_charges(helix_3j63)]
    clusters = cluster_residues(g, 15)
    expected = [sum(f.n_atoms for f in make_fragments(g, clusters, sites, 5.0, charges,
                                                      charged_buffer=b)) for b in (None, 10.0)]
    assert totals == expected and totals[1] > totals[0]


def test_clashing_side_chains_are_not_covalent_links(structures):
    """5fn5 chain C has GLU 106 OE1 1.27 A from ARG 109 O: a clash, not a
    bond.  Taking it for a link would cap it and make fragments odd."""
    from qrefine.fragments.clustering import cluster_residues
    from qrefine.fragments.fragment import make_fragments
    from qrefine.model.charges import residue_charges
    from qrefine.model.io import read_model
    model = read_model(os.path.join(structures, "cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb"),
                       make_restraints=False)
    sites = model.get_sites_cart().as_numpy_array()
    g = residue_graph(model, sites)
    labels = {r.index: r.label for r in g.residues}
    linked = {tuple(sorted((labels[g.residue_of_atom[a]], labels[g.residue_of_atom[b]])))
              for a, b in g.links}
    assert ("C 106", "C 109") not in linked
    assert ("C 105", "C 106") in linked                  # the peptide bond stays
    fragments = make_fragments(g, cluster_residues(g, 15), sites, 8.0,
                               [r.charge for r in residue_charges(model)])
    assert all(f.multiplicity == 1 for f in fragments)
