"""Cryo-EM table (Q|R #3, Table 1): qrefine next to the published Q|R runs.

For each model (3j63_A by default; ``--models 3j63_A 5fn5_C 5ly6 3a5x``)
this runs qr.refine on the Q|R start model and boxed map with

  cctbx_tight   library restraints, weight search limited to bond RMSD 0.003 A
                (0.004 for 5fn5), as the Q|R "CCTBX tight" run (max_bond_rmsd)
  cctbx_loose   library restraints at a fixed data weight (40) that gives bond
                RMSD 0.015 A on 3j63_A, as the Q|R "CCTBX loose" run
  cctbx_rama    qrefine's default cctbx run (Top8000 Ramachandran restraints on,
                as phenix.real_space_refine), which Q|R did not have
  xtb_gfnff     QM restraints, xtb GFN-FF on the whole model, weight search
  xtb_gfn2      QM restraints, xtb GFN2-xTB on the whole model through the
                dual level (qm.low_level=GFN-FF: one GFN2 call per macro
                cycle), at the weight xtb_gfnff chose (--gfn2-weight to set it)
  xtb_gfn2_small  QM restraints, GFN2-xTB at every step through small
                fragments (8 residues, 3.5 A), weight search, short cycles
  xtb_gfn2_small_rama  the same with the clash wall and the Top8000
                Ramachandran term of qr.refine's QM defaults with a map
  xtb_gfnff_wall_short  GFN-FF with the clash restraint, a short protocol
  xtb_gfnff_wall_rama  GFN-FF with the clash restraint and the Top8000
                Ramachandran term at kT (what the QM rows of issue 16 use)
  xtb_gfnff_wall_rama_short  the same with xtb_gfnff_wall_short's protocol
                (the defaults of qr.refine restraints=qm with a map)
  xtb_gfnff_fragments  qr.refine's GFN-FF defaults with a map, on fragments
                (qm.clustering=true)
The QM runs before xtb_gfnff_wall_rama switch the Ramachandran term off
(ramachandran_restraints=false), and those without "wall" in their name the
clash restraint (qm.clash_restraint=0), as they ran before both were on by
default with maps.

The Q|R runs used no Ramachandran restraints, so the tight and loose rows
switch them off too.  Every model (start, qrefine, published) is validated
by the same code (qrefine.validation, CC_mask against the same map at the
same resolution; qrefine's own runs from their written PDB files), so the
columns are comparable; the numbers printed in
the Q|R README are added as "as published" rows.  For every run a
qr.comparama plot (start -> refined) is written.

    python benchmarks/cryoem.py [--models 3j63_A] [--runs cctbx_tight cctbx_loose
        cctbx_rama xtb_gfnff xtb_gfn2 xtb_gfn2_small xtb_gfn2_small_rama
        xtb_gfnff_wall_short xtb_gfnff_wall_rama xtb_gfnff_wall_rama_short
        xtb_gfnff_fragments]
        [--gfn2-weight W] [--nproc 2] [--out DIR]
        [--report-only]

Runs are cached: a run whose ``<out>/<model>/<run>_summary.json`` exists is
not repeated (delete it to redo).  Outputs: ``cryoem_table.md``,
``cryoem_results.json`` and the comparama PNGs under ``--out`` (default
benchmarks/results/cryoem).
"""

import argparse
import json
import os
import re
import subprocess
import sys

import qrefine  # noqa: F401  (loads cctbx first)

from _data import DATA, HERE

CRYO = os.path.join(DATA, "structures", "cryo_em")
# start model, map, resolution (A, Table 1 of Q|R #3), the bond RMSD limit
# of Q|R's "tight" run, the weight of its "loose" one (data_weight=40 gives
# bond RMSD 0.0155 A on 3j63_A, 120 gives 0.045), the model's section in
# the Q|R README, and the
# folders of the published runs (each one refined PDB and its log).
PUBLISHED_DIRS = {"cctbx tight": "cctbx_tight_refinement", "cctbx loose": "cctbx_loose_refinement",
                  "xtb GFN1": "xtb-gfn1_refinement",
                  "TeraChem HF-D3/6-31G": "TeraChem_HF61G_refinement"}
