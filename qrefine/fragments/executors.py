"""Where fragment calculations run: in this process or in worker processes.

An executor keeps one engine calculator per fragment (keyed by the
fragment's identity) across calls, so SCF warm starts work, and answers
``run(jobs) -> [(energy, gradient)]`` in the order of ``jobs`` (kcal/mol,
relative to the fragment's first energy, and kcal/mol/A, as
:class:`~qrefine.restraints.qm.QMRestraints` gives them).
A job is ``(key, symbols, charge, multiplicity, positions)``.  Another
backend (Dask, MPI) only has to provide ``run``, ``retain`` and ``close``.

:class:`ProcessExecutor` starts ``nproc`` worker processes (``spawn``, so
no OpenMP or engine state is inherited) and assigns each fragment to one
worker for good, the least loaded by estimated cost (atoms cubed), so the
worker that holds a fragment's calculator always gets its next call.  Each
worker's engine gets ``threads`` OpenMP threads.
"""

import multiprocessing
import os
import traceback

from qrefine.errors import QRefineError


class _Calculators:
    """Engine calculators per fragment key (a QMRestraints each, for its
    retries and failed-input handling)."""

    def __init__(self, engine, method, options, failed_dir):
        self.engine, self.method, self.options = engine, method, dict(options or {})
        self.failed_dir = failed_dir
        self.sources = {}
        self.calls = 0
        self.retries = 0
        self.seconds = 0.0

    def compute(self, key, symbols, charge, multiplicity, positions):
        from qrefine.restraints.qm import QMRestraints
        source = self.sources.get(key)
        if source is None:
            source = QMRestraints(symbols, self.engine, self.method, charge=charge,
                                  multiplicity=multiplicity, options=self.options,
                                  failed_dir=self.failed_dir,
                                  label="fragment of %d atoms" % len(symbols))
            self.sources[key] = source
        calls, retries, seconds = source.calls, source.retries, source.seconds
        result = source.value_and_gradient(positions)
        self.calls += source.calls - calls
        self.retries += source.retries - retries
        self.seconds += source.seconds - seconds
        return result

    def retain(self, keys):
        keys = set(keys)
        for k in [k for k in self.sources if k not in keys]:
            del self.sources[k]


class SerialExecutor:
    """Fragments one after the other, in this process."""

    def __init__(self, engine, method=None, options=None, failed_dir=None):
        self._calcs = _Calculators(engine, method, options, failed_dir)

    def run(self, jobs):
        return [self._calcs.compute(*job) for job in jobs]

    def retain(self, keys):
        self._calcs.retain(keys)

    def stats(self):
        c = self._calcs
        return {"engine_calls": c.calls, "engine_retries": c.retries,
                "engine_s": round(c.seconds, 3)}

    def close(self):
        self._calcs.sources.clear()


def _worker(conn, engine, method, options, failed_dir, threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_STACKSIZE", "1G")
    import qrefine  # noqa: F401  (cctbx before scipy)
    calcs = _Calculators(engine, method, options, failed_dir)
    while True:
        message = conn.recv()
        if message[0] == "close":
            conn.close()
            return
        try:
            if message[0] == "run":
                out = [calcs.compute(*job) for job in message[1]]
                conn.send(("ok", out, (calcs.calls, calcs.retries, calcs.seconds)))
            elif message[0] == "retain":
                calcs.retain(message[1])
                conn.send(("ok", None, None))
        except Exception as e:  # sent back and raised in the parent
            conn.send(("error", "%s: %s" % (type(e).__name__, e), traceback.format_exc()))


class ProcessExecutor:
    """Fragments in ``nproc`` worker processes, each fragment always in the same one."""

    def __init__(self, engine, method=None, options=None, failed_dir=None, nproc=2,
                 threads=1):
        ctx = multiprocessing.get_context("spawn")
        self._conns = []
        self._procs = []
        for _ in range(int(nproc)):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, daemon=True,
                            args=(child, engine, method, options, failed_dir, threads))
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        self._owner = {}
        self._load = [0.0] * len(self._procs)
        self._stats = [(0, 0, 0.0)] * len(self._procs)

    def run(self, jobs):
        per_worker = [[] for _ in self._procs]
        slots = []
        for job in jobs:
            key = job[0]
            if key not in self._owner:
                w = min(range(len(self._load)), key=lambda i: (self._load[i], i))
                self._owner[key] = w
                self._load[w] += float(len(job[1])) ** 3
            w = self._owner[key]
            slots.append((w, len(per_worker[w])))
            per_worker[w].append(job)
        for w, conn in enumerate(self._conns):
            if per_worker[w]:
                conn.send(("run", per_worker[w]))
        results = [None] * len(self._conns)
        errors = []
        for w, conn in enumerate(self._conns):
            if per_worker[w]:
                status, out, extra = self._receive(w)
                if status == "ok":
                    results[w] = out
                    self._stats[w] = extra
                else:
                    errors.append(out)
        if errors:
            raise QRefineError("fragment calculation failed in a worker: %s" % errors[0])
        return [results[w][i] for w, i in slots]

    def _receive(self, w):
        try:
            return self._conns[w].recv()
        except EOFError:
            raise QRefineError("fragment worker process %d died (exit code %s)"
                               % (w, self._procs[w].exitcode))

    def retain(self, keys):
        keys = set(keys)
        for key in [k for k in self._owner if k not in keys]:
            w = self._owner.pop(key)
            self._load[w] -= float(len(key[0]) + len(key[1])) ** 3
        for w, conn in enumerate(self._conns):
            conn.send(("retain", [k for k, o in self._owner.items() if o == w]))
        for w in range(len(self._conns)):
            status, out, _ = self._receive(w)
            if status != "ok":
                raise QRefineError("fragment worker: %s" % out)

    def stats(self):
        return {"engine_calls": sum(s[0] for s in self._stats),
                "engine_retries": sum(s[1] for s in self._stats),
                "engine_s": round(sum(s[2] for s in self._stats), 3)}

    def close(self):
        for conn, p in zip(self._conns, self._procs):
            try:
                conn.send(("close",))
            except (OSError, BrokenPipeError):
                pass
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        self._conns, self._procs = [], []

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
