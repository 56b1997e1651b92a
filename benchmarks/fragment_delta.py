"""Delta-corrected fragments: the whole model's gradient at a reference point
corrects the fragment gradient nearby (issue 15, must-have 1).

    g(x) = g_frag(x) + g_whole(x0) - g_frag(x0)

3j63_A (1436 atoms), GFN2-xTB, GBSA water (as every qrefine xtb call), one
OpenMP thread, CPU seconds of this process.  The points: the start model x0
and x0 moved along one fixed random direction (per-atom Gaussian, seeded) by
``--shifts`` A RMS, in increasing order, as a refinement moves away from the
point where the correction was taken; with ``--descent``, downhill along the
whole-model gradient at x0 instead (a first L-BFGS step), ``--shifts`` being
the largest atom shift.  At each point: the whole-model
gradient (one calculator, so each SCF starts from the previous point's, as a
refresh in a refinement would), and for each ``--settings``
(max_cluster_residues/buffer) the fragment gradient of
``FragmentQMRestraints``, corrected by
``qrefine.restraints.fragment_correction.WholeModelCorrection`` taken at x0
and never refreshed (the error a refresh threshold bounds).  Clustering is
kept from x0 (``recluster_shift`` large), as the correction assumes.  Errors are per-atom norms of the
difference from the whole-model gradient at the same point, kcal/mol/A.

Cost: a fragment gradient's CPU s at x0 (cold) and at the other points
(warm: each fragment's SCF starts from its previous one); amortised per
gradient with a refresh every K gradients: the mean warm fragment gradient
+ the cold whole model / K (the refresh point's fragment gradient is one of
the K).

    python benchmarks/fragment_delta.py [--settings 8/2 8/3.5 15/3.5]
        [--shifts 0.05 0.1 0.2 0.3] [--descent] [--only whole|fragments]
        [--tracked-by GFN-FF] [--out DIR]
    python benchmarks/fragment_delta.py --descent --shifts 0.2

``--only`` computes one half (the two halves can run at once on two
cores); results are cached in DIR (default benchmarks/results/fragment_delta)
and a run without ``--only`` computes what is missing and prints the table.
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: CPU s comparable to the issue's

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import HERE, read_model

MODEL = "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb"
METHOD = "GFN2-xTB"
OPTIONS = {"solvent": "water", "threads": 1}
SEED = 15
KS = (5, 10, 20)


def points(x0, shifts, descent=None):
    """{shift: sites}: x0 moved along one random direction by ``shift`` A
    RMS, or with ``descent`` (the gradient at x0) downhill until the
    largest atom shift is ``shift`` A (as a first L-BFGS step, whose trial
    steps qrefine caps at 0.2 A per atom)."""
    if descent is None:
        u = np.random.default_rng(SEED).normal(size=x0.shape)
        u /= np.sqrt((u ** 2).sum(axis=1).mean())
    else:
        u = -descent / np.linalg.norm(descent, axis=1).max()
    return {0.0: x0.copy(), **{s: x0 + s * u for s in shifts}}


def whole_source(model, method):
    """The whole model's QM restraints with ``method``, as the benchmark runs xtb."""
    from qrefine.model.charges import total_charge
    from qrefine.model.elements import symbol_of
    from qrefine.restraints.qm import QMRestraints
    symbols = [symbol_of(a) for a in model.get_hierarchy().atoms()]
    return QMRestraints(symbols, "xtb", method, charge=total_charge(model), options=OPTIONS)


def whole_model(model, sites_at, out):
    """{shift: (gradient, CPU s)}, computed in order of shift with one
    calculator; each point cached."""
    source = None
    result = {}
    for shift in sorted(sites_at):
        cache = os.path.join(out, "whole_%.3f.npz" % shift)
        if not os.path.exists(cache):
            if source is None:
                source = whole_source(model, METHOD)
            t0 = time.process_time()
            _, grad = source.value_and_gradient(sites_at[shift])
            np.savez(cache, grad=grad, cpu=time.process_time() - t0,
                     sites=sites_at[shift])
            print("whole model at %.3f A: %.1f CPU s" % (shift, time.process_time() - t0),
                  flush=True)
        z = np.load(cache)
        assert np.allclose(z["sites"], sites_at[shift]), "cache of other points: delete it"
        result[shift] = (z["grad"], float(z["cpu"]))
    return result