MODELS = {
    "3j63_A": dict(model="3j63_A/3j63_A_box_complete.pdb", map="3j63_A/3j63_A_box.ccp4",
                   resolution=3.8, tight_bond=0.003, loose_weight=40, readme="3j63"),
    "5fn5_C": dict(model="5fn5_C/5fn5_chain_c_box_complete.pdb",
                   map="5fn5_C/5fn5_chain_c_box.ccp4", resolution=4.3, tight_bond=0.004,
                   loose_weight=40, readme="5fn5"),
    # 4.0 A (MANIFEST section 5); the Q|R README has its rows but
    # shared/data holds none of its refined models.
    "5ly6": dict(model="5ly6/5ly6_box_complete.pdb", map="5ly6/5ly6_box.ccp4",
                 resolution=4.0, tight_bond=0.003, loose_weight=40, readme="5ly6"),
    # EMD-1641 is not in shared/data (MANIFEST section 4): the start and
    # the published models are validated without a map, nothing is refined.
    "3a5x": dict(model="3a5x_model_only/3a5x_placed_model_complete.pdb", map=None,
                 resolution=4.0, tight_bond=0.005, loose_weight=40, readme="3a5x"),
}
# Cores of the published runs, from their commands (MANIFEST section 6):
# xtb ran 5 clusters at a time with 12 threads each.
PUBLISHED_CORES = {"xtb GFN1": "60", "cctbx tight": "1", "cctbx loose": "1"}
# Rows of the Q|R README table, by method, next to the recomputed ones.
README_LABEL = {"xtb GFN1": "xtb_refine", "TeraChem HF-D3/6-31G": "terachem_refine"}

RUNS = ("cctbx_tight", "cctbx_loose", "cctbx_rama", "xtb_gfnff", "xtb_gfn2", "xtb_gfn2_small",
        "xtb_gfn2_small_rama",
        "xtb_gfnff_wall_short", "xtb_gfnff_wall_rama", "xtb_gfnff_wall_rama_short",
        "xtb_gfnff_fragments")
COLUMNS = [("bond_rmsd", "bond", "%.3f"), ("angle_rmsd", "angle", "%.2f"),
           ("clashscore", "clash", "%.1f"), ("rama_outliers", "Rama out %", "%.2f"),
           ("rama_favored", "Rama fav %", "%.2f"), ("rotamer_outliers", "rota out %", "%.2f"),
           ("rama_z_whole", "Rama-Z", "%.2f"), ("cc_mask", "CC_mask", "%.4f"),
           ("hbonds", "H-bonds", "%d")]


# The refinement lengths the QM runs before 2026-12-07's map defaults had
# (refine.max_iterations, weights.trial_macro_cycles, refine.macro_cycles;
# QM with a map now defaults to 60 / 1 / 2): their rows keep their meaning.
LONG_PROTOCOL = ["refine.max_iterations=100", "weights.trial_macro_cycles=2",
                 "refine.macro_cycles=5"]


