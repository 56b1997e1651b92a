"""qr.fragments: how a model is cut into QM fragments and, on request, how
far the fragment gradient is from the whole-model one."""

from dataclasses import dataclass
import time

import numpy as np

from qrefine.model.io import read_model
from qrefine.restraints.fragment_qm import FragmentQMRestraints
from qrefine.restraints.qm import QMRestraints


@dataclass(frozen=True)
class FragmentRow:
    index: int
    cluster_residues: int
    buffer_residues: int
    atoms: int
    caps: int
    charge: int
    multiplicity: int
    residues: tuple        # residue labels of the cluster


@dataclass(frozen=True)
class GradientComparison:
    """The fragment gradient against the whole-model one, kcal/mol/A."""
    rms_error: float
    max_error: float
    reference_rms: float
    fragments_s: float
    whole_s: float
    worst: tuple           # (atom id, error, |reference gradient|), worst first


@dataclass(frozen=True)
class FragmentReport:
    model_path: str
    n_atoms: int
    n_residues: int
    method: str
    clustering_s: float
    fragments: tuple       # FragmentRow
    comparison: GradientComparison = None

    @property
    def sizes(self):
        return [f.atoms for f in self.fragments]


def run(model_path, engine="xtb", method=None, options=None, max_cluster_residues=15,
        buffer=8.0, nproc=1, cap_gradients="project", ligand_charges=None,
        contact_cutoff=4.0, compare=False, charged_buffer=None):
    """Cluster ``model_path`` (a model with H) and describe its fragments;
    with ``compare`` also compute both gradients with the engine.
    ``charged_buffer``: charged residues within this distance (A) join the
    buffers too."""
    model = read_model(model_path, make_restraints=False)
    sites = np.array(model.get_sites_cart())
    source = FragmentQMRestraints(
        model, engine, method, options=options, max_cluster_residues=max_cluster_residues,
        buffer=buffer, nproc=nproc, cap_gradients=cap_gradients,
        ligand_charges=ligand_charges, contact_cutoff=contact_cutoff,
        charged_buffer=charged_buffer)
    try:
        t0 = time.time()
        fragments = source.cluster(sites)
        t_cluster = time.time() - t0
        graph = source.graph
        rows = tuple(FragmentRow(
            index=f.index, cluster_residues=len(f.cluster_residues),
            buffer_residues=len(f.buffer_residues), atoms=f.n_atoms, caps=len(f.caps),
            charge=f.charge, multiplicity=f.multiplicity,
            residues=tuple(graph.residues[i].label for i in f.cluster_residues))
            for f in fragments)
        comparison = (_compare(source, model, sites, graph, engine, options)
                      if compare else None)
        return FragmentReport(model_path=model_path, n_atoms=len(sites),
                              n_residues=graph.n_residues, method=source.method,
                              clustering_s=t_cluster, fragments=rows, comparison=comparison)
    finally:
        source.close()


def _compare(source, model, sites, graph, engine, options):
    t0 = time.time()
    grad, _ = source.gradient(sites)
    t_frag = time.time() - t0
    symbols = [e.capitalize() for e in graph.elements]
    whole = QMRestraints(symbols, engine, source.method, options=options,
                         charge=sum(source.residue_charges))
    t0 = time.time()
    _, reference = whole.value_and_gradient(sites)
    t_whole = time.time() - t0
    err = np.linalg.norm(grad - reference, axis=1)
    atoms = model.get_hierarchy().atoms()
    worst = tuple((atoms[int(i)].id_str().strip(), float(err[i]),
                   float(np.linalg.norm(reference[i])))
                  for i in np.argsort(-err, kind="stable")[:5])
    return GradientComparison(
        rms_error=float(np.sqrt((err ** 2).mean())), max_error=float(err.max()),
        reference_rms=float(np.sqrt((np.linalg.norm(reference, axis=1) ** 2).mean())),
        fragments_s=t_frag, whole_s=t_whole, worst=worst)
