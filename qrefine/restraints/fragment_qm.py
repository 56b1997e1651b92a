"""QM restraints computed on fragments (the Q|R scheme), as a RestraintSource.

Gradient.  Each atom belongs to exactly one cluster; its gradient is taken
from the calculation of that cluster's fragment (cluster + buffer + caps),
where it is surrounded by at least ``buffer`` A of its real neighbours.
Buffer atoms' gradients are discarded.  A cap's gradient is carried back
onto the two atoms of the cut bond through the cap's Jacobian
(``cap_gradients="project"``, see :mod:`qrefine.fragments.capping`) or
dropped (``"drop"``); only the share that lands on the fragment's own
cluster atoms is kept, so with a buffer the caps sit on buffer atoms and the
two choices agree.

Value.  Fragment energies do not add up to the energy of the model, and the
assembled gradient is not exactly the gradient of any function.  The line
search still needs a value that agrees with the gradient, so the value is a
line integral of the assembled gradient by the trapezoid rule, taken from
the *nearest* point evaluated so far (of the last ``HISTORY``)::

    V(x_0) = 0,    V(x) = V(p) + (g_p + g_x) . (x - p) / 2,   p nearest to x

Along an L-BFGS path the nearest point is the previous one, and V changes as
the integral of the gradient would, exactly for a quadratic energy.  When a
line search backtracks from a long trial step to a short one, the nearest
point is the start of the line, so V stays continuous there.  Integrating
along the path instead (from the last point asked for) does not: on 3j63_A
(GFN-FF, at a refined model) a 0.2 A trial step into a steep wall and back
left V 26 kcal/mol above its value at the start of the line even for
vanishing steps, and every line search failed.  The value is in kcal/mol
relative to the first point, the gradient in kcal/mol/A, as in
:class:`qrefine.restraints.qm.QMRestraints`.  It is not the energy (over long
steps on a steep surface the trapezoid rule drifts): log it as a target, not
as an energy.

Execution.  Fragments run through an executor (see
:mod:`qrefine.restraints.executors`): in this process (``nproc=1``), in
``nproc`` local worker processes (``backend="local"``), or as tasks on a Dask
cluster (``backend="dask"``, ``scheduler=`` its address; see
:mod:`qrefine.restraints.dask_executor`).  Each keeps a fragment's calculator
between calls and every backend gives the same numbers.  With a
``reporter``, a transient "fragments 12/40" line shows how far an
evaluation is.

Crystal symmetry.  With an ``environment`` (a
:class:`~qrefine.restraints.symmetry.SymmetryEnvironment`), the residue copies around
the model are graph nodes that never join a cluster: clusters are made of
model residues only, and a fragment's buffer takes model and copy residues
alike (capped the same way), at positions that follow the model through
their operators.  Buffer gradients are discarded, copies included: this is
the "direct" rule of :mod:`qrefine.restraints.symmetry` (the gradient on the model's
own atoms is the derivative of the lattice energy per asymmetric unit).

Delta correction.  With ``correction="whole_model"`` a constant per-atom
correction ``g_whole(x0) - g_frag(x0)`` is added to the fragment gradient,
taken again at each macro cycle, after re-clustering and when an atom has
moved more than ``correction_refresh`` A from ``x0`` (see
:mod:`qrefine.restraints.fragment_correction`).  The whole model runs in
this process, with its OpenMP threads (``OMP_NUM_THREADS``, which the
pipeline sets to ``nproc``).  Not with a symmetry environment.

Re-clustering.  Clusters and buffers are built at the first call and again
whenever an atom has moved more than ``recluster_shift`` A from where it was
at the last clustering; with ``keep_clusters`` only the buffers are, with a
hysteresis (:data:`qrefine.fragments.fragment.STICKY_MARGIN`), for the same
clusters.  Calculators of fragments that did not change are kept (their SCF
warm-starts, and GFN-FF keeps the topology it was first built with); the
others are released.
"""

import os
import time

import numpy as np

