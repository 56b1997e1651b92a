"""qr.charges: the total charge of a model and the residues that carry one."""

import sys

from qrefine.commands import charges as charges_command
from qrefine.config import phil as params_mod
from qrefine.model.charges import parse_ligand_charges
from qrefine.scripts.logged_run import answer_info_request, plain_run

HELP = """\
usage: qr.charges model.pdb [restraints_cif=<ligand.cif> ...]
                  [ligand_charge=RESNAME:CHARGE ...] [multiplicity=N]

Print the total formal charge of a model with hydrogens, derived from the
protonation state of every residue (termini, ASP, GLU, LYS, ARG, HIS, CYS,
TYR), ions and known small molecules, then one line per residue whose
charge is not zero, and notes on residues whose charge was assumed.  The
electron count is checked against the spin multiplicity (default: closed
shell, so an odd count is reported as an error).

  restraints_cif=  ligand dictionary; its _chem_comp_atom.charge column
                   (formal charges) is used for that ligand
  ligand_charge=   charge of a residue name the rules do not know, e.g.
                   ligand_charge=NDP:-4 (may be repeated)
  multiplicity=    spin multiplicity to check the electron count against
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code
    return plain_run("qr.charges", lambda: _run(_parse(argv), sys.stdout))


def _run(options, out):
    report = charges_command.run(options["model"], options["restraints_cif"],
                                 options["ligand_charges"], options["multiplicity"])
    out.write("model: %s\n" % report.model_path)
    out.write("total charge: %+d\n" % report.total_charge)
    out.write("electrons: %d\n" % report.electrons)
    if report.charged:
        out.write("charged residues (%d):\n" % len(report.charged))
        for r in report.charged:
            out.write("  %-10s %-4s %+d%s\n" % (r.residue, r.resname, r.charge,
                                               "  (%s)" % r.note if r.note else ""))
    if report.assumed:
        out.write("notes:\n")
        for r in report.assumed:
            out.write("  %-10s %-4s %s\n" % (r.residue, r.resname, r.note))
    out.write("multiplicity: %d\n" % report.multiplicity)
    return 0


MASTER_PHIL_STR = """
restraints_cif = None
  .type = path
  .multiple = True
  .help = "Ligand dictionary; its formal charges are used for that ligand."
ligand_charge = None
  .type = str
  .multiple = True
  .help = "Charge of a residue name the rules do not know, RESNAME:CHARGE (e.g. NDP:-4)."
multiplicity = None
  .type = int
  .help = "Spin multiplicity to check the electron count against."
"""


def _parse(argv):
    p, model_path = params_mod.parse_one_model(argv, MASTER_PHIL_STR, "qr.charges")
    return {"model": model_path, "restraints_cif": list(p.restraints_cif or []),
            "ligand_charges": parse_ligand_charges(p.ligand_charge),
            "multiplicity": p.multiplicity}


if __name__ == "__main__":
    sys.exit(main())
