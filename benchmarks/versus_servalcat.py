"""qrefine next to servalcat on the same cryo-EM model, in the same run
(issue 15: `restraints=cctbx` defaults within 2x servalcat's wall time).

    pip install servalcat          # any environment; --servalcat names its command
    python benchmarks/versus_servalcat.py [--models 3j63_A] [--servalcat PATH] [--out DIR]
                                          [--nproc 1 2]

For each model: ``qr.refine model map resolution=R`` (qrefine's defaults,
restraints=cctbx) and ``servalcat refine_spa_norefmac --model --map -d R``
(its defaults), one after the other, wall seconds of each whole command
(qrefine once per ``--nproc`` value: with 2, two weight trials at a time);
then both refined models validated by the same code (qrefine's validator,
CC_mask against the same map), so the geometry columns compare.

servalcat reads the monomer library through gemmi, which wants
``<dir>/<letter>/<RES>.cif`` and ``<dir>/list/mon_lib_list.cif``: it is
assembled in --out from ../shared/data/chem_data by symbolic links (each
GeoStd ``data_<RES>.cif``, which cctbx prefers, linked as ``<RES>.cif`` in
place of the monomer library's).  Nothing is copied.  With this library
servalcat stops at the C-terminal OXT ("definition not found for A/GLN
91/OXT ... Provide restraint cif file(s) for GLN"), so it gets the model
without its OXT atoms (written to --out), one atom of 1436 on 3j63_A.
"""

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import qrefine  # noqa: F401  (loads cctbx first)

from _data import DATA, HERE
from cryoem import COLUMNS, CRYO, MODELS, validate_file


def monomer_library(out):
    """A gemmi-layout monomer library of links into chem_data; its path."""
    root = os.path.join(out, "monlib")
    if os.path.isdir(root):
        return root
    chem = os.path.join(DATA, "chem_data")
    os.makedirs(root)
    mon_lib = os.path.join(chem, "mon_lib")
    for entry in sorted(os.listdir(mon_lib)):
        source = os.path.join(mon_lib, entry)
        if not os.path.isdir(source) or entry == "list":
            continue
        os.makedirs(os.path.join(root, entry), exist_ok=True)
        for f in glob.glob(os.path.join(source, "*.cif")):
            os.symlink(f, os.path.join(root, entry, os.path.basename(f)))
    os.symlink(os.path.join(mon_lib, "list"), os.path.join(root, "list"))
    if os.path.exists(os.path.join(mon_lib, "ener_lib.cif")):
        os.symlink(os.path.join(mon_lib, "ener_lib.cif"), os.path.join(root, "ener_lib.cif"))
    for f in glob.glob(os.path.join(chem, "geostd", "*", "data_*.cif")):
        letter = os.path.basename(os.path.dirname(f))
        name = os.path.basename(f)[len("data_"):]
        link = os.path.join(root, letter, name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(f, link)
    return root


def timed(argv, log):
    """(exit code, wall s, CPU s: user + system of the command and its children)."""
    t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as f:
        rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, cwd=os.path.dirname(log))
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, time.time() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["3j63_A"], choices=sorted(MODELS))
    ap.add_argument("--servalcat", default=shutil.which("servalcat") or "servalcat")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "versus_servalcat"))
    ap.add_argument("--nproc", type=int, nargs="+", default=[1],
                    help="qrefine's nproc= values, one run each")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    monlib = monomer_library(args.out)
    qr_refine = os.path.join(os.path.dirname(sys.executable), "qr.refine")
    rows = []
    for name in args.models:
        spec = MODELS[name]
        model, emap = os.path.join(CRYO, spec["model"]), os.path.join(CRYO, spec["map"])
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        res = "%g" % spec["resolution"]
        qrefine_runs = []
        for nproc in args.nproc:
            prefix = "qrefine" if nproc == 1 else "qrefine_nproc%d" % nproc
            qrefine_runs.append((nproc, prefix) + timed(
                [qr_refine, model, emap, "resolution=" + res,
                 "chem_data=" + os.path.join(DATA, "chem_data"), "nproc=%d" % nproc,
                 "output.prefix=" + prefix, "output.dir=" + d, "output.overwrite=true"],
                os.path.join(d, prefix + "_stdout.log")))
        no_oxt = os.path.join(d, "model_without_oxt.pdb")
        with open(model) as src, open(no_oxt, "w") as dst:
            dst.writelines(l for l in src if not (l.startswith(("ATOM", "HETATM"))
                                                   and l[12:16].strip() == "OXT"))
        rc_s, wall_s, cpu_s = timed([args.servalcat, "refine_spa_norefmac", "--model", no_oxt,
                              "--map", emap, "-d", res, "--monlib", monlib,
                              "-o", "servalcat"], os.path.join(d, "servalcat_stdout.log"))
        rows.append((name, "start", validate_file(model, spec), "", "", "", ""))
        runs = [("qrefine cctbx (defaults%s)" % (", nproc=%d" % n if n > 1 else ""),
                 os.path.join(d, prefix + "_refined.pdb"), wall, cpu, rc,
                 "%.1f" % (wall / wall_s) if rc == rc_s == 0 else "",
                 "%.1f" % (cpu / cpu_s) if rc == rc_s == 0 else "")
                for n, prefix, rc, wall, cpu in qrefine_runs]
        runs.append(("servalcat refine_spa_norefmac", os.path.join(d, "servalcat.pdb"),
                     wall_s, cpu_s, rc_s, "", ""))
        for program, path, wall, cpu, rc, x, x_cpu in runs:
            ok = rc == 0 and os.path.exists(path)
            rows.append((name, program, validate_file(path, spec) if ok else None,
                         "%.1f" % wall if ok else "failed (exit %d, see %s)" % (rc, d), x,
                         "%.1f" % cpu if ok else "", x_cpu))
    # On a shared machine the wall time also holds the waits for a core; the
    # CPU time (user + system) is the work done.
    head = ["model", "run"] + [c[1] for c in COLUMNS] + ["wall s", "x servalcat", "CPU s",
                                                         "CPU x servalcat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, run, m, wall, ratio, cpu, cpu_ratio in rows:
        cells = [fmt % m[k] if m and m.get(k) is not None else "–" for k, _, fmt in COLUMNS]
        lines.append("| " + " | ".join([name, run] + cells + [wall, ratio, cpu, cpu_ratio])
                     + " |")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "versus_servalcat.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "versus_servalcat.json"), "w") as f:
        json.dump([{"model": n, "run": r, "metrics": m, "wall_s": w, "cpu_s": c}
                   for n, r, m, w, _, c, _ in rows], f, indent=1)


if __name__ == "__main__":
    main()
