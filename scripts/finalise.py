"""qr.finalise: make a model atom-complete (all H, full side chains, termini)
for quantum refinement."""

import sys
import time

from qrefine.commands import finalise as finalise_command
from qrefine.config import phil as params_mod
from qrefine.errors import QRefineError
from qrefine.finalise.outputs import FinalisePaths
from qrefine.finalise.params import MASTER_PHIL_STR
from qrefine.scripts.logged_run import answer_info_request, logged_run

HELP = """\
usage: qr.finalise model.pdb [params.eff] [key=value ...]

Prepare a model for qr.refine restraints=qm: keep the most occupied altloc
(occupancy 1), rebuild truncated side chains, charge chain ends (NH3+, COO-)
and cap chain breaks (neutral NH2, COOH), add every hydrogen with protonation
states at neutral pH, and regularise the added atoms if they clash.  Input
heavy atoms never move.  Refuses nucleic acids, ligands without restraints
and residues with missing backbone atoms.

Examples:
  qr.finalise model.pdb
  qr.finalise model.pdb selection="chain A"
  qr.finalise model.pdb "finalise.protonation=HIS A 57 = HIP" restraints_cif=lig.cif

Parameters (all of them: qr.finalise --show-defaults):
  selection=<sel>                cctbx atom selection to finalise
  finalise.protonation=<spec>    'RESNAME CHAIN RESSEQ = STATE' (repeatable);
                                 HIE HID HIP ASP ASH GLU GLH LYS LYN CYS CYM TYR TYM
  finalise.termini=charged|neutral        chain ends (default charged)
  finalise.chain_breaks=neutral|charged   ends at gaps (default neutral)
  restraints_cif=<file>          restraints for ligands (repeatable)
  chem_data=<dir>                cctbx chemistry data
  output.prefix=<name>           default: model name
  output.dir=<dir>               default: current directory

Outputs: <prefix>_complete.pdb, <prefix>_complete.cif, <prefix>_finalise.log.

options: --help, --show-defaults, --version
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_info_request(argv, HELP, MASTER_PHIL_STR)
    if code is not None:
        return code

    def prepare():
        params, files = params_mod.parse(argv, master_str=MASTER_PHIL_STR, program="qr.finalise")
        model_path = _model_path(files)
        if params.keep_altlocs:
            raise QRefineError("keep_altlocs=true is not supported yet; qr.finalise keeps the "
                               "most occupied conformer of each residue")
        paths = FinalisePaths.for_run(model_path, params.output.prefix, params.output.dir,
                                      inputs=files + list(params.restraints_cif or []),
                                      overwrite=params.output.overwrite)
        return paths, lambda reporter: _run(params, model_path, paths, reporter)

    return logged_run("qr.finalise", argv, prepare)


def _model_path(files):
    unknown_flags = [f for f in files if f.startswith("-")]
    if unknown_flags:
        raise QRefineError("unknown option %s (qr.finalise --help)" % unknown_flags[0])
    if len(files) != 1:
        raise QRefineError("give exactly one model file (got %s); usage: qr.finalise model.pdb "
                           "key=value ..." % (", ".join(files) or "none"))
    return files[0]


def _run(params, model_path, paths, reporter):
    t0 = time.time()
    run = finalise_command.run(params, model_path, paths, reporter)
    for note in run.notes:
        reporter.info("note: " + note)
    reporter.info("wrote %s (%.1f s)" % (", ".join(run.written), time.time() - t0))


if __name__ == "__main__":
    sys.exit(main())
