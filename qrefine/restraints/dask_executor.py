"""Fragments on a Dask cluster (``parallel.backend=dask``).

:class:`DaskExecutor` connects to a running Dask scheduler
(``distributed.Client(address)``) and runs each fragment as one task.  The
workers must run in an environment with the same qrefine and engines
installed (the task function is sent by reference, ``import qrefine`` on the
worker).  Start the workers with one thread each (``dask worker ADDRESS
--nthreads 1``) and as many workers per node as its cores allow; ``threads``
sets ``OMP_NUM_THREADS`` in each worker process before its first engine is
loaded.  On SLURM, PBS or SGE, ``dask-jobqueue`` (or ``dask-mpi``) starts
scheduler and workers as batch jobs.

Warm starts.  Each worker process keeps the engine calculator of every
fragment it computed (a module-level dict, per executor), and the next
evaluation of a fragment is submitted to the worker that holds it
(``workers=[address], allow_other_workers=True``), so SCF warm starts work as
with local processes.  New fragments go to the least loaded worker by
estimated cost (atoms cubed); ``retain`` releases, on every worker, the
calculators of fragments that no longer exist or that moved.

Failures.  Results are collected one by one as tasks finish, so nothing that
was computed is lost.  A task whose worker dies is rescheduled on another
worker by Dask itself (the calculator is rebuilt there, a cold start).  A
task that fails (engine failure after the engine's own retries, or a task
Dask gave up on) is submitted once more, to another worker if there is one;
if that fails too, the evaluation fails with a one-line
:class:`~qrefine.errors.QRefineError`.

Reference energies.  Workers return absolute energies; this process keeps
each fragment's first energy and subtracts it (as every executor does, see
:mod:`qrefine.restraints.executors`).  A fragment recomputed on another worker
(after a worker died, or moved by the scheduler) therefore stays on the same
energy scale, and results equal those of the serial executor.
"""

import os
import threading
import uuid

from qrefine.config.checks import import_distributed
from qrefine.errors import QRefineError
from qrefine.restraints.executors import (_Calculators, References, log_notes,
                                         quiet_worker_logging, report, stats_dict)

# In each worker process: executor token -> _Calculators.
_STATE = {}
_STATE_LOCK = threading.Lock()


# -- in the worker --------------------------------------------------------------

def _calculators(token, config, threads):
    with _STATE_LOCK:
        calcs = _STATE.get(token)
        if calcs is None:
            if threads:
                os.environ["OMP_NUM_THREADS"] = str(int(threads))
            os.environ.setdefault("OMP_STACKSIZE", "1G")
            import qrefine  # noqa: F401  (cctbx before scipy)
            calcs = _STATE[token] = _Calculators(*config)
        return calcs


def _worker_address():
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return None


def _compute(token, config, threads, job):
    """One fragment on a worker: ``("ok", (energy, gradient), address,
    stats, retry lines)`` or ``("error", message, address, None, retry lines)``."""
    address = _worker_address()
    calcs = None
    try:
        quiet_worker_logging()
        calcs = _calculators(token, config, threads)
        before = calcs.stats()
        result = calcs.compute(*job)
        after = calcs.stats()
    except Exception as e:  # returned, so that the parent knows where it failed
        notes = calcs.take_notes() if calcs is not None else []
        return ("error", "%s: %s" % (type(e).__name__, e), address, None, notes)
    return ("ok", result, address, tuple(a - b for a, b in zip(after, before)),
            calcs.take_notes())


def _retain(token, owner, dask_worker=None):
    """Keep the calculators of the fragments that ``owner`` assigns to this worker."""
    calcs = _STATE.get(token)
    if calcs is not None:
        calcs.retain([k for k, a in owner.items() if a == dask_worker.address])


def _forget(token):
    with _STATE_LOCK:
        _STATE.pop(token, None)


# -- in the calling process ---------------------------------------------------------

