"""Crystal symmetry: how far a truncated environment is from a complete one.

For each --sets crystal, a closed-shell small asymmetric unit (the residues
around one crystal contact, H-capped where cut from the chain: the
construction of tests/test_symmetry.py; with --uncharged, only residues
without a formal charge around the closest contact between such residues)
is computed with the H-capped
symmetry copies within each --radii (qrefine.restraints.symmetry, as qr.refine does),
and compared with the central copy among every residue of an explicit P1
super-cell within --reference A (built by brute force, capped
independently).  The table gives the per-atom gradient error (RMS, 95th
percentile, largest, kcal/mol/A) and the share of atoms within 0.05.

A second table shows GFN-FF's two artifacts: the gradient of the whole
5bmi model changes when an identical copy, or one neutral capped residue,
is placed 150 A away (no physical interaction), and the gradient of a small
asymmetric unit changes when its atoms are only listed in another order.

    python benchmarks/symmetry.py [--sets 5bmi 5c11] [--radii 0 4 6 8 12]
        [--reference 16] [--methods GFN2-xTB GFN-FF] [--uncharged] [--nproc 2]

Gradients are cached under --out (default benchmarks/results/symmetry).
"""

import argparse
import os
import sys
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import DATA, HERE, read_model

sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import test_symmetry as constructions  # noqa: E402  (the tests' crystals and super-cells)

SOLVENT = {"GFN2-xTB": "water", "GFN-FF": None}


def gradient(symbols, positions, charge, method):
    from qrefine.model.charges import electron_count
    from qrefine.restraints.qm import QMRestraints
    mult = 1 + electron_count(symbols, charge) % 2
    qm = QMRestraints(symbols, "xtb", method=method, charge=charge, multiplicity=mult,
                      options={"solvent": SOLVENT[method]})
    return qm.value_and_gradient(positions)[1]


def cached(path, compute):
    if os.path.exists(path):
        return np.load(path)
    t0 = time.time()
    g = compute()
    np.save(path + ".tmp.npy", g)
    os.replace(path + ".tmp.npy", path)
    print("  computed %s (%.0f s)" % (os.path.basename(path), time.time() - t0), flush=True)
    return g


def truncation_rows(name, method, radii, reference, out, uncharged=False):
    from qrefine.model import charges
    from qrefine.restraints import symmetry
    model = constructions._small_capped_asu(os.path.join(DATA, "structures"), name,
                                            uncharged=uncharged)
    if uncharged:
        name += "u"  # cache key and table label
    x = model.get_sites_cart().as_numpy_array()
    n = len(x)
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    charge = charges.total_charge(model)
    res_charge = [r.charge for r in charges.residue_charges(model)]
    pos, syms, env_charge = constructions._brute_force_environment(model, reference)
    ref = cached(os.path.join(out, "%s_%s_ref%g.npy" % (name, method, reference)),
                 lambda: gradient(symbols + syms, np.concatenate([x, pos]),
                                  charge + env_charge, method)[:n])
    rows = []
    for r in radii:
        if r == 0:
            atoms, q, g = n, charge, cached(
                os.path.join(out, "%s_%s_r0.npy" % (name, method)),
                lambda: gradient(symbols, x, charge, method))
        else:
            env = symmetry.model_environment(model, r)
            q = charge + sum(res_charge[k] for k, _ in env.copies)
            atoms = n + env.n_atoms
            g = cached(os.path.join(out, "%s_%s_r%g.npy" % (name, method, r)),
                       lambda: gradient(symbols + env.symbols(symbols),
                                        np.concatenate([x, env.sites(x)]), q, method)[:n])
        e = np.linalg.norm(g - ref, axis=1)
        rows.append("| %s | %s | %d | %g | %d | %d | %.3f | %.3f | %.3f | %.0f %% |" % (
            name, method, n, r, atoms, q, np.sqrt((e ** 2).mean()), np.percentile(e, 95),
            e.max(), 100 * (e <= 0.05).mean()))
    return rows, len(syms) + n, env_charge + charge


