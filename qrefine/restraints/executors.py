"""Where fragment calculations run: in this process or in worker processes.

An executor keeps one engine calculator per fragment (keyed by the
fragment's identity) across calls, so SCF warm starts work, and answers
``run(jobs) -> [(energy, gradient)]`` in the order of ``jobs`` (kcal/mol,
relative to the fragment's first energy, and kcal/mol/A, as
:class:`~qrefine.restraints.qm.QMRestraints` gives them).
A job is ``(key, symbols, charge, multiplicity, positions[, name])``.  An executor
provides ``run``, ``retain(keys)`` (release the calculators of all other
fragments), ``stats()`` and ``close()``, and calls its ``progress``
attribute, when set, as ``progress(done, total)`` each time a fragment
finishes.  Backends: :class:`SerialExecutor`, :class:`ProcessExecutor` and
:class:`~qrefine.restraints.dask_executor.DaskExecutor` (a Dask cluster).

Reference energies.  Calculators compute absolute energies; the executor,
in the calling process, subtracts each fragment's first energy (kept until
the fragment is released by ``retain``).  A fragment whose calculator is lost
(a dead worker) and is computed again elsewhere therefore keeps its
reference: its energies stay on one scale, whichever worker computes them.  In the same
way it keeps each fragment's first positions and sends them with every job:
a calculator built anew (in a restarted worker, on another Dask worker) is
built from them, so GFN-FF gets the topology it had the first time, and a
worker's death changes no number (see
:class:`~qrefine.engines.xtb_engine.XTBCalculator`).

:class:`ProcessExecutor` starts up to ``nproc`` worker processes, no more
than there are fragments (``spawn``, so no OpenMP or engine state is
inherited) and assigns each fragment to one
worker for good, the least loaded by estimated cost (atoms cubed), so the
worker that holds a fragment's calculator always gets its next call.  Each
worker's engine gets ``threads`` OpenMP threads.  Results come back one
fragment at a time.  A worker that dies (killed, out of memory, a crash in
the engine library) is started again and the jobs it had not answered are
run once more on the new process (cold starts); results already received
are kept.  If it dies again on that retry, the call fails with a
:class:`~qrefine.errors.QRefineError`.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback

from ase import Atoms

from qrefine import children, engines
from qrefine.errors import QRefineError
from qrefine.restraints.qm import QMRestraints, keep_failed_input

log = logging.getLogger(__name__)


class _Calculators:
    """Engine calculators per fragment key (a QMRestraints each, for its
    retries and failed-input handling).  ``compute`` returns the absolute
    energy in kcal/mol and the gradient in kcal/mol/A."""

    def __init__(self, engine, method, options, failed_dir):
        self.engine, self.method, self.options = engine, method, dict(options or {})
        self.failed_dir = failed_dir
        self.sources = {}
        self.calls = 0
        self.retries = 0
        self.seconds = 0.0

    def compute(self, key, symbols, charge, multiplicity, positions, name=None,
                reference=None):
        source = self.sources.get(key)
        if source is None:
            source = QMRestraints(symbols, self.engine, self.method, charge=charge,
                                  multiplicity=multiplicity, options=self.options,
                                  failed_dir=self._failed_dir(name),
                                  label=self._label(name, len(symbols)),
                                  reference_sites=reference)
            # Absolute energies: the reference is kept by the executor (see above).
            source.reference_energy = 0.0
            self.sources[key] = source
        calls, retries, seconds = source.calls, source.retries, source.seconds
        result = source.value_and_gradient(positions)
        self.calls += source.calls - calls
        self.retries += source.retries - retries
        self.seconds += source.seconds - seconds
        return result

    def take_notes(self):
        """The retry lines of all fragments since the last call (a worker
        sends them to the calling process, whose log the user reads)."""
        notes = []
        for source in self.sources.values():
            notes += source.retry_notes
            source.retry_notes = []
        return notes

    def _failed_dir(self, name):
        return failed_folder(self.failed_dir, name)

    @staticmethod
    def _label(name, n_atoms):
        if name:
            return "fragment %s (%d atoms)" % (name, n_atoms)
        return "fragment of %d atoms" % n_atoms

    def stats(self):
        return (self.calls, self.retries, self.seconds)

    def retain(self, keys):
        keys = set(keys)
        for k in [k for k in self.sources if k not in keys]:
            del self.sources[k]


def failed_folder(failed_dir, name):
    """Where a failed fragment's input is kept.  Each fragment its own
    folder: workers fail at the same time, and one shared folder would hold
    the last writer's files."""
    base = failed_dir or os.path.abspath("qrefine_failed")
    return os.path.join(base, name) if name else base


