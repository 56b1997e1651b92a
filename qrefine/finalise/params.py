"""PHIL parameters of qr.finalise (parsed with ``qrefine.config.phil.parse``)."""

from qrefine.config.phil import OUTPUT_PHIL_STR

MASTER_PHIL_STR = """
selection = None
  .type = str
  .help = "cctbx atom selection of the part to finalise, e.g. 'chain A'."
finalise {
  protonation = None
    .type = str
    .multiple = True
    .help = "Protonation state of one residue, 'RESNAME CHAIN RESSEQ = STATE', e.g. 'HIS A 57 = HIE'. States: HIE HID HIP, ASP ASH, GLU GLH, LYS LYN, CYS CYM, TYR TYM, ARG."
  termini = *charged neutral
    .type = choice
    .help = "Chain ends: charged (NH3+, COO-; neutral pH) or neutral (NH2, COOH)."
  chain_breaks = charged *neutral
    .type = choice
    .help = "Ends at chain breaks (missing residues): neutral (NH2, COOH) or charged."
}
restraints_cif = None
  .type = path
  .multiple = True
  .help = "Restraint dictionaries (CIF) for ligands unknown to the monomer library."
keep_altlocs = False
  .type = bool
  .help = "Keep alternate conformations (not supported yet)."
chem_data = None
  .type = path
  .help = "Directory with the cctbx chemistry data (mon_lib, rotarama_data, rama_z)."
""" + OUTPUT_PHIL_STR
