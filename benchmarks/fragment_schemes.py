"""Fragment schemes against error and cost: can the error of a small buffer
fall without the buffer growing?  (issue 15, must-have 1)

For 3j63_A (1436 atoms) and GFN2-xTB (GBSA water, as every qrefine xtb
call), one whole-model gradient is the reference.  For each
(max_cluster_residues, buffer) pair the model is clustered once, and the
same fragments are computed three ways, one core, one after another:

  bare         each fragment alone (qrefine's scheme today);
  embedded     each fragment in the point charges of every model atom
               outside it (the atoms its caps replace excepted), the charges
               being each atom's GFN2 Mulliken charge from its own cluster's
               bare calculation (a self-consistent whole-protein charge set
               at no extra cost) -- electrostatic embedding;
  subtractive  ONIOM-style: GFN-FF on the whole model plus, per fragment,
               GFN2 minus GFN-FF on the same fragment (the fragment
               difference should be shorter-ranged than GFN2 itself).

Cluster-atom gradients are assembled exactly as in a refinement
(``FragmentQMRestraints.assemble``: cap gradients projected).  The error is
the per-atom norm of the difference from the whole model, kcal/mol/A.
CPU seconds are this process's, with one OpenMP thread.

    python benchmarks/fragment_schemes.py [--pairs 8/3.5 8/5] [--out DIR]

The whole-model reference is cached in DIR (default
benchmarks/results/fragment_schemes).
"""

import argparse
import os
import time

import qrefine  # noqa: F401  (loads cctbx first)
import numpy as np

from _data import HERE, read_model

MODEL = "structures/cryo_em/3j63_A/3j63_A_box_complete.pdb"
EV_TO_KCAL = 23.060547830619026


SOLVENT = {"name": "water"}


def calculator(method, charge, multiplicity):
    from qrefine.engines import xtb_engine
    return xtb_engine.make_calculator(method, charge=charge, multiplicity=multiplicity,
                                      threads=1, solvent=SOLVENT["name"])


def energy_and_gradient(symbols, positions, calc):
    """(eV, kcal/mol/A gradient, charges or None, CPU s)."""
    from ase import Atoms
    atoms = Atoms(symbols=list(symbols), positions=positions)
    atoms.calc = calc
    t0 = time.process_time()
    energy = atoms.get_potential_energy()
    grad = -atoms.get_forces() * EV_TO_KCAL
    charges = calc.results.get("charges")
    return energy, grad, charges, time.process_time() - t0


def whole_model(model, sites, method, out):
    """(gradient, CPU s) of the whole model, cached for GFN2-xTB."""
    from qrefine.model.charges import total_charge
    cache = os.path.join(out, "whole_%s_%s.npz" % (method, SOLVENT["name"] or "gas"))
    if os.path.exists(cache):
        z = np.load(cache)
        return z["grad"], float(z["cpu"])
    symbols = [a.element.strip().capitalize() for a in model.get_hierarchy().atoms()]
    _, grad, _, cpu = energy_and_gradient(symbols, sites,
                                          calculator(method, total_charge(model), 1))
    np.savez(cache, grad=grad, cpu=cpu)
    return grad, cpu


def point_charges(source, fragment, sites, charges):
    """(numbers, charges, positions) of the atoms outside ``fragment``,
    less those its caps replace."""
    from ase.data import atomic_numbers
    outside = np.ones(len(sites), dtype=bool)
    outside[fragment.atoms] = False
    for cap in fragment.caps:
        outside[cap.outside] = False
    numbers = np.array([atomic_numbers[e.strip().capitalize()]
                        for e in source.graph.elements], dtype=np.int32)
    return numbers[outside], charges[outside], sites[outside]


def errors(grad, reference):
    d = np.linalg.norm(grad - reference, axis=1)
    return float(np.sqrt((d ** 2).mean())), float(d.max())


