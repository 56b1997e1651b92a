"""qr.comparama: Ramachandran plot of a model with arrows from an earlier model."""

import os
import sys

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
    from qrefine.scripts.logged_run import answer_info_request, plain_run
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code
    def work():
        run(argv)

    return plain_run("qr.comparama", work)


def run(argv):
    """Parse, compare, write; return the list of files written."""
    from qrefine import chem_data
    from qrefine.errors import QRefineError
    from qrefine.outputs import write_atomic
    from qrefine.validation import comparama, rama_plot

    params, files = _parse(argv)
    flags = [f for f in files if f.startswith("-")]
    if flags:
        raise QRefineError("unknown option %s (qr.comparama --help)" % flags[0])
    if len(files) != 2:
        raise QRefineError("give two model files, before and after (got %d): "
                           "qr.comparama before.pdb after.pdb" % len(files))
    before_path, after_path = files
    prefix = params.output.prefix or os.path.splitext(os.path.basename(after_path))[0]
    if os.sep in prefix or prefix in (".", ".."):
        raise QRefineError("output.prefix=%s must be a plain name; use output.dir= for the "
                           "directory" % prefix)
    directory = os.path.abspath(params.output.dir or ".")
    base = os.path.join(directory, prefix + "_comparama")
    image, table, csv_path = base + "." + params.format, base + ".txt", base + ".csv"
    inputs = {os.path.realpath(p) for p in files}
    for p in (image, table, csv_path):
        if os.path.realpath(p) in inputs:
            raise QRefineError("output %s would overwrite an input file; choose another "
                               "output.prefix= or output.dir=" % p)

    chem_data.activate(params.chem_data)
    result = comparama.compare_files(before_path, after_path, rama_z=params.rama_z)

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise QRefineError("cannot create output directory %s: %s" % (directory, e.strerror))
    if not os.access(directory, os.W_OK):
        raise QRefineError("output directory %s is not writable" % directory)
    rama_plot.write_plot(result, image, format=params.format, labels=params.labels)
    report = result.format_table()
    write_atomic(table, report)
    write_atomic(csv_path, result.as_csv())
    sys.stdout.write(report)
    sys.stdout.write("\nwrote %s, %s, %s\n" % (image, table, csv_path))
    return [image, table, csv_path]


def _parse(argv):
    from qrefine import params as params_mod
    return params_mod.parse(argv, master_str=MASTER_PHIL_STR, program="qr.comparama")


if __name__ == "__main__":
    sys.exit(main())
