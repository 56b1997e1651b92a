"""The error and log handling every command shares (``logged_run`` for those
that write a log, ``plain_run`` for the others).

``logged_run(program, argv, prepare)``: ``prepare()`` checks the arguments and
returns ``(paths, work)``; ``work(reporter)`` does the job.  The log is written
beside its final name (``paths.log``) and renamed at the end, so a failed run
leaves no half-written log.  Bad input (QRefineError) is one line on stderr
and exit 1; an interruption exits 130; anything else is a bug: one line, exit
2, and the traceback kept in ``<prefix>_crash.log``.  A log or output that
cannot be written (a full disk, a directory gone read-only) is not a bug but
the environment: one line naming the file, exit 1.  A run that fails removes
the outputs it had renamed into place (``paths.staged``), so what is left in
the directory is either a complete set or none.  A run holds a lock on
its output prefix (``.<prefix>.log.lock`` in the output directory) from start
to end, so a second run into the same prefix is refused instead of replacing
the first one's files.
"""

import fcntl
import os
import sys
import traceback

from qrefine import __version__
from qrefine.config import phil as params_mod
from qrefine.config.phil import params_file_settings, params_files
from qrefine.errors import QRefineError, output_error
from qrefine.log import Reporter, header_lines


def answer_info_request(argv, help_text, master_str, extra=None):
    """Answer --help (or no arguments), --version and --show-defaults, and
    the flags in ``extra`` ({flag: function returning an exit code}).
    Returns the exit code, or None when the arguments ask for a run."""
    first = argv[0] if argv else "--help"
    if first in ("-h", "--help", "help"):
        sys.stdout.write(help_text)
        return 0
    if first == "--version":
        sys.stdout.write("qrefine %s\n" % __version__)
        return 0
    if first in ("--show-defaults", "--show_defaults"):
        sys.stdout.write(params_mod.show_defaults(master_str))
        return 0
    if extra and first in extra:
        return extra[first]()
    return None


def plain_run(program, work):
    """The runner of commands that write no log (qr.comparama, qr.charges,
    qr.fragments, qr.setup): ``work()`` returns the exit code (None: 0).
    The same endings as :func:`logged_run`: bad input is one line on stderr
    and exit 1, an interruption 130, a bug one line and exit 2."""
    try:
        code = work()
        return 0 if code is None else code
    except QRefineError as e:
        sys.stderr.write("%s: error: %s\n" % (program, e))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % program)
        return 130
    except Exception as e:  # a bug, not bad input
        sys.stderr.write("%s: internal error: %s: %s\n"
                         % (program, type(e).__name__, " ".join(str(e).split())[:300]))
        return 2


def logged_run(program, argv, prepare):
    reporter = None
    paths = None
    try:
        paths, work = prepare()
        paths.prepare_directory()
        lock = _lock_prefix(paths)
        try:  # released before the handlers below tidy the directory
            partial_log = os.path.join(paths.directory,
                                       "." + os.path.basename(paths.log) + ".partial")
            reporter = Reporter(log_path=partial_log, log_name=paths.log)
            for line in header_lines(program, argv):
                reporter.info(line)
            for f in params_files(argv):
                reporter.info("parameters from %s: %s" % (f, "; ".join(params_file_settings(f))))
            if getattr(paths, "note", None):
                reporter.info("note: " + paths.note)
            work(reporter)
            reporter.close()
            try:
                os.replace(partial_log, paths.log)
            except OSError as e:
                raise output_error(paths.log, e) from None
        finally:
            _unlock(lock)
        return 0
    except QRefineError as e:
        _abandon(reporter, paths)
        sys.stderr.write("%s: error: %s\n" % (program, e))
        return 1
    except KeyboardInterrupt:
        _abandon(reporter, paths)
        sys.stderr.write("%s: interrupted; no outputs written\n" % program)
        return 130
    except Exception as e:  # a bug, not bad input: keep the evidence
        crash_log = _keep_crash_log(reporter, paths)
        sys.stderr.write("%s: internal error: %s: %s%s\n" % (
            program, type(e).__name__, " ".join(str(e).split())[:300],
            "; traceback in %s" % crash_log if crash_log else ""))
        return 2


def _lock_prefix(paths):
    """An exclusive lock on the run's output prefix, or a one-line error.

    The lock file is removed at the end; a run that opened it just before
    it went away would hold a lock on a deleted file, so after locking it
    checks that the path still names the file it locked, and else tries
    again."""
    path = os.path.join(paths.directory, "." + os.path.basename(paths.log) + ".lock")
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only or full file system
            raise output_error(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise QRefineError("another run is writing output prefix %s in %s (lock %s); "
                               "wait for it to finish or choose another output.prefix="
                               % (os.path.basename(paths.log)[:-len(".log")],
                                  paths.directory, path))
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd, path
        except FileNotFoundError:
            pass
        os.close(fd)
    raise QRefineError("cannot lock output prefix in %s (lock file %s keeps changing)"
                       % (paths.directory, path))


def _unlock(lock):
    """Remove the lock file while it is still held, then release it."""
    fd, path = lock
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)


def _keep_crash_log(reporter, paths):
    """Append the traceback to the partial log and keep it as <prefix>_crash.log.
    The run's outputs are rolled back; on a full disk no crash log is kept."""
    _roll_back(paths)
    if reporter is None or not reporter.log_path or paths is None:
        return None
    partial = reporter.log_path
    crash_log = paths.log[:-len(".log")] + "_crash.log"
    try:
        reporter.quiet = True
        reporter.info(traceback.format_exc())
        reporter.close()
        os.replace(partial, crash_log)
    except (OSError, QRefineError):  # the traceback has nowhere to go
        _abandon(reporter)
        return None
    return crash_log


def _roll_back(paths):
    staged = getattr(paths, "staged", None)
    if staged is not None:
        staged.roll_back()


def _abandon(reporter, paths=None):
    """Close and delete the partial log, and remove the outputs this run
    renamed into place (a failed run leaves none).  An output directory this
    run created is removed again if it is empty.  On a directory gone
    read-only, what cannot be removed stays."""
    if reporter is not None:
        path = reporter.log_path
        try:
            reporter.close()
        except (OSError, QRefineError):  # its last lines did not fit on the disk
            pass
        try:
            if path and os.path.exists(path):
                os.unlink(path)
        except OSError:
            pass
    _roll_back(paths)
    if paths is not None and getattr(paths, "created_directory", False):
        try:
            os.rmdir(paths.directory)
        except OSError:  # not empty (another run's files) or gone: leave it
            pass
