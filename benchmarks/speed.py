"""Speed: restraint gradients and whole refinements, as ratios to cctbx.

Part 1: one restraint gradient of 3j63_A (1436 atoms with H): cctbx library
geometry, xtb on the whole model and xtb through fragments (defaults: 15
residues per cluster, 8 A buffer), for each --methods.  Every time is also
given as a multiple of the cctbx gradient measured in the same run.

Part 2: the clustered xtb gradient (--scaling-method, GFN-FF by default;
GFN2-xTB takes 4 min on 3j63_A alone) on the cryo-EM models of
../shared/data, against atom count, again as a multiple of each model's own
cctbx gradient.

Part 3: the wall time of each whole refinement of the other benchmarks
(helix.py, cryoem.py), read from their results JSON when present.

Part 4 (--default-runs): complete ``qr.refine`` runs at the defaults, weight
search included, of a 2,400-atom cryo-EM model (3j06 at 3.3 A, prepared by
``qr.finalise``, which keeps one of its two altlocs): ``restraints=cctbx``
and ``restraints=qm engine=xtb method=GFN-FF``, with --nproc cores, wall
time and the refined model's validation.  Runs are cached under --out
(delete ``default_3j06/<run>_summary.json`` to redo one).

    python benchmarks/speed.py [--methods GFN-FF GFN2-xTB] [--nproc 2]
        [--scaling-models 3j63 3j06 5fn5 3j8x_K 3j8x_A 5ly6 1oed] [--skip-scaling]
        [--skip-gradients] [--scaling-only] [--scaling-cold] [--default-runs]

Prints markdown tables and writes them with speed_scaling.png under --out
(default benchmarks/results/speed).  Cores: --nproc (fragment processes;
the whole-model xtb gets the same number of OpenMP threads).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np
from qrefine.errors import QRefineError

from _data import DATA, HERE

MODELS = {
    "3j63": "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb",
    "3j06": "structures/cryo_em/3j06/3j06_no_ligand_box_complete.pdb",
    "5fn5": "structures/cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb",
    "3j8x_K": "structures/cryo_em/3j8x_K/chain_K_box_complete.pdb",
    "3j8x_A": "structures/cryo_em/3j8x_A/chain_A_box_complete.pdb",
    "5ly6": "structures/cryo_em/5ly6/5ly6_box_complete.pdb",
    "1oed": "structures/cryo_em/1oed/1oed_box_complete.pdb",
}


def load(name):
    """(processed model with cctbx restraints, sites as numpy)."""
    from qrefine.model import chem_data
    from qrefine.model import io as model_io
    chem_data.activate(os.path.join(DATA, "chem_data"))
    model = model_io.read_model(os.path.join(DATA, MODELS[name]))
    return model, model.get_sites_cart().as_numpy_array()


def timed(source, sites, repeats=1):
    """Seconds of the fastest of ``repeats`` value_and_gradient calls."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.time()
        source.value_and_gradient(sites)
        best = min(best, time.time() - t0)
    return best


def cold_and_warm(source, sites):
    """(first call, a second call after every atom moved by up to 0.005 A:
    an L-BFGS-sized step, where engines reuse set-up and SCF guesses)."""
    cold = timed(source, sites)
    moved = sites + np.random.default_rng(0).uniform(-0.005, 0.005, sites.shape)
    return cold, timed(source, moved)


def cctbx_seconds(model, sites):
    from qrefine.restraints.cctbx_geometry import CctbxGeometry
    return timed(CctbxGeometry(model), sites, repeats=5)


def whole_seconds(model, sites, method):
    from qrefine.model.charges import total_charge
    from qrefine.restraints.qm import QMRestraints
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    source = QMRestraints(symbols, "xtb", method, charge=total_charge(model))
    return cold_and_warm(source, sites)


