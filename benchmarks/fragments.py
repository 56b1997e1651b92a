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

Part 3 (``--sizes``, no QM, seconds): the fragments each
max_cluster_residues/buffer[/charged_buffer] of ``--settings`` makes on each model, and the clustered
gradient's cost predicted from their sizes alone, sum(n_atoms ** p) with
p = ``--cost-power`` (2.6: cold GFN2-xTB fragments of 3j63_A, one thread,
took 0.95, 4.9 and 58 CPU s at 182, 354 and 898 atoms on average,
benchmarks/README.md section 3), relative to the first model, and the
exponent in atom count that this predicts.  What it shows: whether a
setting's cost grows with the number of fragments only, or also with their
size.

    python benchmarks/fragments.py [--method GFN2-xTB] [--nproc 1]
        [--clusters 5 10 15 20] [--buffers 4 6 8] [--grid] [--scaling]
        [--models 3j63 5fn5 5ly6 1oed] [--max-seconds 900]
    python benchmarks/fragments.py --sizes [--settings 15/8 8/8 4/8 15/3.5 8/3.5]
        [--models 3j63 5ly6 1oed] [--cost-power 2.6]

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


def sizes(args):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    settings = [(int(p[0]), float(p[1]), float(p[2]) if len(p) > 2 else None)
                for p in (setting.split("/") for setting in args.settings)]
    rows, first = [], {}
    for name in args.models:
        model, sites = load(name)
        for clusters, buffer, charged in settings:
            source = FragmentQMRestraints(model, "xtb", args.method, nproc=1,
                                          max_cluster_residues=clusters, buffer=buffer,
                                          charged_buffer=charged)
            try:
                source.cluster(sites)
                n = np.array(source.summary()["fragment_atoms"], dtype=float)
            finally:
                source.close()
            cost = float((n ** args.cost_power).sum())
            ref = first.setdefault((clusters, buffer, charged), (len(sites), cost))
            exponent = (np.log(cost / ref[1]) / np.log(len(sites) / ref[0])
                        if len(sites) != ref[0] else None)
            rows.append("| %s | %d | %d / %g A%s | %d | %.0f | %d | %.1f | %s |" % (
                name, len(sites), clusters, buffer,
                "" if charged is None else " / charged %g A" % charged,
                len(n), n.mean(), n.max(), cost / ref[1],
                "-" if exponent is None else "%.2f" % exponent))
            print(rows[-1], flush=True)
    print("\n| model | atoms | clusters / buffer | fragments | mean atoms | max atoms | "
          "predicted cost, x %s | predicted exponent from %s |" % (args.models[0], args.models[0]))
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("predicted cost: sum over fragments of n_atoms ** %g" % args.cost_power)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="GFN2-xTB")
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("--clusters", type=int, nargs="+", default=[5, 10, 15, 20])
    p.add_argument("--buffers", type=float, nargs="+", default=[4.0, 6.0, 8.0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--grid", action="store_true", help="only part 1")
    p.add_argument("--scaling", action="store_true", help="only part 2")
    p.add_argument("--sizes", action="store_true", help="only part 3 (no QM)")
    p.add_argument("--settings", nargs="+", default=["15/8", "8/8", "4/8", "15/3.5", "8/3.5"],
                   help="part 3: max_cluster_residues/buffer[/charged_buffer]")
    p.add_argument("--cost-power", type=float, default=2.6,
                   help="part 3: a fragment's cost grows as n_atoms ** this")
    p.add_argument("--max-seconds", type=float, default=900.0,
                   help="skip whole-model gradients predicted to take longer")
    args = p.parse_args()
    if args.sizes:
        sizes(args)
        return
    if not args.scaling:
        grid(args)
        print()
    if not args.grid:
        scaling(args)


if __name__ == "__main__":
    main()
