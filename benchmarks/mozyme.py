"""MOZYME (qm.linear_scaling=true) against conventional PM7: one gradient of
a whole model, CPU seconds of the MOPAC process (one thread) and the
gradient difference.  (issue 15, must-have 2)

    python benchmarks/mozyme.py [--models helix 3j63_A] [--conventional-max 1500]

Conventional PM7 is skipped above --conventional-max atoms (default 1000:
its cost grows with the cube of the size; on 3j63_A, 1436 atoms, it had run
15 SCF iterations, unconverged, in 1350 CPU s when it was stopped); MOZYME
alone is then timed.
"""

import argparse
import os
import resource
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import read_model

MODELS = {"helix": "structures/xray/1us0_helix/a87_99_h.pdb",
          "3j63_A": "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb",
          "5fn5_C": "structures/cryo_em/5fn5_C/5fn5_chain_c_box_complete.pdb",
          "3j8x_A": "structures/cryo_em/3j8x_A/chain_A_box_complete.pdb",
          "1oed": "structures/cryo_em/1oed/1oed_box_complete.pdb"}
EV_TO_KCAL = 23.060547830619026


def gradient(atoms, charge, linear_scaling, workdir):
    """(kcal/mol/A gradient, MOPAC CPU s, wall s)."""
    from qrefine.engines import mopac_engine
    calc = mopac_engine.make_calculator("PM7", charge=charge, workdir=workdir, nthreads=1,
                                        warm_start=False, linear_scaling=linear_scaling)
    atoms.calc = calc
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    grad = -atoms.get_forces() * EV_TO_KCAL
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return grad, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), \
        time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--conventional-max", type=int, default=1000)
    ap.add_argument("--workdir", default="/tmp/qrefine-mozyme")
    args = ap.parse_args()
    from ase import Atoms
    from qrefine.model.charges import total_charge
    from qrefine.model.elements import symbol_of
    print("| model | atoms | charge | conventional PM7 CPU s | MOZYME CPU s | ratio | "
          "RMS / max difference, kcal/mol/A | RMS gradient |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = read_model(MODELS[name])
        h = model.get_hierarchy().atoms()
        atoms = Atoms([symbol_of(a) for a in h], positions=np.array(h.extract_xyz()))
        charge = total_charge(model)
        moz, cpu_moz, _ = gradient(atoms, charge, True, os.path.join(args.workdir, name, "moz"))
        rms_g = np.sqrt((np.linalg.norm(moz, axis=1) ** 2).mean())
        if len(atoms) <= args.conventional_max:
            conv, cpu_conv, _ = gradient(atoms, charge, False,
                                         os.path.join(args.workdir, name, "conv"))
            d = np.linalg.norm(moz - conv, axis=1)
            row = "%.1f | %.1f | %.2f | %.3f / %.3f" % (cpu_conv, cpu_moz, cpu_conv / cpu_moz,
                                                      np.sqrt((d ** 2).mean()), d.max())
        else:
            row = "– | %.1f | – | –" % cpu_moz
        print("| %s | %d | %+d | %s | %.1f |" % (name, len(atoms), charge, row, rms_g), flush=True)


if __name__ == "__main__":
    main()