class CachedWhole:
    """The whole-model reference for the correction, from the cache (the
    refinement's own QMRestraints would compute it)."""

    seconds = 0.0

    def __init__(self, grad):
        self.grad = grad

    def value_and_gradient(self, sites):
        return 0.0, self.grad.copy()


def fragments(model, sites_at, clusters, buffer, out):
    """{shift: (fragment gradient, CPU s)} and the fragmentation summary,
    cached per setting."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    cache = os.path.join(out, "fragments_%d_%.1f.npz" % (clusters, buffer))
    shifts = sorted(sites_at)
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        cached = [float(s) for s in z["shifts"]]
        if set(shifts) <= set(cached):  # a run over more points serves fewer
            return ({s: (z["raw"][cached.index(s)], float(z["cpu"][cached.index(s)]))
                     for s in shifts}, z["summary"].item())
    source = FragmentQMRestraints(model, "xtb", METHOD, options=OPTIONS,
                                  max_cluster_residues=clusters, buffer=buffer, nproc=1,
                                  recluster_shift=100.0)
    result = {}
    try:
        for s in shifts:
            t0 = time.process_time()
            _, raw = source.value_and_gradient(sites_at[s])
            cpu = time.process_time() - t0
            result[s] = (raw, cpu)
            print("%d/%.1f at %.3f A: %.1f CPU s" % (clusters, buffer, s, cpu), flush=True)
        assert source.n_clusterings == 1
        summary = source.summary()
    finally:
        source.close()
    np.savez(cache, shifts=shifts, raw=[result[s][0] for s in shifts],
             cpu=[result[s][1] for s in shifts], summary=np.array(summary, dtype=object))
    return result, summary


def corrected(res, whole_x0, x0):
    """{shift: corrected gradient}, the correction taken at x0 only."""
    from qrefine.restraints.fragment_correction import WholeModelCorrection
    fix = WholeModelCorrection(CachedWhole(whole_x0), refresh=None)
    fix.take(x0, res[0.0][0])
    return {s: fix.apply(g) for s, (g, _) in res.items()}


def errors(grad, reference):
    d = np.linalg.norm(grad - reference, axis=1)
    return float(np.sqrt((d ** 2).mean())), float(d.max())


def table(x0, sites_at, whole, frags):
    shifts = sorted(sites_at)
    norms = {s: np.linalg.norm(sites_at[s] - x0, axis=1) for s in shifts}
    cpu_whole = whole[0.0][1]
    lines = ["3j63_A (%d atoms), %s, GBSA water, 1 thread.  Whole model: %.1f CPU s cold at "
             "x0, %s CPU s warm at the moved points." % (
                 len(x0), METHOD, cpu_whole,
                 ", ".join("%.1f" % whole[s][1] for s in shifts[1:])),
             "Points: x0 moved by %s A (RMS / largest atom shift)." % ", ".join(
                 "%.3f / %.2f" % (np.sqrt((norms[s] ** 2).mean()), norms[s].max())
                 for s in shifts[1:]), "",
             "| clusters/buffer | fragments, mean atoms | CPU s at x0 (cold) / each moved "
             "point (warm) | amortised CPU s, "
             "K = %s | error at x0, bare | %s |" % (
                 ", ".join(map(str, KS)),
                 " | ".join("corrected (bare) at %.3f / %.2f A" % (
                     np.sqrt((norms[s] ** 2).mean()), norms[s].max()) for s in shifts[1:])),
             "|---|---|---|---|---|" + "---|" * (len(shifts) - 1)]
    for (clusters, buffer), (res, summary) in frags.items():
        fixed = corrected(res, whole[0.0][0], x0)
        cold = res[0.0][1]
        warm = float(np.mean([res[s][1] for s in shifts[1:]]))
        cells = ["%s / %s A" % (clusters, buffer),
                 "%d, %.0f" % (summary["clusters"], summary["mean_fragment_atoms"]),
                 "%.1f / %s" % (cold, ", ".join("%.1f" % res[s][1] for s in shifts[1:])),
                 ", ".join("%.1f" % (warm + cpu_whole / k) for k in KS),
                 "%.2f / %.2f" % errors(res[0.0][0], whole[0.0][0])]
        for s in shifts[1:]:
            cells.append("**%.2f / %.2f** (%.2f / %.2f)" % (
                errors(fixed[s], whole[s][0]) + errors(res[s][0], whole[s][0])))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Errors: RMS / max per-atom norm of the difference from the whole-model "
              "gradient at the same point, kcal/mol/A; corrected: with the correction taken "
              "at x0; bare: the fragments alone."]
    return "\n".join(lines)


def low_level_gradients(model, sites_at, clusters, buffer, method):
    """({shift: whole-model gradient}, {shift: fragment gradient}) of the
    cheap ``method`` (GFN-FF) at the same points and fragments."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    whole = whole_source(model, method)
    frag = FragmentQMRestraints(model, "xtb", method, options=OPTIONS,
                                max_cluster_residues=clusters, buffer=buffer, nproc=1,
                                recluster_shift=100.0)
    try:
        return ({s: whole.value_and_gradient(x)[1] for s, x in sorted(sites_at.items())},
                {s: frag.value_and_gradient(x)[1] for s, x in sorted(sites_at.items())})
    finally:
        frag.close()