from qrefine import engines
from qrefine.errors import QRefineError
from qrefine.fragments.capping import project_cap_gradient
from qrefine.fragments.clustering import cluster_residues
from qrefine.fragments.fragment import (fragment_name, fragment_positions, fragment_symbols,
                                        make_fragments)
from qrefine.fragments.graph import extended_residues, residue_graph
from qrefine.model.charges import check_multiplicity, electron_count
from qrefine.model.charges import residue_charges as charges_of
from qrefine.model.elements import symbol_of
from qrefine.restraints.base import RestraintSource
from qrefine.restraints.dask_executor import DaskExecutor
from qrefine.restraints.executors import ProcessExecutor, SerialExecutor
from qrefine.restraints.fragment_correction import (CORRECTIONS, DEFAULT_REFRESH,
                                                    WholeModelCorrection)
from qrefine.restraints.qm import PathValue, QMRestraints

DEFAULT_MAX_CLUSTER_RESIDUES = 15
DEFAULT_BUFFER = 8.0  # A; 3j63_A, GFN2-xTB: RMS error 0.42, max 2.4 kcal/mol/A (6 A: 0.65, 2.5)
DEFAULT_RECLUSTER_SHIFT = 1.0
HISTORY = 20  # points kept for the value's line integral and as a cache
CAP_GRADIENTS = ("project", "drop")


