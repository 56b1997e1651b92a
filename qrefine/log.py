"""One reporter for progress and the log: stdout and the log file together.

Library modules never print; they are handed a Reporter (or None).  Its
live line (a weight trial's iterations, the fragments of a QM gradient) is a
tqdm bar on a terminal and nothing elsewhere: piped and batch runs get the
plain lines that the callers also write to the log.
"""

import datetime
import logging
import sys

from tqdm import tqdm

from qrefine.errors import output_error
from qrefine.provenance import host, versions


# tqdm formats of the live line: a status with its elapsed time, or a bar.
LIVE_LINE = "{desc} [{elapsed}]"
LIVE_BAR = "{desc} {n_fmt}/{total_fmt} |{bar:20}| {elapsed}<{remaining}"


class Reporter:
    def __init__(self, stream=None, log_path=None, quiet=False, log_name=None):
        """``log_name``: the log's name in errors (a run writes its log under a
        hidden name and renames it at the end)."""
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.log_path = log_path
        self.log_name = log_name or log_path
        self._log = self._log_call(open, log_path, "w") if log_path else None
        self._bar = None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        # A run's reporter also shows the library's warnings (a QM retry,
        # and in which fragment), so that they reach the log the user keeps.
        self._handler = None
        if log_path:
            self._handler = _ReporterHandler(self)
            logging.getLogger("qrefine").addHandler(self._handler)

    def info(self, text=""):
        self.end_progress()
        lines = str(text).splitlines() or [""]
        if not self.quiet:
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()
        self._to_log(lines)

    def _log_call(self, fn, *args):
        """A write to the log; a full disk or a read-only directory is one
        line naming the log (bad input, exit 1), not an internal error."""
        try:
            return fn(*args)
        except OSError as e:
            raise output_error(self.log_name, e) from None

    def log_line(self, text):
        """A line for the log file only (progress a batch run keeps, which
        would crowd the screen)."""
        self._to_log([str(text)])

    def _to_log(self, lines):
        if self._log:
            for line in lines:
                self._log_call(self._log.write, line + "\n")
            self._log_call(self._log.flush)

    def progress(self, text, done=None, total=None):
        """A transient status line, not logged: ``text`` alone, or with
        ``done`` of ``total`` a bar with the time left."""
        if self.quiet or not self._tty:
            return
        if self._bar is not None and self._bar.total != total:
            self.end_progress()
        if self._bar is None:
            self._bar = tqdm(total=total, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format=(LIVE_LINE if total is None else LIVE_BAR))
        if done is not None:
            self._bar.n = done
        self._bar.set_description_str(text, refresh=False)
        self._bar.refresh()

    def end_progress(self):
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.close()  # leave=False: the line is cleared

    def close(self):
        if self._handler is not None:
            logging.getLogger("qrefine").removeHandler(self._handler)
            self._handler = None
        self.end_progress()
        if self._log:
            log, self._log = self._log, None
            self._log_call(log.close)


class ProgressOnly:
    """A Reporter's live line without its log lines: what a weight trial's
    refinement shows while it runs (its cycles are summed up in one trial
    line afterwards, so their own lines would only repeat it)."""

    def __init__(self, reporter, prefix=""):
        self.reporter = reporter
        self.prefix = prefix

    def info(self, text=""):
        pass

    def log_line(self, text):
        if self.reporter is not None:
            self.reporter.log_line(self.prefix + text)

    def progress(self, text, done=None, total=None):
        if self.reporter is not None:
            self.reporter.progress(self.prefix + text, done, total)

    def end_progress(self):
        if self.reporter is not None:
            self.reporter.end_progress()


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
    v, h = versions(), host()
    return [
        "%s (qrefine %s, cctbx-base %s, Python %s)" % (
            program, v["qrefine"], v["cctbx"] or "unknown", v["python"]),
        "host %s, %d cores, %s" % (h["name"], h["cores"],
                                   datetime.datetime.now().isoformat(timespec="seconds")),
        "command: %s" % " ".join([program] + list(argv)),
    ]