def clustered_seconds(model, sites, method, nproc, cold_only=False):
    """(cold s, warm s, clusters, mean fragment atoms) of one clustered
    gradient; warm is None with ``cold_only``."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    source = FragmentQMRestraints(model, "xtb", method, nproc=nproc)
    try:
        source.cluster(sites)
        if cold_only:
            cold, warm = timed(source, sites), None
        else:
            cold, warm = cold_and_warm(source, sites)
        s = source.summary()
    finally:
        source.close()
    return cold, warm, s["clusters"], s["mean_fragment_atoms"]


def gradient_table(args):
    model, sites = load("3j63")
    t_cctbx = cctbx_seconds(model, sites)
    rows = [("cctbx", "library", 1, t_cctbx, t_cctbx, "")]
    for method in args.methods:
        rows.append(("xtb whole model", method, args.nproc)
                    + whole_seconds(model, sites, method) + ("",))
        cold, warm, n, mean = clustered_seconds(model, sites, method, args.nproc)
        rows.append(("xtb clustered", method, args.nproc, cold, warm,
                     "%d clusters, %.0f atoms each" % (n, mean)))
    lines = ["One restraint gradient of 3j63_A (%d atoms); warm: the same source after "
             "a 0.005 A move" % len(sites), "",
             "| restraints | method | cores | cold s | warm s | warm x cctbx | notes |",
             "|---|---|---|---|---|---|---|"]
    for what, method, cores, cold, warm, notes in rows:
        lines.append("| %s | %s | %d | %.3f | %.3f | %.0f | %s |" % (
            what, method, cores, cold, warm, warm / t_cctbx, notes))
    return lines


def scaling_table(args):
    points = []
    call = "cold" if args.scaling_cold else "warm"
    lines = ["Clustered xtb %s gradient against model size (%d cores)" % (
        args.scaling_method, args.nproc), "",
        "| model | atoms | clusters | mean fragment atoms | cctbx s | clustered s (%s) | x cctbx |"
        % call,
        "|---|---|---|---|---|---|---|"]
    for name in args.scaling_models:
        model, sites = load(name)
        t_cctbx = cctbx_seconds(model, sites)
        try:
            cold, warm, n, mean = clustered_seconds(model, sites, args.scaling_method,
                                                    args.nproc, cold_only=args.scaling_cold)
            t = cold if args.scaling_cold else warm
        except QRefineError as e:  # e.g. altlocs, which fragments refuse
            lines.append("| %s | %d | skipped: %s |" % (name, len(sites), e))
            print(lines[-1], flush=True)
            continue
        points.append((len(sites), t))
        lines.append("| %s | %d | %d | %.0f | %.4f | %.1f | %.0f |" % (
            name, len(sites), n, mean, t_cctbx, t, t / t_cctbx))
        print(lines[-1], flush=True)
    if len(points) > 1:
        n, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        slope = np.polyfit(n, t, 1)[0]
        lines += ["", "time ~ atoms^%.2f (least-squares fit over these models)" % slope]
        plot_scaling(points, args)
    return lines


def plot_scaling(points, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    atoms, seconds = zip(*points)
    ax.loglog(atoms, seconds, "o-")
    for name, (a, s) in zip(args.scaling_models, points):
        ax.annotate(name, (a, s), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("atoms (with H)")
    ax.set_ylabel("seconds per clustered gradient")
    ax.set_title("xtb %s, fragments, %d cores" % (args.scaling_method, args.nproc))
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "speed_scaling.png"), dpi=120)


def refinement_table(args):
    """Wall times of the whole refinements the other benchmarks recorded."""
    lines = ["Whole refinements (from the other benchmarks' results)", "",
             "| benchmark | run | n | mean wall s | cores |", "|---|---|---|---|---|"]
    helix = os.path.join(HERE, "results", "helix", "helix_results.json")
    if os.path.exists(helix):
        for method, runs in _helix_runs(json.load(open(helix))).items():
            if runs:
                lines.append("| helix (all doses) | %s | %d | %.0f | 1 |" % (method, len(runs),
                                                                 np.mean(runs)))
    cryo = os.path.join(HERE, "results", "cryoem", "cryoem_results.json")
    if os.path.exists(cryo):
        for model, res in json.load(open(cryo)).items():
            for run, m in res.get("qrefine", {}).items():
                lines.append("| cryo-EM %s | %s | 1 | %.0f | %s |" % (model, run, m["wall_s"],
                                                                     m["cores"]))
    return lines


DEFAULT_MODEL = "structures/cryo_em/3j06/3j06_no_ligand_box_complete.pdb"
DEFAULT_MAP = "structures/cryo_em/3j06/3j06_no_ligand_box.ccp4"
DEFAULT_RESOLUTION = 3.3
DEFAULT_RUNS = {"cctbx": ["restraints=cctbx"],
                "gfnff": ["restraints=qm", "engine=xtb", "method=GFN-FF"]}
DEFAULT_COLUMNS = [("clashscore", "clash", "%.1f"), ("rama_outliers", "Rama out %", "%.2f"),
                   ("rama_favored", "Rama fav %", "%.2f"),
                   ("rotamer_outliers", "rota out %", "%.2f"), ("rama_z_whole", "Rama-Z", "%.2f"),
                   ("cc_mask", "CC_mask", "%.4f"), ("hbonds", "H-bonds", "%d")]


def default_runs_table(args):
    """Part 4: complete default refinements of 3j06, timed."""
    out = os.path.join(args.out, "default_3j06")
    os.makedirs(out, exist_ok=True)
    bindir = os.path.dirname(sys.executable)
    chem = "chem_data=%s" % os.path.join(DATA, "chem_data")
    model = os.path.join(out, "3j06_complete.pdb")
    if not os.path.exists(model):
        subprocess.run([os.path.join(bindir, "qr.finalise"), os.path.join(DATA, DEFAULT_MODEL),
                        chem, "output.dir=%s" % out, "output.prefix=3j06"],
                       check=True, capture_output=True)
    rows = []
    for name, extra in DEFAULT_RUNS.items():
        summary_path = os.path.join(out, name + "_summary.json")
        wall_path = os.path.join(out, name + "_wall.json")
        if not os.path.exists(summary_path):
            t0 = time.time()
            r = subprocess.run([os.path.join(bindir, "qr.refine"), model,
                                os.path.join(DATA, DEFAULT_MAP),
                                "resolution=%g" % DEFAULT_RESOLUTION, chem,
                                "output.dir=%s" % out, "output.prefix=%s" % name,
                                "nproc=%d" % args.nproc] + extra,
                               capture_output=True, text=True)
            if r.returncode != 0:
                rows.append((name, None, None, (r.stderr.strip().splitlines() or ["failed"])[-1]))
                continue
            with open(wall_path, "w") as f:
                json.dump({"wall_s": time.time() - t0, "nproc": args.nproc}, f)
        summary = json.load(open(summary_path))
        wall = json.load(open(wall_path)) if os.path.exists(wall_path) else {}
        rows.append((name, summary, wall, None))
    lines = ["Complete default refinements of 3j06 (2403 atoms after qr.finalise, 3.3 A), "
             "weight search included", "",
             "| run | cores | wall s | trials | weight | " +
             " | ".join(c[1] for c in DEFAULT_COLUMNS) + " |",
             "|---|---|---|---|---|" + "---|" * len(DEFAULT_COLUMNS)]
    for name, summary, wall, error in rows:
        if error:
            lines.append("| %s | failed: %s |" % (name, error))
            continue
        if name == rows[0][0]:
            lines.append("| start | | | | | " + _metric_cells(summary["start"]) + " |")
        lines.append("| %s | %s | %.0f | %d | %.4g | %s |" % (
            " ".join(DEFAULT_RUNS[name]), wall.get("nproc", ""),
            wall.get("wall_s", summary["timings"]["total_s"]), len(summary["weight_search"]),
            summary["chosen_weight"] or 0.0, _metric_cells(summary["final"])))
    return lines


def _metric_cells(metrics):
    return " | ".join("" if metrics.get(k) is None else fmt % metrics[k]
                      for k, _, fmt in DEFAULT_COLUMNS)


def _helix_runs(results):
    """{method: [wall seconds]} from helix_results.json."""
    runs = {}
    for r in results.get("runs", []):
        if r.get("seconds") is not None:
            runs.setdefault(r["method"], []).append(r["seconds"])
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["GFN-FF", "GFN2-xTB"])
    ap.add_argument("--scaling-method", default="GFN-FF")
    ap.add_argument("--scaling-models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--scaling-only", action="store_true",
                    help="of parts 1 and 2, run part 2 (the scaling table) alone")
    ap.add_argument("--scaling-cold", action="store_true",
                    help="part 2 times the first (cold) call alone, not a warm one after it: "
                         "halves the cost of GFN2-xTB on large models")
    ap.add_argument("--skip-gradients", action="store_true",
                    help="leave out parts 1 and 2 (the gradient tables)")
    ap.add_argument("--default-runs", action="store_true",
                    help="part 4: complete default refinements of 3j06 (minutes)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "speed"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # The whole-model xtb runs in this process: give it --nproc threads.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.nproc))
    gradient_lines = [] if args.skip_gradients or args.scaling_only else gradient_table(args)
    print("\n".join(gradient_lines), flush=True)
    lines = list(gradient_lines)
    if not args.skip_scaling and not args.skip_gradients:
        lines += [""] + scaling_table(args)
    lines += [""] + refinement_table(args)
    if args.default_runs:
        lines += [""] + default_runs_table(args)
    text = "\n".join(lines)
    print("\n".join(lines[len(gradient_lines):]))
    with open(os.path.join(args.out, "speed_tables.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
