"""Engine child processes: a time limit, and no orphans.

Every external program (MOPAC, ORCA, ...) runs through :func:`run` in a
process group of its own, so that it and whatever it starts can be ended
together: when it overruns ``timeout`` (``qm.timeout=``), and when qrefine
itself is interrupted (Ctrl-C, or SIGTERM from a batch system, which
:func:`sigterm_as_interrupt` turns into an interruption).  Without its own
group a program started by a killed qrefine ran on to its end, orphaned.
"""

import contextlib
import os
import signal
import subprocess


class ChildTimeout(Exception):
    """The program did not finish within its time limit (and was killed)."""


def run(argv, cwd, env=None, stdin=None, stdout=None, stderr=None, timeout=None,
        shell=False):
    """Run a program to its end and return its exit status; kill its whole
    process group when ``timeout`` seconds pass (then raise ChildTimeout) or
    when this process is interrupted (then re-raise)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                            stderr=stderr, shell=shell, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ChildTimeout("did not finish in %g s (qm.timeout=%g)" % (timeout, timeout))
    except BaseException:  # KeyboardInterrupt, SystemExit: end the program too
        _kill_group(proc)
        raise


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled as an interruption, so that every cleanup
    (engine programs, fragment workers, partial outputs) runs."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread."""
    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
