"""Re-clustering cost: fragments kept across a move, and what that saves.

A refinement on fragments rebuilds them when an atom has moved more than
``fragments.recluster_shift`` (1 A) since they were built; every fragment
whose atoms changed starts its engine cold (GFN-FF: its topology set-up).
For each model, with ``--nproc`` worker processes and GFN-FF (or
``--method``), at the defaults (15 residues, 8 A buffer):

- cold: the first gradient at the start model x0;
- warm: the next, after a 0.005 A move (no rebuild);
- re-clustered: at x1, a point past the recluster shift, rebuilt with
  ``fragments.keep_clusters=true`` (clusters kept, buffers with
  hysteresis), and how many fragments kept their atoms;
- new partition: a fresh source at x1 (its own clusters and buffers, every
  engine cold, as the default re-clustering does), and how many of its
  fragments equal one of x0's;
- the RMS / max difference between the two x1 gradients (kcal/mol/A): the
  fragments differ (partition, larger buffers), and with GFN-FF so does the
  topology of the kept fragments (built at x0, the others at x1).

x1: the start refined for ``--iterations`` L-BFGS steps with library
restraints into its map (a real refinement path), the move scaled so the
largest atom shift is ``--shift`` A.

    python benchmarks/recluster.py [--models 3j63 5ly6] [--nproc 2] [--shift 1.05]
"""

import argparse
import os
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import DATA

MODELS = {
    "3j63": ("structures/cryo_em/3j63_A/3j63_A_box_complete.pdb",
             "structures/cryo_em/3j63_A/3j63_A_box.ccp4", 3.8),
    "5fn5": ("structures/cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb",
             "structures/cryo_em/5fn5_C/5fn5_chain_c_box.ccp4", 4.3),
    "5ly6": ("structures/cryo_em/5ly6/5ly6_box_complete.pdb",
             "structures/cryo_em/5ly6/5ly6_box.ccp4", 4.0),
}


def moved_point(model, map_path, resolution, iterations, shift):
    """x0 and x1 (see the module docstring)."""
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.refine.macro_cycles import refine
    from qrefine.restraints.cctbx_geometry import CctbxGeometry
    x0 = model.get_sites_cart().as_numpy_array()
    data = RealSpaceTarget(model, read_map(os.path.join(DATA, map_path)), resolution)
    x, _ = refine(x0, CctbxGeometry(model), data, macro_cycles=1,
                  max_iterations=iterations)
    d = x - x0
    return x0, x0 + d * (shift / np.linalg.norm(d, axis=1).max())


def timed_gradient(source, sites):
    t0 = time.time()
    grad = source.value_and_gradient(sites)[1]
    return time.time() - t0, grad


def measure(name, args):
    from qrefine.model import chem_data
    from qrefine.model.io import read_model
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    chem_data.activate(os.path.join(DATA, "chem_data"))
    path, map_path, resolution = MODELS[name]
    model = read_model(os.path.join(DATA, path))
    x0, x1 = moved_point(model, map_path, resolution, args.iterations, args.shift)
    source = FragmentQMRestraints(model, "xtb", args.method, nproc=args.nproc,
                                  keep_clusters=True)
    fresh = FragmentQMRestraints(model, "xtb", args.method, nproc=args.nproc)
    try:
        cold, _ = timed_gradient(source, x0)
        keys0 = set(f.key() for f in source.fragments)
        warm, _ = timed_gradient(source, x0 + np.random.default_rng(0).uniform(
            -0.005, 0.005, x0.shape))
        rebuilt, g_kept = timed_gradient(source, x1)
        assert source.n_clusterings == 2, "x1 did not trigger a re-clustering"
        kept = sum(f.key() in keys0 for f in source.fragments)
        anew, g_new = timed_gradient(fresh, x1)
        same_new = sum(f.key() in keys0 for f in fresh.fragments)
        diff = np.linalg.norm(g_kept - g_new, axis=1)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            np.savez(os.path.join(args.out, "recluster_%s.npz" % name), x0=x0, x1=x1,
                     kept=g_kept, new=g_new)
        n = len(source.fragments)
        return ("| %s | %d | %d | %.1f | %.1f | %.1f (%d of %d kept) | %.1f (%d of %d as at x0) "
                "| %.2f / %.2f |" % (name, len(x0), n, cold, warm, rebuilt, kept, n, anew,
                                     same_new, len(fresh.fragments),
                                     np.sqrt((diff ** 2).mean()), diff.max()))
    finally:
        source.close()
        fresh.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["3j63", "5ly6"], choices=list(MODELS))
    ap.add_argument("--method", default="GFN-FF")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--shift", type=float, default=1.05,
                    help="largest atom shift of x1, A (past recluster_shift, 1 A)")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--out", help="save x0, x1 and both x1 gradients here (npz per model)")
    args = ap.parse_args()
    print("xtb %s on fragments (15 residues, 8 A), %d processes; wall s of one gradient; "
          "x1: largest atom shift %.2f A" % (args.method, args.nproc, args.shift))
    print("\n| model | atoms | fragments | cold s | warm s | re-clustered s | new partition s "
          "| x1 gradients, RMS / max difference |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name in args.models:
        print(measure(name, args), flush=True)


if __name__ == "__main__":
    main()