def schemes(model, sites, reference, clusters, buffer, ff_whole):
    """[(scheme, CPU s, RMS, max)] for one clustering."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    source = FragmentQMRestraints(model, "xtb", "GFN2-xTB", max_cluster_residues=clusters,
                                  buffer=buffer, nproc=1)
    try:
        source.cluster(sites)
        jobs = source.fragment_jobs(sites)
        bare, cpu_bare = [], 0.0
        charges = np.zeros(len(sites))
        for f, (_, symbols, q, mult, positions, _) in zip(source.fragments, jobs):
            e, g, c, cpu = energy_and_gradient(symbols, positions,
                                               calculator("GFN2-xTB", q, mult))
            bare.append((e, g))
            cpu_bare += cpu
            charges[f.cluster_atoms] = c[:len(f.cluster_atoms)]
        g_bare = source.assemble(bare, sites)
        rows = [("bare", cpu_bare) + errors(g_bare, reference)]

        embedded, cpu_embed = [], 0.0
        for f, (_, symbols, q, mult, positions, _) in zip(source.fragments, jobs):
            calc = calculator("GFN2-xTB", q, mult)
            calc.set_point_charges(*point_charges(source, f, sites, charges))
            e, g, _, cpu = energy_and_gradient(symbols, positions, calc)
            embedded.append((e, g))
            cpu_embed += cpu
        rows.append(("embedded (+ bare pass for the charges)", cpu_bare + cpu_embed)
                    + errors(source.assemble(embedded, sites), reference))

        g_ff, cpu_ff_whole = ff_whole
        low, cpu_low = [], 0.0
        for f, (_, symbols, q, mult, positions, _) in zip(source.fragments, jobs):
            e, g, _, cpu = energy_and_gradient(symbols, positions, calculator("GFN-FF", q, mult))
            low.append((e, g))
            cpu_low += cpu
        g_sub = g_ff + g_bare - source.assemble(low, sites)
        rows.append(("subtractive, GFN-FF low level", cpu_bare + cpu_low + cpu_ff_whole)
                    + errors(g_sub, reference))
        summary = source.summary()
    finally:
        source.close()
    return rows, summary


def solvation_lines(out):
    """The whole model with and without GBSA, and GFN-FF's solvation term
    added to the gas-phase GFN2 gradient, when both solvents are cached."""
    names = {(m, s): os.path.join(out, "whole_%s_%s.npz" % (m, s))
             for m in ("GFN2-xTB", "GFN-FF") for s in ("water", "gas")}
    if not all(os.path.exists(p) for p in names.values()):
        return []
    g = {k: np.load(p)["grad"] for k, p in names.items()}
    water = g[("GFN2-xTB", "water")]
    transferred = g[("GFN2-xTB", "gas")] + g[("GFN-FF", "water")] - g[("GFN-FF", "gas")]
    return ["", "whole model, GFN2-xTB gas phase against GBSA water: RMS %.2f, max %.2f"
            % errors(g[("GFN2-xTB", "gas")], water),
            "gas phase + GFN-FF's solvation term against GBSA water: RMS %.2f, max %.2f"
            % errors(transferred, water)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", nargs="+", default=["8/3.5", "8/5"],
                    help="max_cluster_residues/buffer pairs")
    ap.add_argument("--solvent", default="water",
                    help="implicit solvent of every call (GBSA), or 'none' for gas phase")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fragment_schemes"))
    args = ap.parse_args()
    SOLVENT["name"] = None if args.solvent.lower() == "none" else args.solvent
    os.makedirs(args.out, exist_ok=True)
    model = read_model(MODEL)
    sites = model.get_sites_cart().as_numpy_array()
    reference, cpu_whole = whole_model(model, sites, "GFN2-xTB", args.out)
    ff_whole = whole_model(model, sites, "GFN-FF", args.out)
    lines = ["3j63_A (%d atoms), GFN2-xTB gradient, solvent %s; whole model %.1f CPU s "
             "(1 thread)" % (len(sites), SOLVENT["name"] or "none (gas phase)", cpu_whole), "",
             "| clusters/buffer | fragments, mean atoms | scheme | CPU s | x whole | "
             "RMS err | max err |", "|---|---|---|---|---|---|---|"]
    for pair in args.pairs:
        clusters, buffer = pair.split("/")
        rows, s = schemes(model, sites, reference, int(clusters), float(buffer), ff_whole)
        for name, cpu, rms, worst in rows:
            lines.append("| %s / %s A | %d, %.0f | %s | %.1f | %.2f | %.2f | %.2f |" % (
                clusters, buffer, s["clusters"], s["mean_fragment_atoms"], name, cpu,
                cpu / cpu_whole, rms, worst))
            print(lines[-1], flush=True)
    lines.extend(solvation_lines(args.out))
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(args.out, "fragment_schemes_%s.md" % (SOLVENT["name"] or "gas")),
              "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