class DaskExecutor:
    """Fragments as tasks on a Dask cluster, each preferably on the worker
    that holds its calculator.

    ``scheduler``: the scheduler's address (``tcp://host:8786``) or its
    scheduler file (``.json``); or pass a ``distributed.Client`` as
    ``client``.  ``wait_for_workers``: seconds to wait for the first worker
    (batch-queued workers may come late); ``timeout``: seconds one
    evaluation may take (None: no limit).
    """

    def __init__(self, engine, method=None, options=None, failed_dir=None, scheduler=None,
                 threads=1, progress=None, client=None, wait_for_workers=300.0,
                 connect_timeout=30.0, timeout=None):
        distributed = import_distributed()
        self._own_client = client is None
        if client is None:
            if not scheduler:
                raise QRefineError("parallel.backend=dask needs the scheduler's address: "
                                   "set parallel.scheduler=tcp://host:8786")
            try:
                if str(scheduler).endswith(".json") and os.path.isfile(scheduler):
                    client = distributed.Client(scheduler_file=scheduler,
                                                timeout=connect_timeout)
                else:
                    client = distributed.Client(scheduler, timeout=connect_timeout)
            except Exception as e:  # OSError, TimeoutError, ValueError (bad address)
                raise QRefineError("cannot connect to the Dask scheduler at %s (%s: %s); "
                                   "check parallel.scheduler=" % (scheduler, type(e).__name__, e))
        self.client = client
        self.scheduler = scheduler
        try:
            client.wait_for_workers(1, timeout=wait_for_workers)
        except Exception:
            self.close()
            raise QRefineError("no Dask worker connected to the scheduler at %s within %g s"
                               % (scheduler or client.scheduler.address, wait_for_workers))
        self._token = "qrefine-%s" % uuid.uuid4().hex
        self._config = (engine, method, dict(options or {}), failed_dir)
        self._threads = threads
        self._where = {}   # fragment key -> worker address holding its calculator
        self._cost = {}
        self._refs = References()
        self._stats = [0, 0, 0.0]
        self.resubmitted = 0
        self.timeout = timeout
        self.progress = progress

    def _workers(self):
        return sorted(self.client.nthreads())

    def _place(self, jobs, workers):
        """Worker for each job: the one holding the fragment, else the least loaded."""
        live = set(workers)
        load = dict.fromkeys(workers, 0.0)
        for key, address in self._where.items():
            if address in live:
                load[address] += self._cost.get(key, 0.0)
        places = []
        for job in jobs:
            key = job[0]
            self._cost.setdefault(key, float(len(job[1])) ** 3)
            address = self._where.get(key)
            if address not in live:
                address = min(workers, key=lambda a: (load[a], a))
                load[address] += self._cost[key]
                self._where[key] = address
            places.append(address)
        return places

    def _submit(self, job, workers):
        return self.client.submit(_compute, self._token, self._config, self._threads, job,
                                  workers=workers, allow_other_workers=True, pure=False,
                                  retries=0)

    def run(self, jobs):
        from distributed import as_completed
        jobs = [self._refs.job(j) for j in jobs]
        workers = self._workers()
        if not workers:
            self.client.wait_for_workers(1)
            workers = self._workers()
        places = self._place(jobs, workers)
        futures = {}
        for i, (job, address) in enumerate(zip(jobs, places)):
            futures[self._submit(job, [address])] = (i, address, 0)
        results = [None] * len(jobs)
        done = 0
        pending = as_completed(list(futures), with_results=True, raise_errors=False,
                               timeout=self.timeout)
        try:
            for future, value in pending:
                i, address, attempt = futures.pop(future)
                if future.status == "error":
                    exc = future.exception()
                    status, message = "error", "%s: %s" % (type(exc).__name__, exc)
                else:
                    status, payload, where, stats, notes = value
                    log_notes(notes)
                    if status == "error":
                        message, address = payload, where or address
                if status == "error":
                    if attempt > 0:
                        raise QRefineError("fragment calculation failed on two Dask "
                                           "workers: %s" % message)
                    others = [w for w in self._workers() if w != address] or None
                    self.resubmitted += 1
                    retry = self._submit(jobs[i], others)
                    futures[retry] = (i, address, 1)
                    pending.add(retry)
                    continue
                if where:
                    self._where[jobs[i][0]] = where
                self._stats = [a + b for a, b in zip(self._stats, stats)]
                results[i] = self._refs.relative(jobs[i][0], payload)
                done += 1
                report(self.progress, done, len(jobs))
        except TimeoutError:
            raise QRefineError("%d of %d fragments not done on the Dask cluster after %g s"
                               % (len(jobs) - done, len(jobs), self.timeout))
        finally:
            if futures:
                self.client.cancel(list(futures))
        return results

    def retain(self, keys):
        keys = set(keys)
        for key in [k for k in self._where if k not in keys]:
            del self._where[key]
            self._cost.pop(key, None)
        self._refs.retain(keys)
        self.client.run(_retain, self._token, dict(self._where), on_error="ignore")

    def stats(self):
        out = stats_dict(*self._stats)
        out["resubmitted_tasks"] = self.resubmitted
        return out

    def close(self):
        client, self.client = getattr(self, "client", None), None
        if client is None:
            return
        try:
            if hasattr(self, "_token"):
                client.run(_forget, self._token, on_error="ignore")
        except Exception:
            pass
        if self._own_client:
            try:
                client.close()
            except Exception:
                pass

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