def usable_cores():
    """The cores this process may run on (its CPU affinity, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _timed_in_process(module, options):
    return bool((options or {}).get("timeout")) and getattr(module, "IN_PROCESS", False)


class FragmentQMRestraints(RestraintSource):
    """Fragment-based QM gradient (and a consistent line-integral value).

    ``model``: ``mmtbx.model.manager`` (hydrogens needed, for the charges);
    ``engine``/``method``/``options``: as for
    :class:`~qrefine.restraints.qm.QMRestraints`; ``residue_charges``: one
    charge per residue (default: :func:`qrefine.model.charges.residue_charges`
    with ``ligand_charges``); ``nproc``: worker processes (1 = serial);
    ``threads``: OpenMP threads per worker (default: cores / nproc, 1 on
    Dask); ``backend``: ``"local"`` (processes on this machine) or
    ``"dask"`` (tasks on the Dask scheduler at ``scheduler``);
    ``executor``: any object with ``run``/``retain``/``close`` (overrides
    ``nproc`` and ``backend``); ``reporter``: a
    :class:`~qrefine.log.Reporter` for the fragment progress line;
    ``environment``: a :class:`~qrefine.restraints.symmetry.SymmetryEnvironment` whose
    residue copies may join fragment buffers (its radius should be at least
    ``buffer``); ``correction``: ``"none"`` or ``"whole_model"`` (the delta
    correction above), ``correction_refresh``: A, atom shift that takes it
    again; ``part`` (residue indices, the order of
    :func:`qrefine.fragments.graph.model_residues`): compute only the
    clusters holding a residue of it (every other atom gets a zero
    gradient), or with ``part_as_one`` the part itself as the one cluster,
    for weight trials that move only those atoms
    (:mod:`qrefine.weights.part`); ``keep_clusters``: re-clustering keeps
    the clusters and rebuilds their buffers with a hysteresis (module
    docstring, "Re-clustering"); ``charged_buffer``: A, charged residues
    within it join the buffer too
    (:func:`qrefine.fragments.fragment.charged_and_near`).
    """

    def __init__(self, model, engine="xtb", method=None, options=None,
                 max_cluster_residues=DEFAULT_MAX_CLUSTER_RESIDUES, buffer=DEFAULT_BUFFER,
                 recluster_shift=DEFAULT_RECLUSTER_SHIFT, cap_gradients="project",
                 nproc=1, threads=None, residue_charges=None, ligand_charges=None,
                 contact_cutoff=4.0, failed_dir=None, executor=None, backend="local",
                 scheduler=None, reporter=None, environment=None, correction="none",
                 correction_refresh=DEFAULT_REFRESH, part=None, part_as_one=False,
                 keep_clusters=False, charged_buffer=None):
        if correction not in CORRECTIONS:
            raise QRefineError("fragments.correction must be one of %s, got %r"
                               % (", ".join(CORRECTIONS), correction))
        if correction != "none" and environment is not None:
            raise QRefineError("fragments.correction=%s needs the whole model's gradient, "
                               "which with crystal symmetry copies qrefine does not compute "
                               "for fragments; set symmetry.expand=false or "
                               "fragments.correction=none" % correction)
        if cap_gradients not in CAP_GRADIENTS:
            raise QRefineError("cap_gradients must be one of %s, got %r"
                               % (", ".join(CAP_GRADIENTS), cap_gradients))
        if buffer < 0:
            raise QRefineError("buffer must be >= 0 A, got %s" % buffer)
        if charged_buffer is not None and charged_buffer < 0:
            raise QRefineError("fragments.charged_buffer must be >= 0 A, got %s"
                               % charged_buffer)
        module = engines.engine_module(engine)
        ok, hint = module.availability()
        if not ok:
            raise engines.EngineUnavailable("engine %s is not available here: %s"
                                            % (engine, hint))
        self.engine = engine
        self.method = engines.resolve_method(module, method)
        self.model = model
        self.max_cluster_residues = int(max_cluster_residues)
        self.buffer = float(buffer)
        self.charged_buffer = None if charged_buffer is None else float(charged_buffer)
        self.recluster_shift = float(recluster_shift)
        self.keep_clusters = bool(keep_clusters)
        self.cap_gradients = cap_gradients
        self.contact_cutoff = float(contact_cutoff)
        if residue_charges is None:
            residue_charges = [r.charge for r in charges_of(model, ligand_charges)]
        self.residue_charges = [int(c) for c in residue_charges]
        self.environment = environment
        self._extended = None
        if environment is not None:
            self._extended = extended_residues(model, environment)
            self.residue_charges += [self.residue_charges[r] for r, _ in environment.copies]
        self.part = None if part is None else np.asarray(part, dtype=int)
        self.part_as_one = bool(part_as_one)
        self.reporter = reporter
        if executor is None:
            if backend == "dask":
                executor = DaskExecutor(engine, self.method, options, failed_dir,
                                        scheduler=scheduler, threads=int(threads or 1),
                                        progress=self._progress)
            elif backend != "local":
                raise QRefineError("backend must be local or dask, got %r" % (backend,))
            elif (int(nproc) > 1 and usable_cores() > 1) or _timed_in_process(module, options):
                # A worker per core at most: more only wait on each other
                # (nproc=10000 used to start 10000 processes).  An in-process
                # engine with qm.timeout gets a worker even with nproc=1: the
                # worker is what can be ended when a call hangs.
                workers = max(1, min(int(nproc), usable_cores()))
                threads = threads or max(1, usable_cores() // workers)
                executor = ProcessExecutor(engine, self.method, options, failed_dir,
                                           nproc=workers, threads=int(threads),
                                           progress=self._progress)
            else:
                executor = SerialExecutor(engine, self.method, options, failed_dir,
                                          progress=self._progress)
        elif getattr(executor, "progress", False) is None:
            executor.progress = self._progress
        self.executor = executor
        self.graph = None
        self.clusters = None
        self.fragments = None
        self.clustered_at = None
        self.n_clusterings = 0
        self.requests = 0
        self.n_gradients = 0   # fragment gradients computed (cache hits not counted)
        self.seconds = 0.0
        self._path = PathValue(memory=HISTORY)  # the value; see the module docstring
        self.correction = None
        if correction == "whole_model":
            self.correction = WholeModelCorrection(
                self._whole_model_source(model, options, failed_dir), correction_refresh)

    def _whole_model_source(self, model, options, failed_dir):
        symbols = [symbol_of(a) for a in model.get_hierarchy().atoms()]
        charge = sum(self.residue_charges)
        return QMRestraints(symbols, self.engine, self.method, charge=charge,
                            multiplicity=check_multiplicity(electron_count(symbols, charge)),
                            options=options, failed_dir=failed_dir,
                            label="whole model (fragments.correction)")

    def _progress(self, done, total):
        if self.reporter is None:
            return
        if done < total:
            self.reporter.progress("fragments", done, total)
        else:
            self.reporter.end_progress()

    # -- clustering ---------------------------------------------------------

    def cluster(self, sites_cart):
        """(Re)build graph, clusters and fragments at ``sites_cart``."""
        sites = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
        # With keep_clusters, graph and partition are made once, at the
        # first call: spectral bisection is global, so a new partition after
        # a 1 A move shares almost no fragment with the last (5ly6: 1 of 35)
        # and every fragment starts its engine cold.  Any partition is exact
        # for the cluster atoms' share; the buffers, rebuilt with a
        # hysteresis, carry the accuracy, and they read only the graph's
        # residues and links, which do not move.  Not the default: a kept
        # fragment keeps the GFN-FF topology of the geometry it was first
        # built at (benchmarks/README.md, "Re-clustering").
        keep = self.keep_clusters and self.fragments is not None
        links = None if self.graph is None else self.graph.links  # keep the topology
        if not keep and self.environment is None:
            self.graph = residue_graph(self.model, sites, contact_cutoff=self.contact_cutoff,
                                       links=links)
            self.clusters = self._clusters_of(self.graph)
        elif not keep:
            # Clusters of model residues; the graph that fragments are cut
            # from also holds the copies.
            model_links = None if self.graph is None else self._model_links
            model_graph = residue_graph(self.model, sites, contact_cutoff=self.contact_cutoff,
                                        links=model_links)
            self._model_links = model_graph.links
            self.clusters = self._clusters_of(model_graph)
            self.graph = residue_graph(None, self._all_sites(sites),
                                       contact_cutoff=self.contact_cutoff, links=links,
                                       residues=self._extended)
        self.fragments = make_fragments(self.graph, self.clusters, self._all_sites(sites),
                                        self.buffer, self.residue_charges,
                                        previous=self.fragments if keep else None,
                                        charged_buffer=self.charged_buffer)
        # Named once per clustering, not on every gradient.
        self._names = [fragment_name(self.graph, f) for f in self.fragments]
        self.clustered_at = sites.copy()
        self.n_clusterings += 1
        self.executor.retain([f.key() for f in self.fragments])
        return self.fragments

    def _clusters_of(self, graph):
        """The clusters to compute: all, or those holding the part."""
        if self.part is None:
            return cluster_residues(graph, self.max_cluster_residues)
        if self.part_as_one:
            return [self.part]
        return [c for c in cluster_residues(graph, self.max_cluster_residues)
                if np.isin(c, self.part).any()]

    def _all_sites(self, sites):
        """Model sites followed by the environment's (when there is one)."""
        if self.environment is None:
            return sites
        return np.concatenate([sites, self.environment.sites(sites)])

    def _needs_clustering(self, sites):
        if self.fragments is None:
            return True
        shift = np.sqrt(((sites - self.clustered_at) ** 2).sum(axis=1)).max()
        return shift > self.recluster_shift

    # -- RestraintSource ----------------------------------------------------

    def gradient(self, sites_cart):
        """(N, 3) assembled fragment gradient in kcal/mol/A, and the
        fragment energies (kcal/mol, each relative to its first) as a list."""
        sites = np.asarray(sites_cart, dtype=float).reshape(-1, 3)
        if self._needs_clustering(sites):
            self.cluster(sites)
        t0 = time.time()
        results = self.executor.run(self.fragment_jobs(sites))
        self.n_gradients += 1
        if self.reporter is not None:
            # A QM gradient takes seconds to minutes: one plain line in the
            # log for each, so a piped or batch run shows its progress too.
            self.reporter.log_line("QM gradient %d: %d fragments in %.1f s"
                                   % (self.n_gradients, len(results), time.time() - t0))
        return self.assemble(results, sites), [e for e, _ in results]

    def fragment_jobs(self, sites_cart):
        """One executor job per fragment at the model sites ``sites_cart``:
        (key, symbols, charge, multiplicity, positions, name)."""
        sites = self._all_sites(np.asarray(sites_cart, dtype=float).reshape(-1, 3))
        return [(f.key(), fragment_symbols(self.graph, f), f.charge, f.multiplicity,
                 fragment_positions(f, sites), name)
                for f, name in zip(self.fragments, self._names)]

    def assemble(self, results, sites_cart):
        """The model gradient (N, 3) from one (energy, fragment gradient)
        per fragment: each cluster atom's from its own fragment, cap H
        gradients projected (or dropped) by ``cap_gradients``."""
        n_model = len(sites_cart)
        sites = self._all_sites(np.asarray(sites_cart, dtype=float).reshape(-1, 3))
        grad = np.zeros_like(sites)
        for f, (_, g) in zip(self.fragments, results):
            n_cluster = len(f.cluster_atoms)
            grad[f.cluster_atoms] = g[:n_cluster]
            if self.cap_gradients == "project" and f.caps:
                owned = set(int(i) for i in f.cluster_atoms)
                n_real = n_cluster + len(f.buffer_atoms)
                for c, cap in enumerate(f.caps):
                    if cap.inside not in owned and cap.outside not in owned:
                        continue
                    gx, gy = project_cap_gradient(g[n_real + c], sites[cap.inside],
                                                  sites[cap.outside], cap.distance)
                    if cap.inside in owned:
                        grad[cap.inside] += gx
                    if cap.outside in owned:
                        grad[cap.outside] += gy
        return grad[:n_model]

    def value_and_gradient(self, sites_cart):
        sites = np.array(sites_cart, dtype=float).reshape(-1, 3)
        self.requests += 1
        seen = self._path.cached(sites)
        fix = self.correction
        if fix is not None and fix.due(sites, self._needs_clustering(sites)):
            t0 = time.time()
            if seen is not None and not self._needs_clustering(sites):
                raw = seen[1] - fix.c  # this point's fragment gradient, already computed
            else:
                raw, _ = self.gradient(sites)
            # The new correction moves the whole gradient field by a
            # constant: the stored points move with it (module docstring).
            self._path.add_to_gradients(fix.take(sites, raw))
            self.seconds += time.time() - t0
            grad = fix.apply(raw)
            if seen is not None:  # stored already, and shifted with the rest
                return seen[0], grad.copy()
            return self._path.value(sites, grad), grad.copy()
        if seen is not None:
            return seen
        t0 = time.time()
        grad, _ = self.gradient(sites)
        if fix is not None:
            grad = fix.apply(grad)
        self.seconds += time.time() - t0
        return self._path.value(sites, grad), grad.copy()

    def start_cycle(self, sites_cart):
        """A new macro cycle: the delta correction is taken again at its first gradient."""
        if self.correction is not None:
            self.correction.mark_stale()

    def describe(self):
        text = "%s %s on fragments (clusters of at most %d residues, %.1f A buffer)" % (
            self.engine, self.method, self.max_cluster_residues, self.buffer)
        if self.correction is not None:
            text += ", corrected by the whole-model gradient each macro cycle"
            if self.correction.refresh is not None:
                text += " and after %g A of atom shift" % self.correction.refresh
        return text

    def symmetry_summary(self):
        env = getattr(self, "environment", None)
        return env.summary() if env is not None else None

    def summary(self):
        """Plain numbers about the current fragmentation."""
        if self.fragments is None:
            return {}
        sizes = [f.n_atoms for f in self.fragments]
        return {"clusters": len(self.fragments),
                "cluster_residues": [len(c) for c in self.clusters],
                "fragment_atoms": sizes,
                "mean_fragment_atoms": float(np.mean(sizes)),
                "max_cluster_residues": self.max_cluster_residues, "buffer": self.buffer,
                "symmetry_copies": 0 if self.environment is None else len(self.environment.copies),
                "clusterings": self.n_clusterings}

    def timing(self):
        out = {"engine_requests": self.requests, "fragment_total_s": round(self.seconds, 3),
               "clusterings": self.n_clusterings}
        if hasattr(self.executor, "stats"):
            out.update(self.executor.stats())
        if self.correction is not None:
            out.update(self.correction.timing())
        return out

    def close(self):
        """Stop worker processes (if any) and release the calculators."""
        self.executor.close()
