"""One reporter for progress and the log: stdout and the log file together.

Library modules never print; they are handed a Reporter (or None).
"""

import datetime
import logging
import os
import platform
import socket
import sys


class Reporter:
    def __init__(self, stream=None, log_path=None, quiet=False, log_name=None):
        """``log_name``: the log's name in errors (a run writes its log under a
        hidden name and renames it at the end)."""
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.log_path = log_path
        self.log_name = log_name or log_path
        self._log = self._log_call(open, log_path, "w") if log_path else None
        self._progress_shown = False
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        # A run's reporter also shows the library's warnings (a QM retry,
        # and in which fragment), so that they reach the log the user keeps.
        self._handler = None
        if log_path:
            self._handler = _ReporterHandler(self)
            logging.getLogger("qrefine").addHandler(self._handler)

    def info(self, text=""):
        self.end_progress()
        for line in str(text).splitlines() or [""]:
            if not self.quiet:
                self.stream.write(line + "\n")
            if self._log:
                self._log_call(self._log.write, line + "\n")
        if not self.quiet:
            self.stream.flush()
        if self._log:
            self._log_call(self._log.flush)

    def _log_call(self, fn, *args):
        """A write to the log; a full disk or a read-only directory is one
        line naming the log (bad input, exit 1), not an internal error."""
        try:
            return fn(*args)
        except OSError as e:
            from qrefine.outputs import output_error
            raise output_error(self.log_name, e) from None

    def progress(self, text):
        """A transient status line: rewritten in place on a terminal, not logged."""
        if self.quiet or not self._tty:
            return
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
        self._progress_shown = True

    def end_progress(self):
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._progress_shown = False

    def close(self):
        if self._handler is not None:
            logging.getLogger("qrefine").removeHandler(self._handler)
            self._handler = None
        self.end_progress()
        if self._log:
            log, self._log = self._log, None
            self._log_call(log.close)


class _ReporterHandler(logging.Handler):
    """Warnings of ``qrefine.*`` loggers as "warning: ..." lines of a Reporter."""

    def __init__(self, reporter):
        logging.Handler.__init__(self, level=logging.WARNING)
        self.reporter = reporter

    def emit(self, record):
        try:
            self.reporter.info("warning: " + record.getMessage())
        except Exception:  # never let a log line end the run
            self.handleError(record)


def header_lines(program, argv):
    """Versions, host and the exact command line, for the top of the log."""
    from qrefine import __version__
    try:
        from importlib.metadata import version
        cctbx_version = version("cctbx-base")
    except Exception:  # not installed from PyPI (e.g. a Phenix build)
        cctbx_version = "unknown"
    return [
        "%s (qrefine %s, cctbx-base %s, Python %s)" % (
            program, __version__, cctbx_version, platform.python_version()),
        "host %s, %d cores, %s" % (socket.gethostname(), os.cpu_count() or 1,
                                   datetime.datetime.now().isoformat(timespec="seconds")),
        "command: %s" % " ".join([program] + list(argv)),
    ]