def run_arguments(name, spec, nproc, gfn2_weight=None):
    """qr.refine key=value arguments of one named run."""
    if name == "cctbx_tight":
        return ["restraints=cctbx", "ramachandran_restraints=false",
                "weights.max_bond_rmsd=%g" % spec["tight_bond"]]
    if name == "cctbx_loose":
        # The weight search stops as soon as Ramachandran or rotamer
        # statistics worsen, long before bonds loosen; Q|R's loose run is
        # defined by its bond RMSD (0.015 A), so it gets a fixed weight.
        return ["restraints=cctbx", "ramachandran_restraints=false",
                "data_weight=%g" % spec["loose_weight"]]
    if name == "cctbx_rama":
        return ["restraints=cctbx"]
    if name == "xtb_gfnff":
        # GFN-FF runs on the whole model (0.4 s per gradient of 3j63_A).
        # (weights.part_atoms: trials on a 1000-atom part of models over
        # 2000 atoms, QM for the part alone)
        return ["restraints=qm", "engine=xtb", "method=GFN-FF", "ramachandran_restraints=false",
                "qm.clash_restraint=0", "nproc=%d" % nproc] + LONG_PROTOCOL
    if name == "xtb_gfn2":
        # Dual level: one whole-model GFN2-xTB call per macro cycle, GFN-FF
        # steps in between, at the weight the GFN-FF run chose (a weight
        # search would cost two GFN2 calls per trial and cycle).
        return ["restraints=qm", "engine=xtb", "method=GFN2-xTB", "qm.clustering=false",
                "ramachandran_restraints=false", "qm.clash_restraint=0",
                "qm.low_level=GFN-FF", "qm.low_level_cycles=25", "data_weight=%.4f" % gfn2_weight,
                "nproc=%d" % nproc]
    if name == "xtb_gfn2_small":
        # GFN2-xTB on every step, through small fragments (8 residues, 3.5 A
        # buffer: 47 CPU s a gradient on 3j63_A, RMS error 1.33 kcal/mol/A,
        # section 3) and a short protocol (one 20-iteration macro cycle a
        # trial, three in the final refinement), to fit in 2 h on 2 cores.
        return ["restraints=qm", "engine=xtb", "method=GFN2-xTB", "ramachandran_restraints=false",
                "qm.clash_restraint=0", "fragments.max_cluster_residues=8", "fragments.buffer=3.5",
                "refine.max_iterations=20", "weights.trial_macro_cycles=1",
                "refine.macro_cycles=3", "nproc=%d" % nproc]
    if name == "xtb_gfn2_small_rama":
        # xtb_gfn2_small with what qr.refine adds to QM restraints with a
        # map by default since it ran: the clash wall and the Top8000
        # Ramachandran term (section 2), which took GFN-FF on 3j63_A from
        # 96.6 to 100 % Rama favored with the wall on.
        return [a for a in run_arguments("xtb_gfn2_small", spec, nproc)
                if a not in ("ramachandran_restraints=false", "qm.clash_restraint=0")]
    if name == "xtb_gfnff_wall_short":
        # GFN-FF with the clash restraint (section 2, "The QM clash
        # restraint") and a protocol short enough for 5fn5_C (3787 atoms,
        # 4.2 s a warm whole-model gradient on one thread, 4 min of
        # topology set-up): one 60-iteration macro cycle a trial, two in the
        # final refinement; trials two at a time with nproc=2.
        return ["restraints=qm", "engine=xtb", "method=GFN-FF", "qm.clash_restraint=100",
                "ramachandran_restraints=false",
                "refine.max_iterations=60", "weights.trial_macro_cycles=1",
                "refine.macro_cycles=2", "nproc=%d" % nproc]
    if name == "xtb_gfnff_wall_rama":
        # GFN-FF with the clash restraint and the Top8000 Ramachandran term
        # at kT (section 2, "The QM Ramachandran term"), default protocol.
        return ["restraints=qm", "engine=xtb", "method=GFN-FF", "qm.clash_restraint=100",
                "ramachandran_restraints=true", "qm.ramachandran_scale=0.6",
                "nproc=%d" % nproc] + LONG_PROTOCOL
    if name == "xtb_gfnff_wall_rama_short":
        # The same terms with xtb_gfnff_wall_short's protocol, for 5fn5_C
        # (since 2026-12-07 the defaults of QM with a map: this run is
        # qr.refine's default GFN-FF run with a map).
        return run_arguments("xtb_gfnff_wall_rama", spec, nproc)[:-len(LONG_PROTOCOL)] + [
            "refine.max_iterations=60", "weights.trial_macro_cycles=1", "refine.macro_cycles=2"]
    if name == "xtb_gfnff_fragments":
        # qr.refine's defaults for GFN-FF with a map (clash wall, Top8000
        # term, and on models over 2000 atoms the short lengths), on
        # fragments instead of the whole model: 5ly6's whole-model GFN-FF
        # set-up had not ended after 85 min (section 3, "GFN-FF on
        # fragments or on the whole model").
        return ["restraints=qm", "engine=xtb", "method=GFN-FF", "qm.clustering=true",
                "nproc=%d" % nproc]
    raise SystemExit("unknown run %r" % name)


