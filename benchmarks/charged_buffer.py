"""Charged residues in the buffer (``fragments.charged_buffer``): does the
error of a small buffer fall when the residues whose field reaches across
the cut, the charged ones, join it from farther away?  (issue 15,
must-have 1: buffers chosen where the interactions are strong)

3j63_A (1436 atoms), GFN2-xTB, GBSA water (as every qrefine xtb call), one
OpenMP thread, CPU seconds of this process, one cold clustered gradient at
the start model.  Each setting is clusters/buffer/charged_buffer (A; the
third may be left out: no charged residues beyond the buffer).  Errors: RMS
/ max per-atom norm of the difference from the whole-model gradient,
kcal/mol/A; the whole model is fragment_delta.py's cached x0 point when
there is one, else computed (about 185 CPU s).

    python benchmarks/charged_buffer.py [--settings 8/3.5 8/3.5/8 15/5 15/5/10]
        [--whole-cache DIR]
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: CPU s comparable to the issue's

import qrefine  # noqa: F401  (loads cctbx first)

from _data import HERE, read_model
from fragment_delta import MODEL, METHOD, OPTIONS, errors, whole_model


def clustered(model, sites, clusters, buffer, charged):
    """(gradient, CPU s, summary) of one cold clustered gradient."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    source = FragmentQMRestraints(model, "xtb", METHOD, options=OPTIONS,
                                  max_cluster_residues=clusters, buffer=buffer,
                                  charged_buffer=charged, nproc=1)
    try:
        t0 = time.process_time()
        _, grad = source.value_and_gradient(sites)
        return grad, time.process_time() - t0, source.summary()
    finally:
        source.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+",
                    default=["8/3.5", "8/3.5/8", "8/3.5/12", "8/2/8", "8/5/10", "15/5",
                             "15/5/10"],
                    help="clusters/buffer[/charged_buffer]")
    ap.add_argument("--whole-cache", default=os.path.join(HERE, "results", "fragment_delta"))
    args = ap.parse_args()
    os.makedirs(args.whole_cache, exist_ok=True)
    model = read_model(MODEL)
    sites = model.get_sites_cart().as_numpy_array()
    reference, whole_cpu = whole_model(model, {0.0: sites}, args.whole_cache)[0.0]
    lines = ["3j63_A (%d atoms), %s, GBSA water, 1 thread; whole model %.1f CPU s." % (
        len(sites), METHOD, whole_cpu), "",
        "| clusters / buffer / charged residues within | fragments | mean atoms (max) | "
        "CPU s | RMS / max error |", "|---|---|---|---|---|"]
    for setting in args.settings:
        parts = setting.split("/")
        clusters, buffer = int(parts[0]), float(parts[1])
        charged = float(parts[2]) if len(parts) > 2 else None
        grad, cpu, s = clustered(model, sites, clusters, buffer, charged)
        lines.append("| %d / %g A / %s | %d | %.0f (%d) | %.1f | %.2f / %.2f |" % (
            clusters, buffer, "-" if charged is None else "%g A" % charged, s["clusters"],
            s["mean_fragment_atoms"], max(s["fragment_atoms"]), cpu,
            *errors(grad, reference)))
        print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
