"""xtb-python versus tblite as the backend of the xtb engine.

For GFN2-xTB and GFN1-xTB, with GBSA(water) in both (the one solvent model
both offer; tblite's ALPB is timed as well), it measures on

* the 1us0 helix (a87_99_h, 94 atoms, neutral),
* residues 1-20 of 3j63 chain A with the chain cut after C20 and capped
  with H (307 atoms, the size of a QM fragment; charge from qrefine.model.charges),
* and, with ``--large``, all of 3j63 chain A (1436 atoms; minutes per SCF
  on two cores for xtb-python, far longer for tblite):

* time of one energy + gradient, cold (new calculator, guess from scratch)
  and warm (positions moved by 0.02 A rms, SCF restarted from the previous
  wavefunction), as wall time and as CPU time of the process;
* determinism: largest difference in energy and gradient over repeated cold
  calls at the same geometry;
* warm-cold: largest energy difference between the warm result and a cold
  one at the same geometry;
* SCF robustness: how many of the perturbed helix models (1.5 A rms,
  ``perturbed/1.5/*.pdb``) converge at the defaults (300 K, 250 iterations),
  and how many of the failures converge at 1000 K; with ``--stress``, also
  the 307-atom fragment with 0.3 A rms noise, charge -2 in vacuum (HOMO-LUMO
  gaps of a few hundredths of an eV: hard SCFs; minutes for tblite).

usage: python benchmarks/xtb_backends.py [--data DIR] [--repeats N] [--large]
                                          [--skip-fragment] [--stress]
"""

import argparse
import glob
import os
import statistics
import sys
import time