def tracked_table(model, x0, sites_at, whole, frags, method):
    """The correction taken at x0 and moved with the points by the cheap
    method's own whole-minus-fragment difference:
    g(x) = g_frag(x) + [g_whole(x0) - g_frag(x0)]
           + [l_whole(x) - l_frag(x)] - [l_whole(x0) - l_frag(x0)],
    beside the constant correction and the plain subtractive sum
    g_frag(x) + l_whole(x) - l_frag(x)."""
    shifts = sorted(sites_at)
    lines = ["", "The correction tracked by %s (l: its gradients at the same points and "
             "fragments); RMS / max error, kcal/mol/A" % method, "",
             "| clusters/buffer | shift RMS A | bare | constant correction | tracked by %s | "
             "subtractive %s |" % (method, method), "|---|---|---|---|---|---|"]
    for (clusters, buffer), (res, _) in frags.items():
        l_whole, l_frag = low_level_gradients(model, sites_at, clusters, buffer, method)
        for s in shifts[1:]:
            ref, bare = whole[s][0], res[s][0]
            constant = bare + whole[0.0][0] - res[0.0][0]
            tracked = constant + (l_whole[s] - l_frag[s]) - (l_whole[0.0] - l_frag[0.0])
            subtractive = bare + l_whole[s] - l_frag[s]
            lines.append("| %s / %s A | %.3f | " % (clusters, buffer, s) + " | ".join(
                "%.2f / %.2f" % errors(g, ref) for g in (bare, constant, tracked, subtractive))
                + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=["8/2", "8/3.5", "15/3.5"],
                    help="max_cluster_residues/buffer pairs")
    ap.add_argument("--shifts", nargs="+", type=float, default=[0.05, 0.1, 0.2, 0.3],
                    help="RMS displacements from x0, A")
    ap.add_argument("--only", choices=("whole", "fragments"))
    ap.add_argument("--descent", action="store_true",
                    help="move downhill (the whole-model gradient at x0, from a random "
                         "run's cache), --shifts being the largest atom shift; cached in "
                         "OUT/descent")
    ap.add_argument("--tracked-by", metavar="METHOD",
                    help="also the correction moved with the points by METHOD's "
                         "whole-minus-fragment difference (GFN-FF: seconds a point)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fragment_delta"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = read_model(MODEL)
    x0 = model.get_sites_cart().as_numpy_array()
    descent = None
    if args.descent:
        x0_cache = os.path.join(args.out, "whole_0.000.npz")
        descent = np.load(x0_cache)["grad"]
        args.out = os.path.join(args.out, "descent")
        os.makedirs(args.out, exist_ok=True)
        if not os.path.exists(os.path.join(args.out, "whole_0.000.npz")):
            os.symlink(os.path.abspath(x0_cache), os.path.join(args.out, "whole_0.000.npz"))
    sites_at = points(x0, args.shifts, descent)
    if args.only != "fragments":
        whole = whole_model(model, sites_at, args.out)
    if args.only == "whole":
        return
    frags = {}
    for pair in args.settings:
        clusters, buffer = int(pair.split("/")[0]), float(pair.split("/")[1])
        frags[(clusters, buffer)] = fragments(model, sites_at, clusters, buffer, args.out)
    if args.only is None:
        text = table(x0, sites_at, whole, frags)
        if args.tracked_by:
            text += "\n" + tracked_table(model, x0, sites_at, whole, frags, args.tracked_by)
        print("\n" + text)
        with open(os.path.join(args.out, "fragment_delta.md"), "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
