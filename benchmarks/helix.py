"""1us0 helix recovery (Q|R #1, Figs. 4-5): qrefine against the published Q|R runs.

Refines the perturbed starts of the 13-residue poly-Gly helix against its
simulated 4 A data and prints, per dose and method, mean and spread of
R-work, R-free, R-free - R-work, backbone H-bonds and the % of the reference
(a87_99_h.pdb) backbone H-bonds recovered, next to the published Q|R results
(final_results_* refined models, re-validated with the same code).

    python benchmarks/helix.py [--doses 1.5] [--subset N] [--restraints cctbx]
                               [--extra key=value ...] [--jobs 2] [--out DIR]

Data: $QREFINE_TEST_DATA or ../shared/data.  One qr.refine process per start.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import qrefine  # noqa: F401  (loads cctbx before numpy's friends)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.abspath(os.environ.get("QREFINE_TEST_DATA",
                                      os.path.join(HERE, "..", "..", "shared", "data")))
HELIX = os.path.join(DATA, "structures", "xray", "1us0_helix")
PUBLISHED = {"cctbx": "final_results_cctbx/refine_cctbx", "PM7": "final_results_mopac_pm7",
             "TeraChem": "final_results_terachem", "Turbomole": "final_results_turbomole"}


def hbond_stats(pdb, reference):
    from qrefine.validation.hbonds import count_backbone_hbonds, recovered_fraction
    from qrefine.model_io import read_model
    model = read_model(pdb, make_restraints=False)
    return count_backbone_hbonds(model), 100.0 * recovered_fraction(reference, model)


def published_runs(method, dose):
    """(r_work, r_free, pdb) of the published Q|R runs for one method and dose."""
    root = os.path.join(HELIX, PUBLISHED[method])
    found = []
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != dose:
            continue
        for f in sorted(files):
            m = re.match(r"(\d+)_refined\.pdb$", f)
            if not m:
                continue
            log = os.path.join(dirpath, m.group(1) + ".log")
            r = (None, None)
            if os.path.exists(log):
                best = re.findall(r"Best r_work:\s*([\d.]+)\s*r_free:\s*([\d.]+)", open(log).read())
                if best:
                    r = tuple(float(x) for x in best[-1])
            found.append((r[0], r[1], os.path.join(dirpath, f)))
    return found


def run_qrefine(start, out, prefix, restraints, extra):
    cmd = [os.path.join(os.path.dirname(sys.executable), "qr.refine"), start,
           os.path.join(HELIX, "data.mtz"), "restraints=%s" % restraints,
           "chem_data=%s" % os.path.join(DATA, "chem_data"), "output.dir=%s" % out,
           "output.prefix=%s" % prefix] + list(extra)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1:] or ["failed"]
    s = json.load(open(os.path.join(out, prefix + "_summary.json")))
    return (s["final"]["r_work"], s["final"]["r_free"], os.path.join(out, prefix + "_refined.pdb"),
            time.time() - t0), None


def row(label, runs, reference):
    rw = np.array([r[0] for r in runs if r[0] is not None])
    rf = np.array([r[1] for r in runs if r[1] is not None])
    hb = [hbond_stats(r[2], reference) for r in runs]
    nh = np.array([h[0] for h in hb], float)
    rec = np.array([h[1] for h in hb], float)

    def ms(a, fmt="%.3f"):
        return (fmt + " ± " + fmt) % (a.mean(), a.std()) if a.size else "n/a"
    gap = rf - rw if rw.size and rw.size == rf.size else np.array([])
    return "| %-22s | %2d | %s | %s | %s | %s | %s |" % (
        label, len(runs), ms(rw), ms(rf), ms(gap), ms(nh, "%.1f"), ms(rec, "%.1f"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doses", nargs="+", default=["0.3", "0.6", "0.9", "1.2", "1.5"])
    ap.add_argument("--subset", type=int, default=10, help="starts per dose (default all 10)")
    ap.add_argument("--restraints", default="cctbx", help="qr.refine restraints= (cctbx or qm)")
    ap.add_argument("--label", default=None, help="row label (default: restraints + extra)")
    ap.add_argument("--extra", nargs="*", default=[], help="more key=value for qr.refine")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--published", nargs="*", default=list(PUBLISHED))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from qrefine import chem_data
    chem_data.activate(os.path.join(DATA, "chem_data"))
    from qrefine.model_io import read_model
    reference = read_model(os.path.join(HELIX, "a87_99_h.pdb"), make_restraints=False)
    out = args.out or tempfile.mkdtemp(prefix="qrefine_helix_")
    label = args.label or "qrefine " + " ".join([args.restraints] + args.extra)
    print("| run | n | R-work | R-free | R-free - R-work | H-bonds | % recovered |")
    print("|---|---|---|---|---|---|---|")
    for dose in args.doses:
        starts = [os.path.join(HELIX, "perturbed", dose, "%d.pdb" % i) for i in range(args.subset)]
        jobs = [(s, out, "d%s_%d" % (dose, i), args.restraints, args.extra)
                for i, s in enumerate(starts)]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda j: run_qrefine(*j), jobs))
        ok = [r for r, err in results if r is not None]
        failed = [err for r, err in results if r is None]
        seconds = np.mean([r[3] for r in ok]) if ok else float("nan")
        print(row("%s %s (%.0f s/run)" % (dose, label, seconds), ok, reference))
        for err in failed:
            print("|   failed: %s |" % err)
        for method in args.published:
            runs = published_runs(method, dose)[:args.subset]
            if runs:
                print(row("%s Q|R %s (published)" % (dose, method), runs, reference))
    print("\noutputs in %s" % out)


if __name__ == "__main__":
    main()
