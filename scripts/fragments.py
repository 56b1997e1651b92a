"""qr.fragments: how a model is cut into QM fragments, and how good the
fragment gradient is."""

import sys

from qrefine.commands import fragments as fragments_command
from qrefine.config import phil as params_mod
from qrefine.model.charges import parse_ligand_charges
from qrefine.scripts.logged_run import answer_info_request, plain_run

HELP = """\
usage: qr.fragments model.pdb [engine=xtb] [method=GFN2-xTB]
                    [max_cluster_residues=15] [buffer=8.0] [charged_buffer=None]
                    [nproc=1]
                    [cap_gradients=project|drop] [solvent=water|none]
                    [compare=false]
                    [ligand_charge=RESNAME:CHARGE ...]

Cut a model with hydrogens into clusters of residues (recursive spectral
bisection of the residue interaction graph: covalent links, H-bonds,
contacts) and print each cluster's residues, size, buffer and fragment atom
count (cluster + buffer + H caps), charge and multiplicity.

With compare=true the fragment gradient and the whole-model gradient are
computed with the engine and the per-atom error of the fragment gradient
(norm of the difference, kcal/mol/A) is reported: RMS, max, the 5 worst
atoms, and both wall times.  solvent= is passed to the engine (xtb:
implicit solvent name, or none for vacuum; default: the engine's).
"""

def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code
    return plain_run("qr.fragments", lambda: _run(_parse(argv), sys.stdout))


def _run(o, out):
    report = fragments_command.run(
        o["model"], o["engine"], o["method"], options=o["options"],
        max_cluster_residues=o["max_cluster_residues"], buffer=o["buffer"],
        charged_buffer=o["charged_buffer"], nproc=o["nproc"],
        cap_gradients=o["cap_gradients"], ligand_charges=o["ligand_charges"],
        contact_cutoff=o["contact_cutoff"], compare=o["compare"])
    out.write("model: %s (%d atoms, %d residues)\n"
              % (report.model_path, report.n_atoms, report.n_residues))
    out.write("engine: %s %s; max_cluster_residues=%d buffer=%.2f A%s\n"
              % (o["engine"], report.method, o["max_cluster_residues"], o["buffer"],
                 "" if o["charged_buffer"] is None
                 else " charged_buffer=%.2f A" % o["charged_buffer"]))
    out.write("clusters: %d (%.2f s)\n" % (len(report.fragments), report.clustering_s))
    out.write("%4s %8s %8s %7s %5s %6s %4s  %s\n" % (
        "#", "cluster", "buffer", "atoms", "caps", "charge", "mult", "cluster residues"))
    for f in report.fragments:
        out.write("%4d %8d %8d %7d %5d %+6d %4d  %s\n" % (
            f.index, f.cluster_residues, f.buffer_residues, f.atoms, f.caps, f.charge,
            f.multiplicity, _ranges(list(f.residues))))
    sizes = report.sizes
    out.write("fragment atoms: mean %.1f, max %d, total %d (model %d)\n"
              % (sum(sizes) / len(sizes), max(sizes), sum(sizes), report.n_atoms))
    c = report.comparison
    if c is not None:
        out.write("gradient error vs whole model (kcal/mol/A): RMS %.3f, max %.3f "
                  "(whole-model gradient RMS %.3f)\n"
                  % (c.rms_error, c.max_error, c.reference_rms))
        out.write("wall time: fragments %.2f s, whole model %.2f s\n"
                  % (c.fragments_s, c.whole_s))
        out.write("worst atoms:\n")
        for label, error, norm in c.worst:
            out.write("  %-22s error %.3f  |g| %.3f\n" % (label, error, norm))
    return 0


def _ranges(labels):
    return ", ".join(labels) if len(labels) <= 6 else "%s ... %s" % (
        ", ".join(labels[:3]), ", ".join(labels[-2:]))


MASTER_PHIL_STR = """
engine = xtb
  .type = str
  .help = "QM engine (qr.refine --engines lists them)."
method = None
  .type = str
  .help = "Engine method; None: the engine default."
max_cluster_residues = 15
  .type = int
  .help = "Largest cluster, in residues."
buffer = 8.0
  .type = float
  .help = "Residues within this distance (A) of a cluster join its fragment."
charged_buffer = None
  .type = float
  .help = "Charged residues within this larger distance (A) join it too (qr.refine's fragments.charged_buffer); None: none beyond buffer."
nproc = 1
  .type = int
  .help = "Processes computing fragments in parallel."
cap_gradients = *project drop
  .type = choice
  .help = "Carry cap-H gradients back onto the cut bond's atoms, or drop them."
solvent = None
  .type = str
  .help = "Implicit solvent for the engine (xtb: a solvent name, or none); None: the engine default."
compare = False
  .type = bool
  .help = "Also compute the whole-model gradient and report the fragment gradient's error."
contact_cutoff = 4.0
  .type = float
  .help = "Heavy-atom distance (A) below which two residues count as in contact."
ligand_charge = None
  .type = str
  .multiple = True
  .help = "Charge of a residue name the rules do not know, RESNAME:CHARGE."
"""


def _parse(argv):
    p, model_path = params_mod.parse_one_model(argv, MASTER_PHIL_STR, "qr.fragments")
    options = {}
    if p.solvent is not None:
        options["solvent"] = None if p.solvent.lower() == "none" else p.solvent
    return {"model": model_path, "engine": p.engine, "method": p.method,
            "max_cluster_residues": p.max_cluster_residues, "buffer": p.buffer,
            "charged_buffer": p.charged_buffer,
            "nproc": p.nproc, "cap_gradients": p.cap_gradients, "compare": p.compare,
            "contact_cutoff": p.contact_cutoff,
            "ligand_charges": parse_ligand_charges(p.ligand_charge), "options": options}


if __name__ == "__main__":
    sys.exit(main())
