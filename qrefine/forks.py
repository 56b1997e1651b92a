"""Work done in a forked copy of this process, on another core.

With library restraints a refinement's time goes to weight trials and
validation, each a pure function of state this process already holds (the
model, the map, the restraints).  A forked child inherits that state for
free (copy-on-write), computes one such function and sends back its value;
nothing has to be pickled but the answer.  :class:`ForkedCall` is one such
child; :class:`ForkedTrials` runs weight trials in them, the next trial
started before the current one is judged.

Why ``os.fork`` and not ``multiprocessing``: a child must not flush what
the parent has buffered for its log or the terminal (the lines would appear
twice), nor run its exit handlers (probe2's or the checkpoint's files), so
it writes its answer and leaves with ``os._exit``.  Its stdout and stderr go
to /dev/null: a trial's live progress line would garble the parent's.

Only for work whose state survives a fork: a library's OpenMP threads do
not (whole-model QM by an in-process engine is forked only with one engine
thread, see ``limit_engine_threads`` in :mod:`qrefine.commands.refine`),
nor do worker processes or a program's work directory, so QM fragments and
program engines keep to their own processes
(:func:`qrefine.refine.protocol.parallel_trials`).
"""

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback

import numpy as np
import scipy

from qrefine.errors import QRefineError
from qrefine.native import int_function, wheel_libs


def can_fork():
    return hasattr(os, "fork")


class ForkedCall:
    """``function()`` computed in a forked child; :meth:`result` waits for
    it and returns ``(value, seconds the child took)``, or raises what the
    child raised.  ``then``: a second function the child computes after
    sending the first answer, whose answer :meth:`later` waits for; a
    caller that does not want it ends the child with :meth:`cancel`."""

    def __init__(self, function, what="forked work", then=None):
        self.what = what
        reader, writer = multiprocessing.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            reader.close()
            _run_child([function] + ([then] if then is not None else []), writer)
        writer.close()
        self.pid, self._reader = pid, reader
        self._answers = []
        self._expected = 2 if then is not None else 1

    def result(self):
        return self._answer(0)

    def later(self):
        return self._answer(1)

    def _answer(self, k):
        while len(self._answers) <= k:
            try:
                self._answers.append(self._reader.recv())
            except EOFError:
                self._answers.append(("error", QRefineError(
                    "%s: its process ended without an answer (killed, or out of memory); "
                    "rerun with nproc=1" % self.what), ""))
            if self._answers[-1][0] == "error" or len(self._answers) == self._expected:
                self._reap()
                break
        status, value, extra = self._answers[min(k, len(self._answers) - 1)]
        if status == "error":
            raise value
        return value, extra

    def cancel(self):
        """End the child if it still runs (an answer it owes is not wanted)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self):
        if self.pid is not None:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = None
            self._reader.close()


def _run_child(functions, writer):
    try:
        _die_with_parent()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = open(os.devnull, "w")
        # Ctrl-C reaches the whole process group; the parent ends its
        # children itself (cancel), so a child just goes on or is killed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        single_threaded_blas()
    except BaseException:  # no answer: the parent reports the child's end
        os._exit(0)
    try:
        for function in functions:
            try:
                t0 = time.time()
                answer = ("ok", function(), time.time() - t0)
            except BaseException as e:  # anything: the parent re-raises it
                answer = ("error", e, traceback.format_exc())
            try:
                writer.send(answer)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                answer = ("error", RuntimeError("%s (unpicklable answer: %s)"
                                                % (answer[1], e)), "")
                writer.send(answer)
            if answer[0] == "error":
                break
        writer.close()
    finally:
        os._exit(0)


def _die_with_parent():
    """Linux: the kernel ends this child when its parent dies, however it
    died (a batch system's SIGKILL gives the parent no time to end its
    children); elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


_PR_SET_PDEATHSIG = 1


def single_threaded_blas():
    """One thread for the OpenBLAS copies bundled with numpy and with scipy
    (scipy's runs the L-BFGS-B minimiser's vector operations); the number
    of libraries set.  Every qr.refine process runs so (the reason, sums
    that do not depend on the core count, is in ``limit_blas_threads``);
    a child is also one core's worth of work: with one BLAS thread per
    core, two trials at once took 4.2-4.5 s each on 2 cores (3j63_A),
    against 2.8-3.0 s with one thread."""
    found = 0
    for module in (np, scipy):
        fn = int_function(wheel_libs(module), "lib*openblas*.so*",
                          ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                           "openblas_set_num_threads64_", "openblas_set_num_threads"))
        if fn is not None:
            fn(1)
            found += 1
    return found


class ForkedTrials:
    """``run_trial(weight)`` of :meth:`WeightSearch.run` in forked children,
    up to ``workers`` at a time.

    The search says which weights it will ask for next (:meth:`ahead`);
    those run while it judges the current one, and a running trial it no
    longer wants (the one after a rejected trial) is ended.  Each trial is
    the same function of the same start as in one process, so the search
    makes the same choices; only the order in which the work is done
    changes.  A trial's costly rest (the clashscore, see
    :class:`~qrefine.weights.search.WeightSearch`) is computed by its child
    right after it sends the cheap metrics, on a core that would otherwise
    wait; the search judges the cheap metrics first (on 5fn5_C a rejected
    trial's answer came 5 s sooner than if the child had waited for its
    clashscore), and a rest nobody asked for is ended with its child.
    """

    def __init__(self, run_trial, workers):
        self.run_trial = run_trial
        self.workers = max(1, int(workers))
        self._running = {}   # rounded weight -> ForkedCall
        self._draining = []  # answered trials whose child computes the rest

    def ahead(self, weights):
        """The weights the search wants next, in order: the ones not yet
        started get a child while fewer than ``workers`` run; running ones
        not among them are ended, and so are the rests not asked for."""
        for call in self._draining:
            call.cancel()
        self._draining = []
        wanted = [_key(w) for w in weights]
        for key in list(self._running):
            if key not in wanted:
                self._running.pop(key).cancel()
        for w in weights:
            if len(self._running) >= self.workers:
                break
            if _key(w) not in self._running:
                self._start(w)

    def __call__(self, weight):
        key = _key(weight)
        if key not in self._running:
            self._start(weight)
        call = self._running.pop(key)
        (sites, metrics, has_rest), seconds = call.result()
        if not has_rest:
            return sites, metrics, None, seconds
        self._draining.append(call)
        return sites, metrics, lambda: call.later()[0], seconds

    def close(self):
        for call in list(self._running.values()) + self._draining:
            call.cancel()
        self._running.clear()
        self._draining = []

    def _start(self, weight):
        run_trial, rest = self.run_trial, []

        def trial():
            out = run_trial(weight)
            rest.append(out[2] if len(out) > 2 else None)
            return out[0], out[1], rest[0] is not None

        def then():
            return rest[0]() if rest[0] is not None else None
        self._running[_key(weight)] = ForkedCall(
            trial, what="weight trial w=%.4g" % weight, then=then)


def _key(weight):
    return round(weight, 12)
