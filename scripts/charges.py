"""qr.charges: the total charge of a model and the residues that carry one."""

import sys

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
    from qrefine.scripts.logged_run import answer_info_request, plain_run
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code
    return plain_run("qr.charges", lambda: _run(_parse(argv), sys.stdout))


def _run(options, out):
    from qrefine import charges
    from qrefine.model_io import read_model
    # No restraints are built, so the monomer library is not needed.
    model = read_model(options["model"], restraint_cifs=options["restraints_cif"],
                       make_restraints=False)
    rows = charges.residue_charges(model, options["ligand_charges"])
    total = sum(r.charge for r in rows)
    n_electrons = charges.electron_count(model, total)
    multiplicity = options["multiplicity"]
    out.write("model: %s\n" % options["model"])
    out.write("total charge: %+d\n" % total)
    out.write("electrons: %d\n" % n_electrons)
    charged = [r for r in rows if r.charge]
    if charged:
        out.write("charged residues (%d):\n" % len(charged))
        for r in charged:
            out.write("  %-10s %-4s %+d%s\n" % (r.residue, r.resname, r.charge,
                                               "  (%s)" % r.note if r.note else ""))
    notes = [r for r in rows if r.note and not r.charge]
    if notes:
        out.write("notes:\n")
        for r in notes:
            out.write("  %-10s %-4s %s\n" % (r.residue, r.resname, r.note))
    m = charges.check_multiplicity(n_electrons, multiplicity)
    out.write("multiplicity: %d\n" % m)
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
    from qrefine import params as params_mod
    from qrefine.charges import parse_ligand_charges
    p, model_path = params_mod.parse_one_model(argv, MASTER_PHIL_STR, "qr.charges")
    return {"model": model_path, "restraints_cif": list(p.restraints_cif or []),
            "ligand_charges": parse_ligand_charges(p.ligand_charge),
            "multiplicity": p.multiplicity}


if __name__ == "__main__":
    sys.exit(main())
