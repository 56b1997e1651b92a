"""Cores for clustered QM on a 2-core machine: processes or threads, and
what a warm repeat call saves (issue 15, must-have 2).

One clustered GFN2-xTB gradient of 3j63_A (clusters of --clusters residues,
--buffer A; default 8 / 3.5, the cheap clustering) with the 2 cores used as
2 worker processes of 1 thread, as 1 process of 2 OpenMP threads, or 1 of 1;
each layout cold (first call: clustering, set-up, SCF from scratch) and warm
(the same source after every atom moved by 0.005 A, as between two L-BFGS
steps: xtb starts from the previous wavefunction), with and without that
warm start.  Wall seconds.

    python benchmarks/threads.py [--clusters 8] [--buffer 3.5]
"""

import argparse
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import read_model

MODEL = "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb"


def timed_pair(model, sites, nproc, threads, warm_start, clusters, buffer):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    source = FragmentQMRestraints(model, "xtb", "GFN2-xTB", nproc=nproc, threads=threads,
                                  max_cluster_residues=clusters, buffer=buffer,
                                  options={"warm_start": warm_start})
    try:
        t0 = time.time()
        source.gradient(sites)
        cold = time.time() - t0
        moved = sites + np.random.default_rng(0).uniform(-0.005, 0.005, sites.shape)
        t0 = time.time()
        source.gradient(moved)
        warm = time.time() - t0
    finally:
        source.close()
    return cold, warm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=8)
    ap.add_argument("--buffer", type=float, default=3.5)
    args = ap.parse_args()
    model = read_model(MODEL)
    sites = model.get_sites_cart().as_numpy_array()
    print("3j63_A, clustered GFN2-xTB gradient (%d residues, %.1f A buffer), wall s"
          % (args.clusters, args.buffer))
    print("| processes x threads | warm start | cold s | warm s | warm / cold |")
    print("|---|---|---|---|---|")
    for nproc, threads, warm_start in ((2, 1, True), (1, 2, True), (1, 1, True), (2, 1, False)):
        cold, warm = timed_pair(model, sites, nproc, threads, warm_start, args.clusters,
                                args.buffer)
        print("| %d x %d | %s | %.1f | %.1f | %.2f |" % (nproc, threads,
                                                        "yes" if warm_start else "no",
                                                        cold, warm, warm / cold), flush=True)


if __name__ == "__main__":  # worker processes import this file too
    main()
