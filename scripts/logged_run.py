"""The error and log handling every logging command shares.

``logged_run(program, argv, prepare)``: ``prepare()`` checks the arguments and
returns ``(paths, work)``; ``work(reporter)`` does the job.  The log is written
beside its final name (``paths.log``) and renamed at the end, so a failed run
leaves no half-written log.  Bad input (QRefineError) is one line on stderr
and exit 1; an interruption exits 130; anything else is a bug: one line, exit
2, and the traceback kept in ``<prefix>_crash.log``.
"""

import os
import sys
import traceback


def answer_info_request(argv, help_text, master_str, extra=None):
    """Answer --help (or no arguments), --version and --show-defaults, and
    the flags in ``extra`` ({flag: function returning an exit code}).
    Returns the exit code, or None when the arguments ask for a run."""
    first = argv[0] if argv else "--help"
    if first in ("-h", "--help", "help"):
        sys.stdout.write(help_text)
        return 0
    if first == "--version":
        from qrefine import __version__
        sys.stdout.write("qrefine %s\n" % __version__)
        return 0
    if first in ("--show-defaults", "--show_defaults"):
        from qrefine import params as params_mod
        sys.stdout.write(params_mod.show_defaults(master_str))
        return 0
    if extra and first in extra:
        return extra[first]()
    return None


def logged_run(program, argv, prepare):
    from qrefine.errors import QRefineError
    from qrefine.log import Reporter, header_lines
    reporter = None
    paths = None
    try:
        paths, work = prepare()
        paths.prepare_directory()
        partial_log = os.path.join(paths.directory, "." + os.path.basename(paths.log) + ".partial")
        reporter = Reporter(log_path=partial_log)
        for line in header_lines(program, argv):
            reporter.info(line)
        work(reporter)
        reporter.close()
        os.replace(partial_log, paths.log)
        return 0
    except QRefineError as e:
        _abandon(reporter)
        sys.stderr.write("%s: error: %s\n" % (program, e))
        return 1
    except KeyboardInterrupt:
        _abandon(reporter)
        sys.stderr.write("%s: interrupted; no outputs written\n" % program)
        return 130
    except Exception as e:  # a bug, not bad input: keep the evidence
        crash_log = _keep_crash_log(reporter, paths)
        sys.stderr.write("%s: internal error: %s: %s%s\n" % (
            program, type(e).__name__, " ".join(str(e).split())[:300],
            "; traceback in %s" % crash_log if crash_log else ""))
        return 2


def _keep_crash_log(reporter, paths):
    """Append the traceback to the partial log and keep it as <prefix>_crash.log."""
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
