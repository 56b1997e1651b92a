"""1us0 helix recovery (Q|R #1, Figs. 4-5): qrefine methods against the published Q|R runs.

The experiment: the 13-residue helix a87_99_h.pdb (from 1us0) was perturbed
at five r.m.s. doses (0.3-1.5 A, ten random starts each) and refined against
simulated 4 A data (data.mtz, 5 % noise on Fobs, so a converged R is about
0.05).  Each start is refined here with every chosen method

    cctbx  restraints=cctbx
    xtb    restraints=qm engine=xtb nproc=1     (GFN2)
    mopac  restraints=qm engine=mopac nproc=1   (PM7)

and compared, per dose, with the published Q|R refinements (final_results_*:
cctbx, PM7, HF/6-31G-D3 with TeraChem, RI-BP86/SV(P) with Turbomole; all
their runs, R from each log's "Best r_work", H-bonds recomputed from the
refined models with the same code as ours) and with the unrefined starts.
Columns: mean +- std (over runs, ddof=0) of R-work, R-free, R-free - R-work,
backbone N-H...O=C H-bonds and the % of the reference's H-bonds recovered
(qrefine.validation.hbonds: H...O within 1.7-2.2 A for a pair H-bonded in
the reference), min-max of that %, and mean wall seconds per run.  The
paper's "lowest percentage recovered by quantum refinement is 63 %" matches
the published PM7 mean at dose 1.5 (63.3 %; its single runs go down to 22 %).

    python benchmarks/helix.py [--methods cctbx xtb mopac] [--doses 1.5] [--subset N]
                               [--jobs 1] [--extra key=value ...] [--out DIR] [--report-only]

Runs are cached: start i of dose d refined with method m writes
<out>/<m>/d<d>_<i>_summary.json (plus _refined.pdb, .log); a start whose
summary exists is not run again, so an interrupted benchmark resumes and
--report-only tabulates whatever is there.  The cache key is only method,
dose and start: use another --out when --extra changes.  Wall times are
timings.total_s from the summaries, so cached runs keep theirs.
Default --out is benchmarks/results/helix; it also receives helix_table.md,
helix_results.json, helix_fig4_r.png and helix_fig5_hbonds.png.
Data: $QREFINE_TEST_DATA or ../shared/data.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import qrefine  # noqa: F401  (loads cctbx before numpy's friends)
import numpy as np

from _data import DATA, HERE

HELIX = os.path.join(DATA, "structures", "xray", "1us0_helix")
DOSES = ["0.3", "0.6", "0.9", "1.2", "1.5"]
METHODS = {"cctbx": ["restraints=cctbx"],
           "xtb": ["restraints=qm", "engine=xtb", "nproc=1"],
           "mopac": ["restraints=qm", "engine=mopac", "nproc=1"]}
PUBLISHED = {"Q|R cctbx (pub.)": "final_results_cctbx/refine_cctbx",
             "Q|R PM7 (pub.)": "final_results_mopac_pm7",
             "Q|R HF-D3 (pub.)": "final_results_terachem",
             "Q|R BP86 (pub.)": "final_results_turbomole"}
START = "perturbed start"
# Published rows are dashed in the colour of the matching own method, so
# "ours vs theirs" reads at a glance.
STYLE = {"cctbx": ("C0", "-"), "xtb": ("C1", "-"), "mopac": ("C2", "-"),
         "Q|R cctbx (pub.)": ("C0", "--"), "Q|R PM7 (pub.)": ("C2", "--"),
         "Q|R HF-D3 (pub.)": ("C3", "--"), "Q|R BP86 (pub.)": ("C4", "--"),
         START: ("0.5", ":")}


# -- one run -------------------------------------------------------------------

def _load_hierarchy(pdb):
    # A bare hierarchy is enough for the H-bond code and much faster than a
    # model manager; ~250 files are read per report.
    import iotbx.pdb
    return iotbx.pdb.input(file_name=pdb).construct_hierarchy()


def hbond_stats(pdb, reference):
    """(backbone H-bond count, % of the reference's H-bonds recovered)."""
    from qrefine.validation.hbonds import count_backbone_hbonds, recovered_fraction
    h = _load_hierarchy(pdb)
    return count_backbone_hbonds(h), 100.0 * recovered_fraction(reference, h)


def start_pdb(dose, i):
    return os.path.join(HELIX, "perturbed", dose, "%d.pdb" % i)


def refine(method, dose, i, out, extra, run_missing):
    """Result dict of one start refined with one method: the cached summary
    when there is one, else a fresh qr.refine run (if ``run_missing``).
    None when neither; ``error`` set when qr.refine failed."""
    outdir = os.path.join(out, method)
    prefix = "d%s_%d" % (dose, i)
    summary = os.path.join(outdir, prefix + "_summary.json")
    record = {"method": method, "dose": dose, "start": i}
    if not os.path.exists(summary):
        if not run_missing:
            return None
        cmd = [os.path.join(os.path.dirname(sys.executable), "qr.refine"),
               start_pdb(dose, i), os.path.join(HELIX, "data.mtz")] + METHODS[method] + [
               "chem_data=%s" % os.path.join(DATA, "chem_data"),
               "output.dir=%s" % outdir, "output.prefix=%s" % prefix] + list(extra)
        print("running %s %s" % (method, prefix), file=sys.stderr, flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(summary):
            lines = r.stderr.strip().splitlines()
            return dict(record, error=lines[-1] if lines else "exit code %d" % r.returncode)
    s = json.load(open(summary))
    return dict(record, r_work=s["final"]["r_work"], r_free=s["final"]["r_free"],
                seconds=s["timings"]["total_s"],
                pdb=os.path.join(outdir, prefix + "_refined.pdb"))


def published_runs(label, dose):
    """Result dicts of all published Q|R runs of one method and dose."""
    found = []
    for dirpath, _, files in os.walk(os.path.join(HELIX, PUBLISHED[label])):
        if os.path.basename(dirpath) != dose:
            continue
        for f in sorted(files):
            m = re.match(r"(\d+)_refined\.pdb$", f)
            if not m:
                continue
            rec = {"method": label, "dose": dose, "start": int(m.group(1)),
                   "r_work": None, "r_free": None, "seconds": None,
                   "pdb": os.path.join(dirpath, f)}
            log = os.path.join(dirpath, m.group(1) + ".log")
            if os.path.exists(log):
                # The last "Best" line is the model the run wrote out.
                best = re.findall(r"Best r_work:\s*([\d.]+)\s*r_free:\s*([\d.]+)",
                                  open(log).read())
                if best:
                    rec["r_work"], rec["r_free"] = (float(x) for x in best[-1])
            found.append(rec)
    return found


def start_runs(dose):
    """The unrefined perturbed models (all ten), for the H-bonds they keep."""
    return [{"method": START, "dose": dose, "start": i, "r_work": None, "r_free": None,
             "seconds": None, "pdb": start_pdb(dose, i)}
            for i in range(10) if os.path.exists(start_pdb(dose, i))]


# -- statistics and report -----------------------------------------------------

def aggregate(runs):
    """Per-quantity arrays of the successful runs of one (method, dose)."""
    def values(key):
        return np.array([r[key] for r in runs if r.get(key) is not None], float)
    gaps = [r["r_free"] - r["r_work"] for r in runs
            if r.get("r_work") is not None and r.get("r_free") is not None]
    return {"n": len(runs), "r_work": values("r_work"), "r_free": values("r_free"),
            "gap": np.array(gaps), "hbonds": values("hbonds"),
            "recovered": values("recovered"), "seconds": values("seconds")}


def _ms(a, fmt):
    return (fmt + " ± " + fmt) % (a.mean(), a.std()) if a.size else "–"


def table(groups, failures):
    """Markdown table, one row per (dose, method), then the failed runs."""
    lines = ["| dose | method | n | R-work | R-free | R-free − R-work | H-bonds "
             "| % recovered | % rec. min–max | s/run |", "|" + "---|" * 10]
    for (dose, label), st in groups.items():
        rec = st["recovered"]
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            # "|" in "Q|R" would split the markdown cell.
            dose, label.replace("|", "\\|"), st["n"],
            _ms(st["r_work"], "%.3f"), _ms(st["r_free"], "%.3f"),
            _ms(st["gap"], "%.3f"), _ms(st["hbonds"], "%.1f"), _ms(rec, "%.1f"),
            "%.0f–%.0f" % (rec.min(), rec.max()) if rec.size else "–",
            "%.0f" % st["seconds"].mean() if st["seconds"].size else "–"))
    for r in failures:
        lines.append("| %s | %s | failed: start %d: %s |" % (r["dose"], r["method"], r["start"],
                                                            r["error"].replace("|", "/")))
    return "\n".join(lines) + "\n"