def far_copy_rows():
    """GFN-FF gradient of whole 5bmi with and without a far-away copy."""
    from qrefine.model import charges
    from qrefine.restraints import symmetry
    model = read_model("structures/" + constructions.SETS["5bmi"][0])
    x = model.get_sites_cart().as_numpy_array()
    n = len(x)
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    q = charges.total_charge(model)
    env = symmetry.model_environment(model, 3.0)
    res_charge = [r.charge for r in charges.residue_charges(model)]
    c = next(k for k, (r, _) in enumerate(env.copies) if res_charge[r] == 0)
    sel = np.nonzero(env.copy_of_atom == c)[0]
    env_symbols = env.symbols(symbols)
    far = np.array([150.0, 0.0, 0.0])
    cases = [("identical copy of the model (%d atoms, charge %d)" % (n, q),
              symbols + symbols, np.concatenate([x, x + far]), 2 * q),
             ("one neutral capped residue (%d atoms)" % len(sel),
              symbols + [env_symbols[i] for i in sel],
              np.concatenate([x, env.sites(x)[sel] + far]), q)]
    rows = []
    for method in ("GFN-FF", "GFN2-xTB"):
        alone = gradient(symbols, x, q, method)
        for label, syms, pos, charge in cases:
            e = np.linalg.norm(gradient(syms, pos, charge, method)[:n] - alone, axis=1)
            rows.append("| %s | %s | %.4f | %.4f |" % (method, label, np.sqrt((e ** 2).mean()),
                                                        e.max()))
            if method == "GFN2-xTB":
                break  # the identical copy only: GFN2 on 1854 atoms is slow
    return rows


def atom_order_rows(sets, permutations=5):
    """GFN-FF gradient of the uncharged small asymmetric units with their
    atoms listed in random orders (GFN2-xTB as the control)."""
    rows = []
    for name in sets:
        model = constructions._small_capped_asu(os.path.join(DATA, "structures"), name,
                                                uncharged=True)
        x = model.get_sites_cart().as_numpy_array()
        atoms = list(model.get_hierarchy().atoms())
        symbols = [a.element.strip().capitalize() for a in atoms]
        rng = np.random.default_rng(1)
        orders = [rng.permutation(len(x)) for _ in range(permutations)]
        for method in ("GFN-FF", "GFN2-xTB"):
            ref = gradient(symbols, x, 0, method)
            worst, where = 0.0, "-"
            for p in orders:
                g = np.empty_like(ref)
                g[p] = gradient([symbols[i] for i in p], x[p], 0, method)
                e = np.linalg.norm(g - ref, axis=1)
                if e.max() > worst:
                    worst, where = e.max(), atoms[int(np.argmax(e))].id_str()
            rows.append("| %s | %s | %d | %.4f | %s |" % (name, method, permutations, worst,
                                                         where if worst > 1e-3 else "-"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=["5bmi", "5c11"])
    p.add_argument("--radii", nargs="+", type=float, default=[0, 4, 6, 8, 12])
    p.add_argument("--reference", type=float, default=16.0)
    p.add_argument("--methods", nargs="+", default=["GFN2-xTB", "GFN-FF"])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--uncharged", action="store_true",
                   help="asymmetric units of residues without a formal charge")
    p.add_argument("--skip-far-copy", action="store_true")
    p.add_argument("--atom-order", action="store_true",
                   help="also the GFN-FF atom-order table")
    p.add_argument("--out", default=os.path.join(HERE, "results", "symmetry"))
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.nproc)
    os.makedirs(args.out, exist_ok=True)
    print("| set | method | ASU atoms | radius A | QM atoms | charge | RMS | p95 | largest "
          "| atoms <= 0.05 |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in args.sets:
        for method in args.methods:
            rows, ref_atoms, ref_charge = truncation_rows(name, method, args.radii,
                                                          args.reference, args.out,
                                                          args.uncharged)
            print("\n".join(rows), flush=True)
            print("| %s | %s | reference: %d atoms within %g A, charge %d | | | | | | | |"
                  % (name + ("u" if args.uncharged else ""), method, ref_atoms, args.reference,
                     ref_charge), flush=True)
    if not args.skip_far_copy:
        print("\nGradient change of whole 5bmi (kcal/mol/A) from a molecule 150 A away:\n\n"
              "| method | added 150 A away | RMS | largest |\n|---|---|---|---|", flush=True)
        print("\n".join(far_copy_rows()), flush=True)
    if args.atom_order:
        print("\nGradient change (kcal/mol/A) from listing the atoms in another order, "
              "uncharged small asymmetric units:\n\n| set | method | orders | largest "
              "| atom |\n|---|---|---|---|---|", flush=True)
        print("\n".join(atom_order_rows(args.sets)), flush=True)


if __name__ == "__main__":
    main()