def refine(model_name, spec, run, out, nproc, gfn2_weight=None):
    """Run (or reuse) one qr.refine; return its summary dict or an error line."""
    summary = os.path.join(out, run + "_summary.json")
    if os.path.exists(summary):
        return json.load(open(summary)), None
    cmd = [os.path.join(os.path.dirname(sys.executable), "qr.refine"),
           os.path.join(CRYO, spec["model"]), os.path.join(CRYO, spec["map"]),
           "resolution=%g" % spec["resolution"], "chem_data=%s" % os.path.join(DATA, "chem_data"),
           "output.dir=%s" % out, "output.prefix=%s" % run]
    cmd += run_arguments(run, spec, nproc, gfn2_weight)
    print("running %s %s: %s" % (model_name, run, " ".join(cmd[3:])), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
    return json.load(open(summary)), None


def run_or_reuse(name, spec, run, out, args):
    """(summary, None) of a cached or new run, or (None, why not)."""
    if os.path.exists(os.path.join(out, run + "_summary.json")) or not args.report_only:
        weight = args.gfn2_weight
        if run == "xtb_gfn2" and weight is None:
            gfnff = os.path.join(out, "xtb_gfnff_summary.json")
            if not os.path.exists(gfnff):
                return None, "needs the xtb_gfnff run first (or --gfn2-weight)"
            weight = json.load(open(gfnff))["chosen_weight"]
        return refine(name, spec, run, out, args.nproc, weight)
    return None, "not run (--report-only)"


def validate_file(path, spec):
    """Validation dict of a model file against the model's map."""
    from qrefine.model import chem_data
    from qrefine.model import io as model_io
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.validation.validator import validate
    chem_data.activate(os.path.join(DATA, "chem_data"))
    model = model_io.read_model(path)
    stats = None
    if spec["map"] is not None:
        target = RealSpaceTarget(model, read_map(os.path.join(CRYO, spec["map"])),
                                 spec["resolution"])
        stats = target.statistics(model.get_sites_cart().as_numpy_array())
    return validate(model, data_statistics=stats).as_dict()


def readme_rows(key):
    """{method: {column: value}} from the Q|R cryo-EM README table of one model."""
    text = open(os.path.join(CRYO, "README_qrefine-cryo-EM.md")).read()
    section = re.split(r"\n#+ ", "\n" + text)
    names = {"bond": "bond_rmsd", "angle": "angle_rmsd", "clash": "clashscore",
             "rama_out": "rama_outliers", "rama_favor": "rama_favored",
             "rotamer": "rotamer_outliers", "CC_mask": "cc_mask"}
    for block in section:
        if not block.lower().startswith(key):
            continue
        lines = [ln for ln in block.splitlines() if "|" in ln]
        header = [h.strip() for h in lines[0].split("|")]
        rows = {}
        for ln in lines[2:]:
            cells = [c.strip() for c in ln.split("|")]
            rows[cells[0]] = {names[h]: float(c) for h, c in zip(header[1:], cells[1:])
                              if h in names and c}
        return rows
    return {}


def comparama(start, refined, out, prefix):
    cmd = [os.path.join(os.path.dirname(sys.executable), "qr.comparama"), start, refined,
           "output.dir=%s" % out, "output.prefix=%s" % prefix,
           "chem_data=%s" % os.path.join(DATA, "chem_data")]
    png = os.path.join(out, prefix + "_comparama.png")
    if not os.path.exists(png):
        subprocess.run(cmd, capture_output=True, text=True)
    return png if os.path.exists(png) else None


def published_runs(name, spec):
    """{method: (refined PDB, wall seconds or None)} of the published Q|R runs."""
    root = os.path.join(CRYO, os.path.dirname(spec["model"]), "qr3_results")
    runs = {}
    for label, folder in PUBLISHED_DIRS.items():
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        files = sorted(os.listdir(d))
        pdbs = [f for f in files if f.endswith(".pdb")]
        seconds = None
        for f in files:
            if ".log" in f:
                times = re.findall(r"^Time:\s*([\d.]+)", open(os.path.join(d, f)).read(), re.M)
                seconds = float(times[-1]) if times else None
        if pdbs:
            runs[label] = (os.path.join(d, pdbs[0]), seconds)
    return runs


def fmt_row(label, metrics, seconds="", cores=""):
    cells = []
    for key, _, f in COLUMNS:
        v = metrics.get(key)
        cells.append(f % v if v is not None else "-")
    return "| %s | %s | %s | %s |" % (label, " | ".join(cells), seconds, cores)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["3j63_A"], choices=sorted(MODELS))
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--gfn2-weight", type=float, default=None,
                    help="data weight of xtb_gfn2 (default: the one xtb_gfnff chose)")
    ap.add_argument("--nproc", type=int, default=2, help="cores for the xtb run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cryoem"))
    ap.add_argument("--report-only", action="store_true", help="tabulate cached runs only")
    args = ap.parse_args()
    header = "| model | " + " | ".join(c[1] for c in COLUMNS) + " | wall (s) | cores |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    results = {}
    for name in args.models:
        spec = MODELS[name]
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        start = os.path.join(CRYO, spec["model"])
        res = results[name] = {"start": validate_file(start, spec), "qrefine": {},
                               "published": {}}
        lines.append(fmt_row("**%s** start" % name, res["start"]))
        for label, metrics in readme_rows(spec["readme"]).items():
            if label == "initial":
                lines.append(fmt_row("%s start (as published)" % name, metrics))
        for run in args.runs:
            if spec["map"] is None:
                lines.append("| %s qrefine %s: no map in shared/data |" % (name, run))
                continue
            summary, error = run_or_reuse(name, spec, run, out, args)
            if summary is None:
                lines.append("| %s qrefine %s: %s |" % (name, run, error))
                continue
            p = summary["parameters"]
            refined = os.path.join(out, run + "_refined.pdb")
            # The written model validated by today's validator, like every
            # other row (a cached run's summary may predate a validator change).
            final = validate_file(refined, spec)
            res["qrefine"][run] = dict(final, wall_s=summary["timings"]["total_s"],
                                       cores=p["nproc"], command=summary.get("command"))
            comparama(start, refined, out, run)
            lines.append(fmt_row("%s qrefine %s" % (name, run), final,
                                 "%.0f" % summary["timings"]["total_s"], p["nproc"]))
        as_published = readme_rows(spec["readme"])
        printed_rows = set()
        for label, (pdb, seconds) in published_runs(name, spec).items():
            metrics = validate_file(pdb, spec)
            res["published"][label] = dict(metrics, wall_s=seconds,
                                           cores=PUBLISHED_CORES.get(label))
            comparama(start, pdb, out, "published_" + re.sub(r"\W+", "_", label))
            lines.append(fmt_row("%s Q\\|R %s (recomputed)" % (name, label), metrics,
                                 "%.0f" % seconds if seconds else "",
                                 PUBLISHED_CORES.get(label, "")))
            printed = as_published.get(README_LABEL.get(label, ""))
            if printed:
                printed_rows.add(README_LABEL[label])
                lines.append(fmt_row("%s Q\\|R %s (as published)" % (name, label), printed))
        # README rows whose refined model shared/data does not hold (5ly6)
        for label, key in list(README_LABEL.items()) + [("cctbx", "cctbx_refine")]:
            if key in as_published and key not in printed_rows:
                lines.append(fmt_row("%s Q\\|R %s (as published)" % (name, label),
                                     as_published[key]))
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "cryoem_table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "cryoem_results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\noutputs in %s" % args.out)


if __name__ == "__main__":
    main()
