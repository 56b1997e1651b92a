"""qr.setup: install the cctbx chemistry data qrefine needs.

The PyPI cctbx-base has no monomer library and no MolProbity reference data;
this copies them into the user data directory, where qr.refine finds them.
"""

import sys

from qrefine.commands import setup as setup_command
from qrefine.errors import QRefineError
from qrefine.model import chem_data
from qrefine.scripts.logged_run import answer_info_request, plain_run

HELP = """\
usage: qr.setup chem_data=<directory|archive|URL> [destination=<dir>]
       qr.setup --check [chem_data=<dir>]

Install a copy of the cctbx chemistry data (mon_lib/, geostd/,
rotarama_data/, rama_z/) into the qrefine user data directory, or check
which copy qr.refine would use.  The source may be a directory, a .tar.gz/.zip
archive, or a URL of such an archive.

qr.refine looks for the data in this order: chem_data=, $QREFINE_CHEM_DATA,
$MMTBX_CCP4_MONOMER_LIB or $CLIBD_MON (their parent directory), $PHENIX, and
the user data directory (%s).
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--show-defaults", "--show_defaults"):
        argv = ["--help"]  # qr.setup has no PHIL parameters: its help lists them all
    code = answer_info_request(argv, HELP % chem_data.user_data_dir(), "")
    if code is not None:
        return code
    return plain_run("qr.setup", lambda: _run(argv, sys.stdout))


def _run(argv, out):
    options = {}
    check = False
    for arg in argv:
        if arg == "--check":
            check = True
        elif "=" in arg and arg.split("=", 1)[0] in ("chem_data", "destination"):
            key, value = arg.split("=", 1)
            options[key] = value
        else:
            raise QRefineError("unexpected argument %s (qr.setup --help)" % arg)
    result = setup_command.run(options.get("chem_data"), options.get("destination"), check)
    if result.installed:
        out.write("installed chemistry data in %s\n" % result.path)
    else:
        out.write("chemistry data found: %s\n" % result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
