"""Fragment gradients: time and error against cluster size and buffer, and
time against model size.

Part 1 (``--grid``): for 3j63_A (1436 atoms) one whole-model gradient is the
reference; for each (max_cluster_residues, buffer) pair the fragment
gradient is computed and timed, and its per-atom error (norm of the
difference, kcal/mol/A) reported as RMS and max, with the number of clusters
and the mean fragment size.

Part 2 (``--scaling``): one clustered gradient with the default settings on
models of increasing size (3j63_A, 5fn5_C, 5ly6, 1oed, all with H), with the
whole-model gradient where it is predicted to finish within --max-seconds.

    python benchmarks/fragments.py [--method GFN2-xTB] [--nproc 1]
        [--clusters 5 10 15 20] [--buffers 4 6 8] [--grid] [--scaling]
        [--models 3j63 5fn5 5ly6 1oed] [--max-seconds 900]

GFN2-xTB is the default method; --method GFN-FF gives the same tables in
minutes (its errors are those of the force field, not of GFN2).
"""

import argparse
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import read_model
MODELS = {
    "3j63": "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb",
    "5fn5": "structures/cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb",
    "5ly6": "structures/cryo_em/5ly6/5ly6_box_complete.pdb",
    "1oed": "structures/cryo_em/1oed/1oed_box_complete.pdb",
}


def load(name):
    model = read_model(MODELS[name])
    return model, model.get_sites_cart().as_numpy_array()


def fragment_source(model, method, clusters, buffer, nproc):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    return FragmentQMRestraints(model, "xtb", method, max_cluster_residues=clusters,
                                buffer=buffer, nproc=nproc)


def whole_gradient(model, sites, method):
    from qrefine.model.charges import total_charge
    from qrefine.restraints.qm import QMRestraints
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    whole = QMRestraints(symbols, "xtb", method, charge=total_charge(model))
    t0 = time.time()
    _, grad = whole.value_and_gradient(sites)
    return grad, time.time() - t0


def clustered(model, sites, method, clusters, buffer, nproc):
    source = fragment_source(model, method, clusters, buffer, nproc)
    try:
        t0 = time.time()
        source.cluster(sites)
        t_cluster = time.time() - t0
        t0 = time.time()
        grad, _ = source.gradient(sites)
        t_grad = time.time() - t0
        s = source.summary()
    finally:
        source.close()
    return grad, t_grad, t_cluster, s


def grid(args):
    model, sites = load("3j63")
    print("3j63_A (%d atoms), xtb %s, nproc %d" % (len(sites), args.method, args.nproc))
    reference, t_whole = whole_gradient(model, sites, args.method)
    print("whole-model gradient: %.1f s, RMS |g| %.2f kcal/mol/A"
          % (t_whole, np.sqrt((np.linalg.norm(reference, axis=1) ** 2).mean())))
    print("%8s %7s %8s %10s %9s %9s %9s" % ("cluster", "buffer", "clusters", "mean atoms",
                                             "time s", "RMS err", "max err"))
    for c in args.clusters:
        for b in args.buffers:
            grad, t, _, s = clustered(model, sites, args.method, c, b, args.nproc)
            err = np.linalg.norm(grad - reference, axis=1)
            print("%8d %7.1f %8d %10.1f %9.1f %9.3f %9.3f" % (
                c, b, s["clusters"], s["mean_fragment_atoms"], t,
                np.sqrt((err ** 2).mean()), err.max()), flush=True)
    print("errors: kcal/mol/A, per atom, against the whole-model gradient")


def scaling(args):
    print("clustered gradient with the defaults (15 residues, 8 A buffer), xtb %s, "
          "nproc %d" % (args.method, args.nproc))
    print("%6s %7s %8s %10s %10s %10s" % ("model", "atoms", "clusters", "mean atoms",
                                          "frag s", "whole s"))
    per_atom2 = None
    for name in args.models:
        model, sites = load(name)
        _, t, _, s = clustered(model, sites, args.method, 15, 8.0, args.nproc)
        whole = "skipped"
        if per_atom2 is None or per_atom2 * len(sites) ** 2 < args.max_seconds:
            _, t_whole = whole_gradient(model, sites, args.method)
            per_atom2 = t_whole / len(sites) ** 2
            whole = "%.1f" % t_whole
        print("%6s %7d %8d %10.1f %10.1f %10s" % (name, len(sites), s["clusters"],
                                                  s["mean_fragment_atoms"], t, whole),
              flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="GFN2-xTB")
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("--clusters", type=int, nargs="+", default=[5, 10, 15, 20])
    p.add_argument("--buffers", type=float, nargs="+", default=[4.0, 6.0, 8.0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--grid", action="store_true", help="only part 1")
    p.add_argument("--scaling", action="store_true", help="only part 2")
    p.add_argument("--max-seconds", type=float, default=900.0,
                   help="skip whole-model gradients predicted to take longer")
    args = p.parse_args()
    if not args.scaling:
        grid(args)
        print()
    if not args.grid:
        scaling(args)


if __name__ == "__main__":
    main()
