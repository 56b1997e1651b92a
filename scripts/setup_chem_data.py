"""qr.setup: install the cctbx chemistry data qrefine needs.

The PyPI cctbx-base has no monomer library and no MolProbity reference data;
this copies them into the user data directory, where qr.refine finds them.
"""

import sys

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
    from qrefine import chem_data
    from qrefine.scripts.logged_run import answer_info_request, plain_run
    if argv and argv[0] in ("--show-defaults", "--show_defaults"):
        argv = ["--help"]  # qr.setup has no PHIL parameters: its help lists them all
    code = answer_info_request(argv, HELP % chem_data.user_data_dir(), "")
    if code is not None:
        return code
    return plain_run("qr.setup", lambda: _run(argv, sys.stdout))


def _run(argv, out):
    from qrefine import chem_data
    from qrefine.errors import QRefineError
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
    if check:
        path = chem_data.locate(options.get("chem_data"))
        out.write("chemistry data found: %s\n" % path)
        return 0
    if "chem_data" not in options:
        raise QRefineError("give the source: qr.setup chem_data=<directory|archive|URL>")
    path = chem_data.install(options["chem_data"], options.get("destination"))
    out.write("installed chemistry data in %s\n" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
