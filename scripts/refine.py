"""qr.refine: refine a model against a map or reflections, or regularise it."""

import sys

from qrefine.children import sigterm_as_interrupt
from qrefine.commands import refine as refine_command
from qrefine.config import phil as params_mod
from qrefine.config.checks import check_refine
from qrefine.engines import list_engines
from qrefine.errors import QRefineError
from qrefine.outputs import OutputPaths
from qrefine.scripts.logged_run import answer_info_request, logged_run

HELP = """\
usage: qr.refine model.pdb [map.ccp4|data.mtz] [params.eff] [key=value ...]

Refine an atomic model against a cryo-EM map (real space) or X-ray data
(reciprocal space, with bulk solvent) using the target
    T = w * T_data + T_restraints
minimised by L-BFGS over all atom sites. With no data file, or mode=opt, the
geometry alone is regularised.

Examples:
  qr.refine model.pdb data.mtz
  qr.refine model.pdb map.ccp4 resolution=3.8
  qr.refine model.pdb mode=opt
  qr.refine model.pdb data.mtz labels=IOBS output.prefix=run1 output.dir=out

Common parameters (all of them: qr.refine --show-defaults):
  restraints=cctbx|qm      source of the geometry term (default cctbx)
  engine=<name> method=<m> QM engine and method (restraints=qm)
  mode=refine|opt          fit the data, or geometry only
  resolution=<A>           map resolution (required with a map)
  data_weight=<w>          fix the data weight (default: searched around the
                           gradient-norm ratio; weights.search=false: the ratio)
  refine.macro_cycles=<n>  macro cycles (default 5)
  map.target=cctbx|cc|inner_product|relative_entropy
                           map term: map at the atoms, or a seed-004 score
  weights.protocol=search|adaptive
                           weight search, or adaptive force scaling (maps)
  labels=<F,SIGF|I>        reflection labels; r_free_flags.label=<label>
  chem_data=<dir>          cctbx chemistry data (or $QREFINE_CHEM_DATA; see qr.setup)
  weights.gate=best|previous
                           compare each trial with the previous one and the
                           best accepted one (default; stops slow slides), or
                           with the previous one only
  weights.max_r_free_rise=<r>
                           X-ray: the written model's R-free stays within r
                           (default 0.005) of the start's; else the best
                           trial or the start is kept, and the log says why
  weights.part_atoms=<n>   maps, QM: weight trials of a model over 4n atoms
                           refine a part of n atoms (default 1000; 0: whole)
  output.prefix=<name>     output file prefix (default: model name)
  output.dir=<dir>         output directory (default: current)
  output.overwrite=true    replace an earlier run's outputs (default: a rerun
                           writes <prefix>_001, _002, ...)

Outputs: <prefix>_refined.pdb, <prefix>_refined.cif, <prefix>.log and
<prefix>_summary.json (start and final validation, parameters, timings).
Inputs are never overwritten.

QM restraints (restraints=qm) need a model with all hydrogens (qr.finalise)
and an engine: engine=xtb|mopac|pyscf|orca|terachem|turbomole|gaussian,
method=, charge= (default: from protonation states), multiplicity=,
qm.clustering=true|false (fragments, or the whole model at once; by default
fragments above fragments.clustering_above=1000 atoms), nproc= (fragments in
parallel; give it the number of cores), qm.linear_scaling=true (engine=mopac:
MOZYME, linear-scaling PM7 for a whole protein), fragments.correction=
whole_model (fragments plus the whole-model minus fragment gradient, taken
each macro cycle and after fragments.correction_refresh A of atom shift:
small buffers come closer to the whole model near each reference point).  qr.refine --engines lists
the engines and which of them can run on this machine.

options: --help, --show-defaults, --engines, --version
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_info_request(argv, HELP, params_mod.MASTER_PHIL_STR,
                               {"--engines": show_engines})
    if code is not None:
        return code

    def prepare():
        params, files = params_mod.parse(argv)
        unknown_flags = [f for f in files if f.startswith("-")]
        if unknown_flags:
            raise QRefineError("unknown option %s (qr.refine --help)" % unknown_flags[0])
        check_refine(params, files)  # every check that needs no file, before any is read
        paths = OutputPaths.for_run(files[0], params.output.prefix, params.output.dir,
                                    inputs=files + list(params.restraints_cif or []),
                                    overwrite=params.output.overwrite)

        def work(reporter):
            result = refine_command.run(params, files, paths, reporter, argv=argv)
            reporter.info("wrote %s" % ", ".join(p for p in result.written if p != paths.log))
        return paths, work

    with sigterm_as_interrupt():  # a batch system's SIGTERM ends the run like Ctrl-C
        return logged_run("qr.refine", argv, prepare)


def show_engines():
    """List the QM engines, whether each can run here, and what to install."""
    rows = list_engines()
    sys.stdout.write("%-10s %-10s %s\n" % ("engine", "available", "notes"))
    for name, ok, note in rows:
        sys.stdout.write("%-10s %-10s %s\n" % (name, "yes" if ok else "no", note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
