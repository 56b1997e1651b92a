"""qr.refine: refine a model against a map or reflections, or regularise it."""

import os
import sys

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
  data_weight=<w>          fix the data weight (default: gradient-norm ratio)
  refine.macro_cycles=<n>  macro cycles (default 5)
  labels=<F,SIGF|I>        reflection labels; r_free_flags.label=<label>
  chem_data=<dir>          cctbx chemistry data (or $QREFINE_CHEM_DATA; see qr.setup)
  output.prefix=<name>     output file prefix (default: model name)
  output.dir=<dir>         output directory (default: current)

Outputs: <prefix>_refined.pdb, <prefix>_refined.cif, <prefix>.log and
<prefix>_summary.json (start and final validation, parameters, timings).
Inputs are never overwritten.

QM restraints (restraints=qm) need a model with all hydrogens (qr.finalise)
and an engine: engine=xtb|mopac|pyscf|orca|terachem|turbomole|gaussian,
method=, charge= (default: from protonation states), multiplicity=,
qm.clustering=false (the whole model at once).  qr.refine --engines lists the
engines and which of them can run on this machine.

options: --help, --show-defaults, --engines, --version
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0
    if argv[0] == "--version":
        from qrefine import __version__
        sys.stdout.write("qrefine %s\n" % __version__)
        return 0
    if argv[0] == "--engines":
        return show_engines()
    from qrefine import params as params_mod
    if argv[0] in ("--show-defaults", "--show_defaults"):
        sys.stdout.write(params_mod.show_defaults())
        return 0
    from qrefine.errors import QRefineError
    from qrefine.log import Reporter, header_lines
    from qrefine.outputs import OutputPaths
    reporter = None
    paths = None
    try:
        params, files = params_mod.parse(argv)
        unknown_flags = [f for f in files if f.startswith("-")]
        if unknown_flags:
            raise QRefineError("unknown option %s (qr.refine --help)" % unknown_flags[0])
        model_path = files[0] if files else ""
        paths = OutputPaths.for_run(model_path, params.output.prefix, params.output.dir,
                                    inputs=files + list(params.restraints_cif or []))
        if not files:
            from qrefine.pipeline import classify_inputs
            classify_inputs(files)
        paths.prepare_directory()
        # The log is written beside its final name and renamed at the end, so
        # a failed run leaves no half-written log behind.
        partial_log = os.path.join(paths.directory, "." + os.path.basename(paths.log) + ".partial")
        reporter = Reporter(log_path=partial_log)
        for line in header_lines("qr.refine", argv):
            reporter.info(line)
        from qrefine import pipeline
        pipeline.run(params, files, paths, reporter, argv=argv)
        reporter.info("wrote %s" % ", ".join(p for p in paths.all() + [paths.weights_plot]
                                             if p != paths.log and os.path.exists(p)))
        reporter.close()
        os.replace(partial_log, paths.log)
        return 0
    except QRefineError as e:
        _abandon(reporter)
        sys.stderr.write("qr.refine: error: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        _abandon(reporter)
        sys.stderr.write("qr.refine: interrupted; no outputs written\n")
        return 130
    except Exception as e:  # a bug, not bad input: keep the evidence
        crash_log = _keep_crash_log(reporter, paths)
        sys.stderr.write("qr.refine: internal error: %s: %s%s\n" % (
            type(e).__name__, " ".join(str(e).split())[:300],
            "; traceback in %s" % crash_log if crash_log else ""))
        return 2


def show_engines():
    """List the QM engines, whether each can run here, and what to install."""
    from qrefine.engines import list_engines
    rows = list_engines()
    sys.stdout.write("%-10s %-10s %s\n" % ("engine", "available", "notes"))
    for name, ok, note in rows:
        sys.stdout.write("%-10s %-10s %s\n" % (name, "yes" if ok else "no", note))
    return 0


def _keep_crash_log(reporter, paths):
    """Append the traceback to the partial log and keep it as <prefix>_crash.log."""
    import traceback
    if reporter is None or not reporter.log_path or paths is None:
        return None
    reporter.quiet = True
    reporter.info(traceback.format_exc())
    partial = reporter.log_path
    reporter.close()
    crash_log = paths.log[:-len(".log")] + "_crash.log"
    os.replace(partial, crash_log)
    return crash_log


def _abandon(reporter):
    """Close and delete the partial log; outputs already renamed stay complete."""
    if reporter is None:
        return
    path = reporter.log_path
    reporter.close()
    if path and os.path.exists(path):
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