def _series(groups, label, key):
    """x, mean, std of one quantity of one method over the doses it has."""
    pts = [(float(d), st[key].mean(), st[key].std())
           for (d, lab), st in groups.items() if lab == label and st[key].size]
    return [np.array(v) for v in zip(*pts)] if pts else None


def plot(groups, labels, panels, path, ylabel):
    """One panel per (key, title); one error-bar line per method.  Methods are
    shifted a little along x so their error bars do not hide each other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for k, label in enumerate(labels):
            s = _series(groups, label, key)
            if s is None:
                continue
            color, ls = STYLE.get(label, (None, "-"))
            ax.errorbar(s[0] + 0.012 * (k - len(labels) / 2), s[1], yerr=s[2], color=color,
                        ls=ls, marker="o", ms=4, capsize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("perturbation dose (Å r.m.s.d.)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({float(d) for d, _ in groups}))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- driver --------------------------------------------------------------------

def collect(args, out):
    """All result dicts (own, published, starts) with H-bond numbers, and the
    failed own runs."""
    jobs = [(m, d, i) for m in args.methods for d in args.doses for i in range(args.subset)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        own = list(pool.map(lambda j: refine(*j, out, args.extra, not args.report_only), jobs))
    for m in args.methods:
        if not any(r and r["method"] == m for r in own):
            print("note: no %s results in %s, skipped" % (m, os.path.join(out, m)))
    runs = [r for r in own if r and "error" not in r]
    failures = [r for r in own if r and "error" in r]
    for d in args.doses:
        runs += start_runs(d) + [r for label in PUBLISHED for r in published_runs(label, d)]
    reference = _load_hierarchy(os.path.join(HELIX, "a87_99_h.pdb"))
    for r in runs:
        r["hbonds"], r["recovered"] = hbond_stats(r["pdb"], reference)
    return runs, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--doses", nargs="+", choices=DOSES, default=DOSES)
    ap.add_argument("--subset", type=int, default=10, help="starts per dose (default all 10)")
    ap.add_argument("--extra", nargs="*", default=[], help="more key=value for every qr.refine")
    ap.add_argument("--jobs", type=int, default=1, help="parallel qr.refine processes")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "helix"))
    ap.add_argument("--report-only", action="store_true",
                    help="tabulate and plot cached results, run nothing")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    runs, failures = collect(args, out)
    labels = [m for m in args.methods if any(r["method"] == m for r in runs)] + list(PUBLISHED)
    groups = {(d, label): aggregate([r for r in runs if r["dose"] == d and r["method"] == label])
              for d in args.doses for label in labels + [START]}
    groups = {k: st for k, st in groups.items() if st["n"]}

    text = table(groups, failures)
    print(text)
    with open(os.path.join(out, "helix_table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "helix_results.json"), "w") as f:
        json.dump({"runs": runs, "failures": failures}, f, indent=1)
    plot(groups, labels, [("r_work", "(a) R-work"), ("r_free", "(b) R-free"),
                          ("gap", "(c) R-free − R-work")],
         os.path.join(out, "helix_fig4_r.png"), "R (mean ± std)")
    plot(groups, labels + [START], [("recovered", "Recovered backbone H-bonds")],
         os.path.join(out, "helix_fig5_hbonds.png"), "% of reference H-bonds (mean ± std)")
    print("outputs in %s" % out)


if __name__ == "__main__":
    main()
