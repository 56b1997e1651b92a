"""What xtb's ``accuracy`` (``qm.accuracy``) buys a clustered GFN2-xTB
gradient: CPU seconds against the error it adds (issue 15, engine cost per
call).

xtb's accuracy factor loosens the SCF convergence thresholds and the
integral and neighbour-list cut-offs together (larger is looser; 1 is the
default).  3j63_A (1436 atoms), GBSA water, one OpenMP thread, CPU seconds
of this process.  For each ``--settings`` (max_cluster_residues/buffer) and
each ``--accuracies``: the fragment gradient at the start model x0 (cold:
new calculators) and at x0 moved by 0.05 A RMS along a seeded random
direction (warm: each SCF from the previous one's).  Errors (RMS / max
per-atom norm, kcal/mol/A) against the same fragments at accuracy 1
(what the accuracy itself costs) and against the whole model at accuracy
1 at x0 (the issue's reference; taken from fragment_delta.py's cache when
its points match, else computed, about 185 CPU s).

    python benchmarks/xtb_accuracy.py [--settings 8/2 8/3.5]
        [--accuracies 1 3 10 30] [--whole-cache DIR] [--out DIR]
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: CPU s comparable to the issue's

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import HERE, read_model
from fragment_delta import MODEL, METHOD, OPTIONS, errors, points, whole_model

SHIFT = 0.05


def fragment_gradients(model, sites_at, clusters, buffer, accuracy, out):
    """{shift: (gradient, CPU s)} of one fragment source at ``accuracy``,
    cached per setting."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    cache = os.path.join(out, "acc_%d_%.1f_%g.npz" % (clusters, buffer, accuracy))
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        if all(np.allclose(z["sites_%d" % i], sites_at[s])
               for i, s in enumerate(sorted(sites_at))):
            return ({s: (z["grad_%d" % i], float(z["cpu_%d" % i]))
                     for i, s in enumerate(sorted(sites_at))}, z["summary"].item())
    source = FragmentQMRestraints(model, "xtb", METHOD,
                                  options=dict(OPTIONS, accuracy=float(accuracy)),
                                  max_cluster_residues=clusters, buffer=buffer, nproc=1,
                                  recluster_shift=100.0)
    result = {}
    try:
        for s in sorted(sites_at):
            t0 = time.process_time()
            _, grad = source.value_and_gradient(sites_at[s])
            result[s] = (grad, time.process_time() - t0)
            print("%d/%.1f accuracy %g at %.3f A: %.1f CPU s"
                  % (clusters, buffer, accuracy, s, result[s][1]), flush=True)
        summary = source.summary()
    finally:
        source.close()
    arrays = {}
    for i, s in enumerate(sorted(sites_at)):
        arrays.update({"sites_%d" % i: sites_at[s], "grad_%d" % i: result[s][0],
                       "cpu_%d" % i: result[s][1]})
    np.savez(cache, summary=np.array(summary, dtype=object), **arrays)
    return result, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=["8/2", "8/3.5"],
                    help="max_cluster_residues/buffer pairs")
    ap.add_argument("--accuracies", nargs="+", type=float, default=[1.0, 3.0, 10.0, 30.0])
    ap.add_argument("--whole-cache", default=os.path.join(HERE, "results", "fragment_delta"),
                    help="fragment_delta.py's cache (its whole_0.000.npz is the reference)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "xtb_accuracy"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.whole_cache, exist_ok=True)
    model = read_model(MODEL)
    x0 = model.get_sites_cart().as_numpy_array()
    sites_at = points(x0, [SHIFT])
    whole = whole_model(model, {0.0: x0}, args.whole_cache)[0.0]
    accuracies = sorted(set([1.0] + list(args.accuracies)))
    lines = ["3j63_A (%d atoms), %s, GBSA water, 1 thread; whole model (accuracy 1) %.1f CPU "
             "s cold at x0." % (len(x0), METHOD, whole[1]), "",
             "| clusters / buffer | fragments, mean atoms | accuracy | CPU s cold at x0 | "
             "CPU s warm at %.2f A | error vs accuracy 1, x0 | error vs accuracy 1, moved | "
             "error vs whole model, x0 |" % SHIFT,
             "|---|---|---|---|---|---|---|---|"]
    for pair in args.settings:
        clusters, buffer = int(pair.split("/")[0]), float(pair.split("/")[1])
        runs = {a: fragment_gradients(model, sites_at, clusters, buffer, a, args.out)
                for a in accuracies}
        tight = runs[1.0][0]
        for a in accuracies:
            res, summary = runs[a]
            lines.append("| %d / %g A | %d, %.0f | %g | %.1f | %.1f | %.3f / %.3f | %.3f / %.3f "
                         "| %.2f / %.2f |" % (
                             (clusters, buffer, summary["clusters"],
                              summary["mean_fragment_atoms"], a, res[0.0][1], res[SHIFT][1])
                             + errors(res[0.0][0], tight[0.0][0])
                             + errors(res[SHIFT][0], tight[SHIFT][0])
                             + errors(res[0.0][0], whole[0])))
    text = "\n".join(lines + ["", "Errors: RMS / max per-atom norm of the gradient "
                              "difference, kcal/mol/A."])
    print("\n" + text)
    with open(os.path.join(args.out, "xtb_accuracy.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
