"""Seed 000, Fig. 3: 1us0 optimised with no data, original and perturbed.

The paper (seed 000, lines 260-300) takes the 0.66 A model 1us0, drops the
non-protein atoms and all but the most occupied conformer (occupancy reset
to 1), makes a perturbed copy, and optimises both with no data under QM
and under library (cctbx) restraints.  Its claim: QM moves the original
little and brings the perturbed model back towards the original; cctbx
moves the original away and takes the perturbed one further away.

Here:

  original    ``1us0.pdb``, iotbx selection "protein" (waters, NADP+, the
              inhibitor and citrate dropped; also GLU 313, of which only N
              is modelled), then ``qr.finalise`` (most occupied altloc at
              occupancy 1, H added, His 312's missing side chain built,
              charged termini).  Its heavy atoms are the deposited ones.
  perturbed   the original with every heavy atom displaced by a Gaussian
              random vector (numpy default_rng(seed), per-component sigma
              = rms / sqrt(3), so the RMS displacement is ``--rms``, 0.3 A
              by default); each H moves with its nearest heavy atom (its
              parent), so X-H bonds keep their length.

Each model is optimised by ``qr.refine mode=opt`` with

  cctbx       ``restraints=cctbx`` (library restraints, qrefine's defaults:
              Ramachandran restraints off with no map)
  gfnff       ``restraints=qm engine=xtb method=GFN-FF qm.clustering=false``
              on the whole model, ``symmetry.expand=false`` (the molecule
              alone in GBSA water: GFN-FF is not local, README "Crystal
              symmetry")

with ``refine.macro_cycles`` x ``refine.max_iterations`` of 5 x 100 for
cctbx (``--macro-cycles``, ``--max-iterations``) and 10 x 30 for GFN-FF
(``--gfnff-macro-cycles``, ``--gfnff-max-iterations``) plus
``refine.gradient_tolerance=1.0`` (kcal/mol/A, a tight optimisation).  Every model
(start and optimised) is validated by ``qrefine.validation.validate``; the
RMSD columns are over the heavy atoms, matched by chain, residue and name,
to the original model.  ``qr.comparama`` draws each start -> optimised
change (and original -> perturbed).

    python benchmarks/fig3_1us0.py [--rms 0.3] [--seed 0] [--runs cctbx gfnff]
        [--models original perturbed] [--nproc 2] [--out DIR] [--report-only]

Cached under ``--out`` (default benchmarks/results/fig3_1us0): the prepared
models, each run's ``<model>_<run>_summary.json`` and refined PDB (a run is
skipped when its summary exists), and the validations
(``validation.json``).  Outputs: ``fig3_table.md``, ``fig3_results.json``
and the comparama PNGs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

import qrefine  # noqa: F401  (loads cctbx first)

from _data import DATA, HERE

DEPOSITED = os.path.join(DATA, "structures", "xray", "1us0_helix", "1us0.pdb")
CHEM_DATA = os.path.join(DATA, "chem_data")
# GLU A 313 has only its N in the deposited model (qr.finalise refuses
# residues without a complete backbone).
PROTEIN = "protein and not (chain A and resseq 313)"
RUNS = ("cctbx", "gfnff")
MODELS = ("original", "perturbed")
COLUMNS = [("rmsd", "RMSD (A)", "%.3f"), ("rmsd_backbone", "backbone RMSD", "%.3f"),
           ("max_dev", "max dev (A)", "%.2f"),
           ("rama_favored", "Rama fav %", "%.2f"), ("rama_allowed", "Rama allowed %", "%.2f"),
           ("rama_outliers", "Rama out %", "%.2f"), ("rama_z_whole", "Rama-Z", "%.2f"),
           ("rotamer_outliers", "rota out %", "%.2f"), ("clashscore", "clash", "%.2f"),
           ("hbonds", "H-bonds", "%d"), ("bond_rmsd", "bond", "%.4f"),
           ("angle_rmsd", "angle", "%.2f")]


def tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def run_arguments(run, args):
    """qr.refine key=value arguments of one optimisation."""
    if run == "cctbx":
        return ["mode=opt", "refine.macro_cycles=%d" % args.macro_cycles,
                "refine.max_iterations=%d" % args.max_iterations, "restraints=cctbx"]
    if run == "gfnff":
        # Short macro cycles: each one is checkpointed, so a run cut short
        # keeps its last cycle (restart=<prefix>.checkpoint).
        return ["mode=opt", "refine.macro_cycles=%d" % args.gfnff_macro_cycles,
                "refine.max_iterations=%d" % args.gfnff_max_iterations, "restraints=qm", "engine=xtb", "method=GFN-FF",
                         "qm.clustering=false", "symmetry.expand=false",
                         "refine.gradient_tolerance=1.0", "nproc=%d" % args.nproc]
    raise SystemExit("unknown run %r" % run)


def prepare(out, rms, seed):
    """original.pdb (protein, one conformer, H) and perturbed.pdb under out."""
    import iotbx.pdb
    from scipy.spatial import cKDTree
    from scitbx.array_family import flex
    original = os.path.join(out, "original.pdb")
    if not os.path.exists(original):
        inp = iotbx.pdb.input(DEPOSITED)
        h = inp.construct_hierarchy()
        protein = h.select(h.atom_selection_cache().selection(PROTEIN))
        path = os.path.join(out, "1us0_protein.pdb")
        protein.write_pdb_file(path, crystal_symmetry=inp.crystal_symmetry())
        r = subprocess.run([tool("qr.finalise"), path, "output.dir=%s" % out,
                            "chem_data=%s" % CHEM_DATA], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("qr.finalise failed: %s" % r.stderr.strip())
        shutil.copy(os.path.join(out, "1us0_protein_complete.pdb"), original)
    perturbed = os.path.join(out, "perturbed.pdb")
    if not os.path.exists(perturbed):
        inp = iotbx.pdb.input(original)
        h = inp.construct_hierarchy()
        atoms = h.atoms()
        xyz = atoms.extract_xyz().as_numpy_array()
        is_h = np.array([a.element.strip().upper() in ("H", "D") for a in atoms])
        heavy = np.where(~is_h)[0]
        shift = np.zeros_like(xyz)
        rng = np.random.default_rng(seed)
        shift[heavy] = rng.normal(scale=rms / np.sqrt(3), size=(len(heavy), 3))
        _, parent = cKDTree(xyz[heavy]).query(xyz[is_h])
        shift[is_h] = shift[heavy[parent]]
        atoms.set_xyz(flex.vec3_double(xyz + shift))
        h.write_pdb_file(perturbed, crystal_symmetry=inp.crystal_symmetry())
    return original, perturbed


def heavy_sites(path):
    """{(chain, resseq, icode, atom name): xyz} of the non-H atoms."""
    import iotbx.pdb
    sites = {}
    for chain in iotbx.pdb.input(path).construct_hierarchy().only_model().chains():
        for rg in chain.residue_groups():
            for atom in rg.atoms():
                if atom.element.strip().upper() not in ("H", "D"):
                    sites[(chain.id, rg.resseq.strip(), rg.icode, atom.name.strip())] = atom.xyz
    return sites


def deviation(path, reference):
    """Heavy-atom RMSD and largest deviation (A) of path from reference."""
    a, b = heavy_sites(path), heavy_sites(reference)
    keys = sorted(set(a) & set(b))
    d = np.linalg.norm(np.array([a[k] for k in keys]) - np.array([b[k] for k in keys]), axis=1)
    bb = np.array([k[3] in ("N", "CA", "C", "O") for k in keys])
    return dict(rmsd=float(np.sqrt((d ** 2).mean())), max_dev=float(d.max()),
                rmsd_backbone=float(np.sqrt((d[bb] ** 2).mean())), n_matched=len(keys))


def read_model(path):
    try:  # the module is moving (issue: qrefine/model/io.py)
        from qrefine.model.io import read_model as read
    except ImportError:
        from qrefine.model_io import read_model as read
    return read(path)


def validation(path, cache_file):
    """Validation dict of a model file, cached by path and modification time."""
    from qrefine import chem_data
    from qrefine.validation import validate
    cache = json.load(open(cache_file)) if os.path.exists(cache_file) else {}
    key = "%s@%d" % (os.path.basename(path), int(os.path.getmtime(path)))
    if key not in cache:
        chem_data.activate(CHEM_DATA)
        cache[key] = validate(read_model(path)).as_dict()
        with open(cache_file, "w") as f:
            json.dump(cache, f, indent=1)
    return cache[key]


def optimise(start, prefix, run, out, args):
    """(summary, None) of a cached or new qr.refine mode=opt, or (None, why not)."""
    summary = os.path.join(out, prefix + "_summary.json")
    if os.path.exists(summary):
        return json.load(open(summary)), None
    if args.report_only:
        return None, "not run (--report-only)"
    cmd = [tool("qr.refine"), start, "chem_data=%s" % CHEM_DATA, "output.dir=%s" % out,
           "output.prefix=%s" % prefix, "output.overwrite=true"] + run_arguments(run, args)
    print("running %s" % " ".join(cmd[1:2] + cmd[3:]), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(summary):
        return None, "failed after %.0f s: %s" % (time.time() - t0, (r.stderr.strip().splitlines()
                                                                      or ["no message"])[-1])
    return json.load(open(summary)), None


def from_checkpoint(start, prefix, out):
    """(PDB, summary-like dict) of the last finished macro cycle of a run that
    was stopped (its ``<prefix>.checkpoint``), or None."""
    import iotbx.pdb
    from scitbx.array_family import flex
    path = os.path.join(out, prefix + ".checkpoint")
    if not os.path.exists(path):
        return None
    with np.load(path) as z:
        state = json.loads(bytes(z["state"]).decode())
        if "sites" not in z.files or not state["cycles"]:
            return None
        sites = np.asarray(z["sites"], dtype=float).reshape(-1, 3)
    inp = iotbx.pdb.input(start)
    h = inp.construct_hierarchy()
    if h.atoms_size() != len(sites):
        return None
    pdb = os.path.join(out, prefix + "_partial.pdb")
    if not os.path.exists(pdb) or os.path.getmtime(pdb) < os.path.getmtime(path):
        h.atoms().set_xyz(flex.vec3_double(sites))
        h.write_pdb_file(pdb, crystal_symmetry=inp.crystal_symmetry())
    log = os.path.join(out, "." + prefix + ".log.partial")
    text = open(log).read() if os.path.exists(log) else ""
    began = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", text)
    seconds = None
    if began:
        from datetime import datetime, timezone
        t0 = datetime.strptime(began.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        seconds = os.path.getmtime(path) - t0.timestamp()
    nproc = re.search(r"nproc=(\d+)", text)
    return pdb, {"macro_cycles": state["cycles"], "timings": {"total_s": seconds},
                 "parameters": {"nproc": int(nproc.group(1)) if nproc else 1}}


def comparama(start, refined, out, prefix):
    png = os.path.join(out, prefix + "_comparama.png")
    if not os.path.exists(png):
        subprocess.run([tool("qr.comparama"), start, refined, "output.dir=%s" % out,
                        "output.prefix=%s" % prefix, "chem_data=%s" % CHEM_DATA],
                       capture_output=True, text=True)
    return png if os.path.exists(png) else None


def small_copy(src, dst):
    """src at half size in 128 colours (about 60 KB instead of 700 KB)."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copy(src, dst)
        return
    im = Image.open(src).convert("RGB")
    im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)
    im.quantize(128).save(dst, optimize=True)