class References:
    """First energy and first positions of each fragment, kept by the
    calling process."""

    def __init__(self):
        self.first = {}
        self.positions = {}

    def job(self, job):
        """``job`` with its fragment's first positions appended (as
        ``name`` and ``reference`` of :meth:`_Calculators.compute`)."""
        key, positions = job[0], job[4]
        reference = self.positions.setdefault(key, positions)
        name = job[5] if len(job) > 5 else None
        return tuple(job[:5]) + (name, reference)

    def relative(self, key, result):
        energy, grad = result
        return energy - self.first.setdefault(key, energy), grad

    def retain(self, keys):
        keys = set(keys)
        for k in [k for k in self.first if k not in keys]:
            del self.first[k]
        for k in [k for k in self.positions if k not in keys]:
            del self.positions[k]


def stats_dict(calls, retries, seconds):
    return {"engine_calls": int(calls), "engine_retries": int(retries),
            "engine_s": round(float(seconds), 3)}


def report(progress, done, total):
    if progress is not None:
        progress(done, total)


class SerialExecutor:
    """Fragments one after the other, in this process."""

    def __init__(self, engine, method=None, options=None, failed_dir=None, progress=None):
        self._calcs = _Calculators(engine, method, options, failed_dir)
        self._refs = References()
        self.progress = progress

    def run(self, jobs):
        out = []
        for job in map(self._refs.job, jobs):
            out.append(self._refs.relative(job[0], self._calcs.compute(*job)))
            self._calcs.take_notes()  # logged already, in this process
            report(self.progress, len(out), len(jobs))
        return out

    def retain(self, keys):
        self._calcs.retain(keys)
        self._refs.retain(keys)

    def stats(self):
        return stats_dict(*self._calcs.stats())

    def close(self):
        self._calcs.sources.clear()


def log_notes(notes):
    """Retry lines from a worker, logged here as they were there."""
    for note in notes:
        log.warning("%s", note)


def quiet_worker_logging():
    """A worker's warnings travel to the calling process (``take_notes``);
    printed here as well, they would reach the terminal twice."""
    logger = logging.getLogger("qrefine")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _worker(conn, engine, method, options, failed_dir, threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_STACKSIZE", "1G")
    quiet_worker_logging()
    # Ended by the parent (SIGTERM) or Ctrl-C (SIGINT reaches the whole
    # process group): the engine program is killed on the way out
    # (children.run), and the worker leaves quietly, without a traceback.

    def end(signum, frame):
        raise children.Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, end)
    try:
        _serve(conn, _Calculators(engine, method, options, failed_dir))
    except KeyboardInterrupt:
        pass


def _serve(conn, calcs):
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message[0] == "close":
            conn.close()
            return
        if message[0] == "run":
            # One message per fragment, so that a death loses only the
            # unanswered ones; the first failure ends the batch.
            for i, job in message[1]:
                try:
                    result = calcs.compute(*job)
                    conn.send(("result", i, result, calcs.take_notes()))
                except Exception as e:  # sent back and raised in the parent
                    conn.send(("error", i, "%s: %s" % (type(e).__name__, e),
                               traceback.format_exc(), calcs.take_notes()))
                    break
        elif message[0] == "retain":
            calcs.retain(message[1])
        conn.send(("end", calcs.stats()))


def fragment_cost(symbols):
    """A fragment's relative cost: atoms^3, the SCF's scaling."""
    return float(len(symbols)) ** 3


