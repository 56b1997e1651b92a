"""qr.comparama: Ramachandran plot of a model with arrows from an earlier model."""

import sys

from qrefine.commands import comparama as comparama_command
from qrefine.config import phil as params_mod
from qrefine.errors import QRefineError
from qrefine.scripts.logged_run import answer_info_request, plain_run

HELP = """\
usage: qr.comparama before.pdb after.pdb [key=value ...]

Draw the Ramachandran plots of after.pdb in the six MolProbity categories
(General, Ile/Val, pre-Pro, Gly, trans-Pro, cis-Pro) with the Top8000
favored (2 %) and allowed (0.05 % general, 0.2 % cis-Pro, 0.1 % others)
contours, and an arrow from before to after for every residue whose
(phi, psi) moved from one region to another:

  light green  left the outlier region (outlier -> allowed or favored)
  red          became an outlier (favored or allowed -> outlier)
  orange       favored -> allowed
  green        allowed -> favored

Residues are matched by chain, residue number, insertion code and altloc;
each is drawn in the panel of its category in after.  Points are the
residues of after (red: outliers).  Each panel gives the percentages
favored and outliers (before -> after) and its arrow counts; the title
gives the whole-model numbers and Rama-Z.  Residues with phi/psi in only
one of the models are listed in the table, not dropped.

Examples:
  qr.comparama start.pdb refined.pdb
  qr.comparama start.pdb refined.pdb format=pdf output.dir=plots

Parameters:
  output.prefix=<name>     output file prefix (default: after's file name)
  output.dir=<dir>         output directory (default: current)
  format=png|pdf           image format (default png)
  labels=outliers|all|none name the moved residues at the arrow heads:
                           those that left or entered the outlier region
                           (default), all of them, or none
  rama_z=true|false        compute the Rama-Z scores (default true)
  chem_data=<dir>          cctbx chemistry data (or $QREFINE_CHEM_DATA; see qr.setup)

Outputs: <prefix>_comparama.png (or .pdf), and the moved residues as a text
report <prefix>_comparama.txt and a table <prefix>_comparama.csv (also
printed).  Inputs are never overwritten.

options: --help, --show-defaults
"""

MASTER_PHIL_STR = """
format = *png pdf
  .type = choice
  .help = "Image format of <prefix>_comparama.<format>."
labels = *outliers all none
  .type = choice
  .help = "Moved residues named at the arrow heads: those that left or entered the outlier region, all, or none."
rama_z = True
  .type = bool
  .help = "Compute the Rama-Z scores of both models (about a second each)."
chem_data = None
  .type = path
  .help = "Directory with the cctbx chemistry data (rotarama_data, rama_z)."
output {
  prefix = None
    .type = str
    .help = "Prefix of output files; default: the file name of the after model without extension."
  dir = "."
    .type = path
    .help = "Directory for output files (created if needed)."
}
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code
    def work():
        run(argv)

    return plain_run("qr.comparama", work)


def run(argv):
    """Parse, compare, write; return the list of files written."""
    params, files = _parse(argv)
    flags = [f for f in files if f.startswith("-")]
    if flags:
        raise QRefineError("unknown option %s (qr.comparama --help)" % flags[0])
    if len(files) != 2:
        raise QRefineError("give two model files, before and after (got %d): "
                           "qr.comparama before.pdb after.pdb" % len(files))
    result = comparama_command.run(files[0], files[1], params)
    sys.stdout.write(result.report)
    sys.stdout.write("\nwrote %s\n" % ", ".join(result.written))
    return list(result.written)


def _parse(argv):
    return params_mod.parse(argv, master_str=MASTER_PHIL_STR, program="qr.comparama")


if __name__ == "__main__":
    sys.exit(main())