def fmt_row(label, metrics, seconds="", cores=""):
    cells = [f % metrics[k] if metrics.get(k) is not None else "-" for k, _, f in COLUMNS]
    return "| %s | %s | %s | %s |" % (label, " | ".join(cells), seconds, cores)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rms", type=float, default=0.3, help="RMS heavy-atom displacement (A)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--macro-cycles", type=int, default=5, help="refine.macro_cycles")
    ap.add_argument("--max-iterations", type=int, default=100, help="refine.max_iterations")
    ap.add_argument("--gfnff-macro-cycles", type=int, default=10,
                    help="refine.macro_cycles of the GFN-FF runs")
    ap.add_argument("--gfnff-max-iterations", type=int, default=30,
                    help="refine.max_iterations of the GFN-FF runs")
    ap.add_argument("--nproc", type=int, default=2, help="OpenMP threads of the GFN-FF runs")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fig3_1us0"))
    ap.add_argument("--figures", default=None,
                    help="also copy the comparama PNGs here (e.g. benchmarks/figures)")
    ap.add_argument("--report-only", action="store_true", help="tabulate cached runs only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    vcache = os.path.join(args.out, "validation.json")
    starts = dict(zip(MODELS, prepare(args.out, args.rms, args.seed)))
    reference = starts["original"]
    header = "| model | run | " + " | ".join(c[1] for c in COLUMNS) + " | wall (s) | cores |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 4)]
    results, pngs = {}, []
    for model in args.models:
        start = starts[model]
        res = results[model] = {"start": dict(validation(start, vcache),
                                              **deviation(start, reference))}
        lines.append(fmt_row("%s | start" % model, res["start"]))
        if model == "perturbed":
            pngs.append(comparama(reference, start, args.out, "original_to_perturbed"))
        for run in args.runs:
            prefix = "%s_%s" % (model, run)
            summary, error = optimise(start, prefix, run, args.out, args)
            refined = os.path.join(args.out, prefix + "_refined.pdb")
            label = run
            if summary is None:
                partial = from_checkpoint(start, prefix, args.out)
                if partial is None:
                    lines.append("| %s | %s: %s |" % (model, run, error))
                    continue
                refined, summary = partial
                label = "%s (cut after %d cycles)" % (run, len(summary["macro_cycles"]))
            metrics = dict(validation(refined, vcache), **deviation(refined, reference))
            seconds, cores = summary["timings"]["total_s"], summary["parameters"]["nproc"]
            res[run] = dict(metrics, wall_s=seconds, cores=cores, label=label,
                            command=summary.get("command"))
            lines.append(fmt_row("%s | %s" % (model, label), metrics,
                                 "%.0f" % seconds if seconds else "-",
                                 cores if run == "gfnff" else 1))
            pngs.append(comparama(start, refined, args.out, prefix))
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "fig3_table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "fig3_results.json"), "w") as f:
        json.dump(dict(results, rms=args.rms, seed=args.seed), f, indent=1)
    if args.figures:
        for png in filter(None, pngs):
            small_copy(png, os.path.join(args.figures, "1us0_fig3_" + os.path.basename(png)))
    print("\noutputs in %s" % args.out)


if __name__ == "__main__":
    main()