def assign_workers(costs, loads):
    """{key: worker} for new fragments ``costs`` ({key: cost}); ``loads``
    (one per worker) is updated.  Largest first, each to the least loaded
    worker (LPT): in job order, one large fragment placed last can leave a
    core idle for most of a gradient."""
    owners = {}
    for key in sorted(costs, key=lambda k: (-costs[k], str(k))):
        w = min(range(len(loads)), key=lambda k: (loads[k], k))
        owners[key] = w
        loads[w] += costs[key]
    return owners


class ProcessExecutor:
    """Fragments in ``nproc`` worker processes, each fragment always in the same one."""

    def __init__(self, engine, method=None, options=None, failed_dir=None, nproc=2,
                 threads=1, progress=None):
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (engine, method, options, failed_dir, threads)
        self.failed_dir = failed_dir
        # qm.timeout for engines that run in the worker itself (xtb, PySCF):
        # a worker silent for longer on a fragment is ended.  Programs
        # (MOPAC, ...) are timed, killed and retried by the engine.
        timeout = (options or {}).get("timeout")
        self.call_timeout = (float(timeout) if timeout and
                             getattr(engines.engine_module(engine), "IN_PROCESS", False)
                             else None)
        # Workers start at the first call, one per fragment at most: a
        # worker without a fragment is a process (and its engine import)
        # for nothing (nproc=64 on a model of 3 fragments used to start 64).
        self.max_workers = max(1, int(nproc))
        self._conns = []
        self._procs = []
        self._owner = {}
        self._cost = {}
        self._load = []
        self._stats = []
        self._lost_stats = (0, 0, 0.0)  # of workers that died
        self._refs = References()
        self.respawns = 0
        self.retried_jobs = 0
        self.progress = progress

    # -- worker processes ---------------------------------------------------

    def _start_workers(self, n_fragments):
        """Start workers up to one per fragment (and ``max_workers``)."""
        while len(self._procs) < min(self.max_workers, n_fragments):
            self._conns.append(None)
            self._procs.append(None)
            self._load.append(0.0)
            self._stats.append((0, 0, 0.0))
            self._spawn(len(self._procs) - 1)

    @property
    def n_workers(self):
        return len(self._procs)

    def _spawn(self, w):
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker, daemon=True, args=(child,) + self._args)
        p.start()
        child.close()
        self._conns[w], self._procs[w] = parent, p

    def _respawn(self, w):
        """Replace worker ``w`` (dead or out of step) by a fresh process."""
        self._lost_stats = tuple(a + b for a, b in zip(self._lost_stats, self._stats[w]))
        self._stats[w] = (0, 0, 0.0)
        try:
            self._conns[w].close()
        except OSError:
            pass
        p = self._procs[w]
        if p.is_alive():
            p.kill()
        p.join(timeout=10)
        self._spawn(w)
        self.respawns += 1

    def _send(self, w, message):
        """Send, starting the worker again first if it has died; False if
        even the fresh one cannot be reached."""
        for attempt in range(2):
            if not self._procs[w].is_alive():
                self._respawn(w)
            try:
                self._conns[w].send(message)
                return True
            except (OSError, EOFError):  # BrokenPipeError: died just now
                self._respawn(w)
        return False

    # -- executor -------------------------------------------------------------

    def run(self, jobs):
        jobs = [self._refs.job(j) for j in jobs]
        self._start_workers(len({j[0] for j in jobs} | set(self._owner)))
        new = {j[0]: fragment_cost(j[1]) for j in jobs if j[0] not in self._owner}
        self._owner.update(assign_workers(new, self._load))
        self._cost.update(new)
        per_worker = {}
        for i, job in enumerate(jobs):
            per_worker.setdefault(self._owner[job[0]], []).append(i)
        results = [None] * len(jobs)
        outstanding = {}   # worker -> job indices sent and not yet answered
        heard = {}         # worker -> time of its last message (qm.timeout)
        timed_out = {}     # worker -> the job index it was ended on
        retried = set()
        errors = []
        done = 0

        def dispatch(w, indices):
            if self._send(w, ("run", [(i, jobs[i]) for i in indices])):
                outstanding[w] = set(indices)
                heard[w] = time.time()
            else:
                errors.append("fragment worker process %d cannot be started" % w)

        for w, indices in sorted(per_worker.items()):
            dispatch(w, indices)
        while outstanding:
            by_conn = {self._conns[w]: w for w in outstanding}
            wait = None
            if self.call_timeout:
                wait = max(0.0, min(heard[w] for w in outstanding) + self.call_timeout
                           - time.time())
            ready = multiprocessing.connection.wait(list(by_conn), timeout=wait)
            if self.call_timeout:
                for w in list(outstanding):
                    if self._conns[w] not in ready and \
                            time.time() - heard[w] > self.call_timeout:
                        # Jobs run in the order sent: the first one left is the hung one.
                        timed_out[w] = min(outstanding[w])
                        self._procs[w].kill()
                        self._procs[w].join(timeout=10)
                        ready.append(self._conns[w])
            for conn in ready:
                w = by_conn[conn]
                heard[w] = time.time()
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    left = sorted(outstanding.pop(w))
                    code = self._procs[w].exitcode
                    self._respawn(w)
                    hung = timed_out.pop(w, None)
                    if hung is not None and (w in retried or errors):
                        errors.append(self._keep_timed_out(jobs[hung]))
                        continue
                    if not left:
                        continue
                    if w in retried:
                        errors.append("fragment worker process %d died twice in one "
                                      "evaluation (exit code %s)" % (w, code))
                    elif not errors:
                        retried.add(w)
                        self.retried_jobs += len(left)
                        dispatch(w, left)
                    continue
                if message[0] in ("result", "error"):
                    log_notes(message[-1])
                if message[0] == "result":
                    i = message[1]
                    results[i] = self._refs.relative(jobs[i][0], message[2])
                    outstanding[w].discard(i)
                    done += 1
                    report(self.progress, done, len(jobs))
                elif message[0] == "error":
                    errors.append(message[2])
                else:  # "end"
                    self._stats[w] = message[1]
                    outstanding.pop(w)
        if errors:
            raise QRefineError("fragment calculation failed in a worker: %s" % errors[0])
        return results

    def _keep_timed_out(self, job):
        """Keep the input of a fragment whose worker was ended by qm.timeout
        (twice: once more in a fresh worker) and say so in one line."""
        key, symbols, charge, multiplicity, positions, name = job[:6]
        engine, method = self._args[0], self._args[1]
        label = _Calculators._label(name, len(symbols))
        why = "did not finish in %g s (qm.timeout=%g), twice" % (self.call_timeout,
                                                                 self.call_timeout)
        target = keep_failed_input(failed_folder(self.failed_dir, name),
                                   Atoms(symbols=list(symbols), positions=positions),
                                   engine, method, charge, multiplicity, label, why)
        return "%s %s calculation of the %s %s; its input is kept in %s" % (
            engine, method or "", label, why, target)

    def retain(self, keys):
        keys = set(keys)
        for key in [k for k in self._owner if k not in keys]:
            w = self._owner.pop(key)
            self._load[w] -= self._cost.pop(key)
        self._refs.retain(keys)
        sent = [w for w in range(len(self._conns))
                if self._send(w, ("retain", [k for k, o in self._owner.items() if o == w]))]
        for w in sent:
            try:
                message = self._conns[w].recv()
            except (EOFError, OSError):
                self._respawn(w)  # a fresh worker holds nothing: retained by definition
                continue
            self._stats[w] = message[1]

    def stats(self):
        totals = [sum(s[k] for s in self._stats) + self._lost_stats[k] for k in range(3)]
        out = stats_dict(*totals)
        out["worker_restarts"] = self.respawns
        out["retried_fragments"] = self.retried_jobs
        return out

    def close(self, grace=5.0):
        """End the workers: ask, wait up to ``grace`` s in all, then SIGTERM
        (a worker still computing, after an interruption, kills its engine
        program and leaves) and at last SIGKILL."""
        # A worker whose start failed has no connection or process yet.
        procs = [p for p in self._procs if p is not None]
        for conn in self._conns:
            try:
                if conn is not None:
                    conn.send(("close",))
            except (OSError, BrokenPipeError):
                pass
        deadline = time.time() + grace
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.time()))
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self._conns, self._procs = [], []

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
