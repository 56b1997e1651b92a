"""Time of one energy + gradient per engine and method, cold and warm.

For the 1us0 helix (94 atoms) and 3j63 chain A (1436 atoms, whole model):
cold = a fresh calculator; warm = the same calculator after every atom moved
by up to 0.005 A (an L-BFGS-sized step), so engines that reuse the previous
SCF solution can do so.  Engines that are not available, or whose cold call
is predicted to exceed --max-seconds, are reported as skipped.

    python benchmarks/engines.py [--systems helix 3j63] [--engines xtb mopac]
                                 [--max-seconds 300]
"""

import argparse
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np
from ase import Atoms

from _data import read_model
SYSTEMS = {
    "helix": "structures/xray/1us0_helix/a87_99_h.pdb",
    "3j63": "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb",
}
RUNS = [("xtb", "GFN2-xTB"), ("xtb", "GFN1-xTB"), ("xtb", "GFN-FF"),
        ("mopac", "PM7"), ("pyscf", "HF-D3")]
# Rough cost growth with atom count, to skip runs that cannot finish in time.
SCALING = {"xtb": 2.0, "mopac": 2.5, "pyscf": 3.5}


def load(system):
    from qrefine.model import charges
    model = read_model(SYSTEMS[system])
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    return Atoms(symbols=symbols, positions=model.get_sites_cart().as_numpy_array()), \
        charges.total_charge(model)


def time_call(calc, atoms):
    atoms.calc = calc
    t0 = time.time()
    atoms.get_potential_energy()
    atoms.get_forces()
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--engines", nargs="+", default=None, help="only these engines")
    args = ap.parse_args()
    from qrefine import engines
    rng = np.random.default_rng(1)
    print("| system | atoms | engine | method | cold (s) | warm (s) | notes |")
    print("|---|---|---|---|---|---|---|")
    small = {}
    for system in args.systems:
        atoms, charge = load(system)
        for engine, method in RUNS:
            if args.engines and engine not in args.engines:
                continue
            module = engines.engine_module(engine)
            ok, hint = module.availability()
            row = "| %s | %d | %s | %s |" % (system, len(atoms), engine, method)
            if not ok:
                print(row + " - | - | not available: %s |" % hint)
                continue
            if (engine, method) in small:
                n0, t0 = small[(engine, method)]
                predicted = t0 * (len(atoms) / n0) ** SCALING[engine]
                if predicted > args.max_seconds:
                    print(row + " - | - | skipped: predicted %.0f s > --max-seconds |" % predicted)
                    continue
            calc = module.make_calculator(method=method, charge=charge, multiplicity=1)
            try:
                cold = time_call(calc, atoms)
                moved = atoms.copy()
                moved.positions += rng.uniform(-0.005, 0.005, moved.positions.shape)
                warm = time_call(calc, moved)
            except Exception as e:  # report and go on: a table row per run
                print(row + " - | - | failed: %s |" % " ".join(str(e).split())[:80])
                continue
            small.setdefault((engine, method), (len(atoms), cold))
            print(row + " %.2f | %.2f | |" % (cold, warm), flush=True)


if __name__ == "__main__":
    main()