import qrefine  # noqa: F401  (cctbx before scipy; see qrefine/__init__.py)

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get(
        "QREFINE_TEST_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", action="store_true",
                        help="add all of 3j63 chain A (1436 atoms)")
    parser.add_argument("--skip-fragment", action="store_true",
                        help="leave out the 307-atom 3j63 fragment")
    parser.add_argument("--stress", action="store_true",
                        help="time hard SCFs: the fragment, noisy, charged, in vacuum")
    args = parser.parse_args(argv)

    import numpy as np
    from qrefine.engines import xtb_engine
    from qrefine.model.charges import total_charge
    from qrefine.model.io import read_model

    backends = {"xtb-python": XtbPython(xtb_engine)}
    try:
        backends["tblite"] = Tblite()
    except ImportError as e:
        print("tblite not available (%s); measuring xtb-python only" % e)
    structures = os.path.join(args.data, "structures")
    threej63 = os.path.join(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb")
    systems = [("1us0 helix", read_model(os.path.join(
        structures, "xray/1us0_helix/a87_99_h.pdb"), make_restraints=False).get_hierarchy(),
        args.repeats)]
    if not args.skip_fragment:
        systems.append(("3j63 1-20", capped_fragment(threej63, 1, 20), 3))
    if args.large:
        systems.append(("3j63_A", read_model(threej63, make_restraints=False).get_hierarchy(),
                        1))

    print("OpenMP: OMP_NUM_THREADS=%s, OMP_WAIT_POLICY=%s, OMP_STACKSIZE=%s; %d CPUs; "
          "load average %.1f"
          % (os.environ.get("OMP_NUM_THREADS", "unset"),
             os.environ.get("OMP_WAIT_POLICY", "unset"),
             os.environ.get("OMP_STACKSIZE", "unset"), os.cpu_count(), os.getloadavg()[0]))
    print("%-10s %-17s %-4s %5s %17s %17s %9s %9s %9s"
          % ("system", "backend/solvent", "", "atoms", "cold wall/cpu (s)",
             "warm wall/cpu (s)", "det dE", "det dF", "warm-cold"))
    rng = np.random.default_rng(0)
    for label, h, repeats in systems:
        numbers, positions = atoms_of(h)
        charge = total_charge(h)
        shift = rng.normal(scale=0.02 / np.sqrt(3), size=positions.shape)
        for name, backend in backends.items():
            for method in ("GFN2-xTB", "GFN1-xTB"):
                for solvent in backend.solvent_models:
                    row = measure(backend, method, solvent, numbers, positions, charge,
                                  shift, repeats)
                    print("%-10s %-17s %-4s %5d %8.3f /%7.3f %8.3f /%7.3f %9.1e %9.1e %9.1e"
                          % (label, "%s/%s" % (name, solvent), method[:4], len(numbers),
                             row["cold"], row["cold_cpu"], row["warm"], row["warm_cpu"],
                             row["det_e"], row["det_f"], row["warm_cold"]))
                    sys.stdout.flush()
    print("(det dE: eV, det dF: eV/A over %d cold repeats (3 for the fragment); "
          "warm-cold: eV)" % args.repeats)

    print()
    print("SCF robustness on the perturbed helix models (1.5 A rms), GBSA(water):")
    files = sorted(glob.glob(os.path.join(structures, "xray/1us0_helix/perturbed/1.5/*.pdb")))
    print("%-11s %-9s %14s %18s %12s" % ("backend", "method", "converged", "rescued 1000 K",
                                         "mean time"))
    for name, backend in backends.items():
        for method in ("GFN2-xTB", "GFN1-xTB"):
            ok = rescued = 0
            times = []
            for f in files:
                numbers, positions = atoms_of(
                    read_model(f, make_restraints=False).get_hierarchy())
                t = time.perf_counter()
                if backend.converges(method, "gbsa", numbers, positions, 0, 300.0):
                    ok += 1
                elif backend.converges(method, "gbsa", numbers, positions, 0, 1000.0):
                    rescued += 1
                times.append(time.perf_counter() - t)
            print("%-11s %-9s %9d / %2d %18d %10.3f s"
                  % (name, method[:4], ok, len(files), rescued, statistics.mean(times)))
    if args.stress:
        print()
        print("Hard SCFs: 3j63 1-20 + 0.3 A rms noise, charge -2, vacuum, GFN2:")
        h = capped_fragment(threej63, 1, 20)
        numbers, positions = atoms_of(h)
        noise = np.random.default_rng(2)
        for k in range(3):
            x = positions + noise.normal(scale=0.3 / np.sqrt(3), size=positions.shape)
            cells = []
            for name, backend in backends.items():
                t = time.perf_counter()
                ok = backend.converges("GFN2-xTB", None, numbers, x, total_charge(h), 300.0)
                cells.append("%s %s %.1f s" % (name, "converged" if ok else "FAILED",
                                               time.perf_counter() - t))
            print("  geometry %d: %s" % (k, "; ".join(cells)))
            sys.stdout.flush()
    return 0


def atoms_of(hierarchy):
    from qrefine.model.charges import first_conformer_atoms
    from qrefine.model.elements import element_of as _element
    from ase.data import atomic_numbers
    import numpy as np
    atoms = first_conformer_atoms(hierarchy)
    numbers = np.array([atomic_numbers[_element(a).capitalize()] for a in atoms])
    positions = np.array([a.xyz for a in atoms])
    return numbers, positions


def capped_fragment(path, first, last):
    """Residues ``first``..``last`` of a model, the chain cut after C(last)
    and capped with an H 1.10 A from C along the C-N bond."""
    import iotbx.pdb
    import numpy as np
    h = iotbx.pdb.input(file_name=path).construct_hierarchy()
    sel = h.atom_selection_cache().selection("resseq %d:%d" % (first, last))
    frag = h.select(sel)
    ag = [rg for rg in frag.residue_groups() if rg.resseq_as_int() == last][0].atom_groups()[0]
    c = [a for a in ag.atoms() if a.name == " C  "][0]
    n = [a for a in h.atoms()
         if a.name == " N  " and a.parent().parent().resseq_as_int() == last + 1][0]
    cap = c.detached_copy()
    cap.name, cap.element = " HC ", " H"
    v = np.array(n.xyz) - np.array(c.xyz)
    cap.xyz = tuple(np.array(c.xyz) + 1.10 * v / np.linalg.norm(v))
    ag.append_atom(cap)
    return frag


def measure(backend, method, solvent, numbers, positions, charge, shift, repeats):
    import numpy as np
    energies, gradients, walls, cpus = [], [], [], []
    state = None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        state, e, g = backend.cold(method, solvent, numbers, positions, charge)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        energies.append(e)
        gradients.append(g)
    t, c = time.perf_counter(), time.process_time()
    e_warm, g_warm = backend.warm(state, positions + shift)
    warm, warm_cpu = time.perf_counter() - t, time.process_time() - c
    _, e_cold, _ = backend.cold(method, solvent, numbers, positions + shift, charge)
    return {
        "cold": statistics.median(walls), "cold_cpu": statistics.median(cpus),
        "warm": warm, "warm_cpu": warm_cpu,
        "det_e": max(abs(e - energies[0]) for e in energies),
        "det_f": max(np.abs(g - gradients[0]).max() for g in gradients),
        "warm_cold": abs(e_warm - e_cold),
    }


class XtbPython:
    """xtb-python through qrefine's engine (GBSA only)."""

    solvent_models = ("gbsa",)

    def __init__(self, engine):
        ok, note = engine.availability()  # loads xtb, setting its OpenMP defaults
        if not ok:
            raise ImportError(note)
        self.engine = engine

    def _atoms(self, numbers, positions):
        from ase import Atoms
        return Atoms(numbers=numbers, positions=positions)

    def cold(self, method, solvent, numbers, positions, charge, etemp=300.0):
        atoms = self._atoms(numbers, positions)
        atoms.calc = self.engine.make_calculator(method, charge=charge,
                                                 electronic_temperature=etemp,
                                                 solvent="water" if solvent else None)
        e = atoms.get_potential_energy()
        return atoms, e, -atoms.get_forces()

    def warm(self, atoms, positions):
        atoms.positions = positions
        e = atoms.get_potential_energy()
        assert atoms.calc.last_call_warm
        return e, -atoms.get_forces()

    def converges(self, method, solvent, numbers, positions, charge, etemp):
        from qrefine.engines import EngineFailed
        try:
            self.cold(method, solvent, numbers, positions, charge, etemp)
            return True
        except EngineFailed:
            return False


class Tblite:
    """tblite's Python API directly (GBSA and ALPB)."""

    solvent_models = ("gbsa", "alpb")

    def __init__(self):
        flags = sys.getdlopenflags()
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        try:
            import tblite.interface as interface
        finally:
            sys.setdlopenflags(flags)
        self.interface = interface

    def cold(self, method, solvent, numbers, positions, charge, etemp=300.0):
        from ase.units import Bohr, Hartree
        calc = self.interface.Calculator(method, numbers, positions / Bohr, charge, 0)
        calc.set("verbosity", 0)
        calc.set("temperature", etemp * 3.166808578545117e-06)
        if solvent:
            calc.add("%s-solvation" % solvent, "water")
        res = calc.singlepoint()
        return (calc, res), res.get("energy") * Hartree, \
            res.get("gradient") * Hartree / Bohr

    def warm(self, state, positions):
        from ase.units import Bohr, Hartree
        calc, res = state
        calc.update(positions / Bohr)
        res = calc.singlepoint(res)
        return res.get("energy") * Hartree, res.get("gradient") * Hartree / Bohr

    def converges(self, method, solvent, numbers, positions, charge, etemp):
        import numpy as np
        try:
            _, e, _ = self.cold(method, solvent, numbers, positions, charge, etemp)
        except self.interface.TBLiteRuntimeError:
            return False
        return bool(np.isfinite(e))


if __name__ == "__main__":
    sys.exit(main())
