"""Fragment execution backends: a real Dask cluster (scheduler and two workers
as separate processes on 127.0.0.1) and local worker processes, against the
serial executor; a worker killed during an evaluation; parallel.* errors.

GFN-FF on the 1us0 helix_model (94 atoms), small clusters: well under a second of
engine time per evaluation.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qrefine.config import phil as params_mod
from qrefine.errors import QRefineError
from common import xtb_or_skip

CLUSTER = dict(max_cluster_residues=3, buffer=3.0)
START_TIMEOUT = 90.0  # s; a loaded 2-core CI machine imports slowly
EVALUATION_TIMEOUT = 120.0  # s; fail, not hang

# Loaded by each Dask worker (--preload): every fragment takes a little
# longer, so that a worker can be killed while it still has tasks.
SLOW_PRELOAD = """
import time
import qrefine  # noqa: F401  (cctbx before scipy)
from qrefine.restraints import executors

# Dask may import a preload file more than once: wrap the original only once.
original = getattr(executors._Calculators, "unslowed_compute", executors._Calculators.compute)


def compute(self, *args, **kwargs):
    time.sleep(0.2)
    return original(self, *args, **kwargs)


executors._Calculators.unslowed_compute = original
executors._Calculators.compute = compute
"""


@pytest.fixture(scope="module")
def serial_results(helix_model, structures):
    """Serial gradients and fragment energies at two geometries: the model
    and the 0.3 A-perturbed test model (0.34 A RMS, 0.83 A at most: a
    restarted worker must rebuild GFN-FF's topology from the first
    geometry, which only shows at realistic displacements; below the
    recluster shift)."""
    xtb_or_skip()
    import iotbx.pdb
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    sites = np.array(helix_model.get_sites_cart())
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", **CLUSTER)
    moved = iotbx.pdb.input(os.path.join(structures, "xray/1us0_helix/perturbed/0.3/1.pdb")) \
        .atoms().extract_xyz().as_numpy_array()
    points = [sites, moved]
    out = [source.gradient(x) for x in points]
    assert len(source.fragments) >= 4
    return points, out


def _same(result, expected):
    """Bit for bit: one thread per engine, and the same force field."""
    (g1, e1), (g2, e2) = result, expected
    assert np.array_equal(g1, g2)
    assert np.array_equal(np.array(e1), np.array(e2))


# -- a Dask cluster of separate processes ------------------------------------------

class _Cluster:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}
        self.address = None
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.preload = os.path.join(workdir, "slow_fragments.py")
        with open(self.preload, "w") as f:
            f.write(SLOW_PRELOAD)

    def _spawn(self, name, args):
        log = open(os.path.join(self.workdir, name + ".log"), "w")
        self.procs[name] = subprocess.Popen([sys.executable, "-m"] + args, cwd=self.workdir,
                                            env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)
        log.close()

    def start_scheduler(self):
        path = os.path.join(self.workdir, "scheduler.json")
        self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", path,
                                  "--idle-timeout", "600"])  # no orphan if pytest is killed
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.procs["scheduler"].poll() is not None:
                raise RuntimeError("dask scheduler exited: %s" % self.log("scheduler"))
            try:
                with open(path) as f:
                    self.address = json.load(f)["address"]
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        raise RuntimeError("dask scheduler did not start: %s" % self.log("scheduler"))

    def start_worker(self, name):
        self._spawn(name, ["distributed.cli.dask_worker", self.address, "--name", name,
                           "--nworkers", "1", "--nthreads", "1", "--no-nanny",
                           "--host", "127.0.0.1", "--no-dashboard", "--preload", self.preload,
                           "--death-timeout", "60"])

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def kill(self, name):
        p = self.procs[name]
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=30)

    def shutdown(self):
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    cluster = _Cluster(str(tmp_path_factory.mktemp("dask")))
    try:
        cluster.start_scheduler()
        for name in ("w0", "w1"):
            cluster.start_worker(name)
        with distributed.Client(cluster.address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield cluster
    finally:
        cluster.shutdown()


def test_dask_equals_serial(helix_model, serial_results, dask_cluster):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    points, expected = serial_results
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", backend="dask",
                                  scheduler=dask_cluster.address, **CLUSTER)
    source.executor.timeout = EVALUATION_TIMEOUT
    try:
        _same(source.gradient(points[0]), expected[0])
        holders = set(source.executor._where.values())
        _same(source.gradient(points[1]), expected[1])
        # both workers got fragments, and each fragment stayed where it was
        assert len(holders) == 2
        assert set(source.executor._where.values()) == holders
        stats = source.timing()
        assert stats["engine_calls"] == 2 * len(source.fragments)
        assert stats["resubmitted_tasks"] == 0
    finally:
        source.close()


def test_dask_worker_killed_during_evaluation(helix_model, serial_results, dask_cluster):
    from qrefine.restraints.dask_executor import DaskExecutor
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    points, expected = serial_results
    killed = []

    def kill_a_busy_worker(done, total):
        if killed or done != 1:
            return
        client = executor.client
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        busy = [a for a, keys in client.processing().items() if keys]
        victim = names[(busy or sorted(names))[0]]
        dask_cluster.kill(victim)
        killed.append(victim)

    executor = DaskExecutor("xtb", "GFN-FF", scheduler=dask_cluster.address,
                            progress=kill_a_busy_worker, timeout=EVALUATION_TIMEOUT)
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", executor=executor, **CLUSTER)
    try:
        _same(source.gradient(points[0]), expected[0])
        assert len(killed) == 1
        # the next evaluation runs on the one worker left, cold for the moved fragments
        _same(source.gradient(points[1]), expected[1])
        assert len(set(executor._where.values())) == 1
    finally:
        source.close()
        dask_cluster.start_worker("w2")  # back to two workers for anything after this


def test_dask_bad_scheduler_is_one_line_error():
    pytest.importorskip("distributed")
    from qrefine.restraints.dask_executor import DaskExecutor
    with pytest.raises(QRefineError) as e:
        DaskExecutor("xtb", "GFN-FF", scheduler="tcp://127.0.0.1:1", connect_timeout=2)
    assert "parallel.scheduler=" in str(e.value) and "\n" not in str(e.value)


# -- local worker processes --------------------------------------------------------

def test_process_worker_killed_between_and_during(helix_model, serial_results):
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    points, expected = serial_results
    killed = []

    def kill_worker_0(done, total):
        if done == 1 and not killed:
            source.executor._procs[0].kill()
            killed.append(0)

    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", nproc=2, threads=1, **CLUSTER)
    try:
        executor = source.executor
        _same(source.gradient(points[0]), expected[0])
        # between evaluations
        executor._procs[1].kill()
        executor._procs[1].join(timeout=30)
        _same(source.gradient(points[1]), expected[1])
        assert executor.stats()["worker_restarts"] == 1
        # during an evaluation: worker 0 dies after the first fragment came back
        executor.progress = kill_worker_0
        _same(source.gradient(points[0]), expected[0])
        assert killed and executor.stats()["worker_restarts"] == 2
        assert all(p.is_alive() for p in executor._procs)
    finally:
        source.close()


# -- parameters -----------------------------------------------------------------------

class _Sized:
    """Stands in for a model where only the atom count is asked for."""

    def __init__(self, n):
        self.n = n

    def get_number_of_atoms(self):
        return self.n


def _build(args, n_atoms=100):
    from qrefine.restraints.factory import build_restraints
    p, _ = params_mod.parse(args)
    return build_restraints(_Sized(n_atoms), "model.pdb", p, None)


def test_fragments_by_default_only_above_the_size_threshold():
    from qrefine.restraints.factory import uses_fragments
    p, _ = params_mod.parse(["restraints=qm"])
    assert not uses_fragments(p, 1000) and uses_fragments(p, 1001)
    p, _ = params_mod.parse(["restraints=qm", "fragments.clustering_above=50"])
    assert uses_fragments(p, 94)
    p, _ = params_mod.parse(["restraints=qm", "qm.clustering=false"])
    assert not uses_fragments(p, 10 ** 6)
    p, _ = params_mod.parse(["restraints=qm", "qm.clustering=true"])
    assert uses_fragments(p, 10)
    p, _ = params_mod.parse(["restraints=qm", "parallel.backend=dask"])
    assert uses_fragments(p, 10)          # a Dask cluster computes fragments
    p, _ = params_mod.parse(["restraints=cctbx", "qm.clustering=true"])
    assert not uses_fragments(p, 10 ** 6)
    # GFN-FF has no SCF: whole models up to ten times the threshold
    p, _ = params_mod.parse(["restraints=qm", "method=GFN-FF"])
    assert not uses_fragments(p, 1436) and uses_fragments(p, 10001)


def test_dask_without_scheduler_is_one_line_error():
    with pytest.raises(QRefineError) as e:
        _build(["restraints=qm", "qm.clustering=true", "parallel.backend=dask"])
    assert "parallel.scheduler=" in str(e.value) and "\n" not in str(e.value)


def test_dask_without_clustering_is_an_error():
    with pytest.raises(QRefineError) as e:
        _build(["restraints=qm", "qm.clustering=false", "parallel.backend=dask",
                "parallel.scheduler=tcp://h:8786"])
    assert "qm.clustering=true" in str(e.value)
    with pytest.raises(QRefineError) as e:
        _build(["restraints=qm", "qm.clustering=true", "parallel.scheduler=tcp://h:8786"])
    assert "parallel.backend=dask" in str(e.value)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(QRefineError) as e:
        _build(["restraints=qm", "qm.clustering=true", "parallel.backend=dask",
                "parallel.scheduler=tcp://h:8786"])
    assert 'pip install "qrefine[dask]"' in str(e.value) and "\n" not in str(e.value)


# -- progress -------------------------------------------------------------------------

def test_progress_line(helix_model, serial_results, tmp_path):
    """A live fragment count on a terminal; in the log, one plain line per
    QM gradient (what a piped or batch run keeps)."""
    import io
    import re
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.log import Reporter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    points, expected = serial_results
    reporter = Reporter(stream=stream, log_path=str(tmp_path / "run.log"))
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", reporter=reporter, **CLUSTER)
    _same(source.gradient(points[0]), expected[0])
    n = len(source.fragments)
    text = stream.getvalue()
    assert "fragments 1/%d" % n in text and "fragments %d/%d" % (n - 1, n) in text
    assert text.endswith("\r") and text.split("\r")[-2].strip() == ""  # cleared at the end
    assert "QM gradient" not in text
    reporter.close()
    log = open(tmp_path / "run.log").read().splitlines()
    assert len(log) == 1 and re.fullmatch(r"QM gradient 1: %d fragments in \d+\.\d s" % n,
                                          log[0]), log


def test_workers_are_capped_at_the_cores_and_the_fragments(helix_model, serial_results):
    """nproc=10000 starts one worker per usable core, not 10000, and the
    gradient is the serial one; with one fragment, one worker starts."""
    from qrefine.restraints.fragment_qm import FragmentQMRestraints, usable_cores
    points, expected = serial_results
    source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", nproc=10000, **CLUSTER)
    try:
        _same(source.gradient(points[0]), expected[0])
        assert len(source.fragments) > usable_cores()
        n = getattr(source.executor, "n_workers", 1)
        assert n == usable_cores()
    finally:
        source.close()
    if usable_cores() < 2:
        pytest.skip("one usable core: the serial executor runs (no workers to cap)")
    one = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", nproc=10000,
                               max_cluster_residues=20, buffer=3.0)
    try:
        one.gradient(points[0])
        assert len(one.fragments) == 1 and one.executor.n_workers == 1
    finally:
        one.close()


def test_failed_fragments_get_their_own_folders(helix_model, tmp_path, caplog):
    """Two workers' fragments fail at once (MOPAC refuses a keyword on every
    retry): each keeps its input in a folder named by its residues, the
    error names one of those folders, and each retry is logged."""
    import logging
    import shutil
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    if shutil.which("mopac") is None:
        pytest.skip("mopac is not installed (apt-get install mopac)")
    failed = tmp_path / "failed"
    source = FragmentQMRestraints(helix_model, "mopac", "PM7", nproc=2,
                                  options={"keywords": "NOTAKEYWORD"},
                                  failed_dir=str(failed), **CLUSTER)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(QRefineError) as e:
            source.gradient(helix_model.get_sites_cart().as_numpy_array())
    finally:
        source.close()
    folders = sorted(os.listdir(failed))
    assert len(folders) >= 2 and all(f.startswith("A_") for f in folders), folders
    assert any(str(failed / f) in str(e.value) for f in folders), str(e.value)
    for f in folders:
        kept = os.listdir(failed / f)
        assert "failure.txt" in kept and "failed_geometry.xyz" in kept
        assert "NOTAKEYWORD" in (failed / f / "failure.txt").read_text()
        # The workers' retry lines reach this process's log: two per
        # failed fragment (MOPAC's two safer settings), naming the fragment.
        retries = [r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("fragment %s " % f)]
        assert len(retries) == 2 and "retry 1 with" in retries[0], retries


def test_a_run_log_shows_the_library_warnings(tmp_path):
    """A run's reporter writes ``qrefine.*`` warnings (QM retries) into the
    log file, and stops when it is closed."""
    import logging
    from qrefine.log import Reporter
    import io
    reporter = Reporter(stream=io.StringIO(), log_path=str(tmp_path / "run.log"))
    logging.getLogger("qrefine.restraints.qm").warning("fragment A_1-3: retry 1 with x=1")
    reporter.close()
    logging.getLogger("qrefine.restraints.qm").warning("after the run")
    text = (tmp_path / "run.log").read_text()
    assert text == "warning: fragment A_1-3: retry 1 with x=1\n"


def test_worker_deaths_do_not_change_the_refined_model(helix_model, structures):
    """A minimisation from the 0.3 A-perturbed helix with two fragment workers,
    one killed in its 3rd evaluation and the other in its 6th, ends at the
    very model of an undisturbed run."""
    import iotbx.pdb
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.refine.macro_cycles import refine
    start = iotbx.pdb.input(os.path.join(structures, "xray/1us0_helix/perturbed/0.3/1.pdb")) \
        .atoms().extract_xyz().as_numpy_array()

    def minimise(kill_at=()):
        source = FragmentQMRestraints(helix_model, "xtb", "GFN-FF", nproc=2, threads=1,
                                      **CLUSTER)
        evaluations = [0]
        original = source.executor.run

        def run(jobs):
            evaluations[0] += 1
            for w, at in kill_at:
                if evaluations[0] == at:
                    source.executor._procs[w].kill()
            return original(jobs)

        source.executor.run = run
        try:
            sites, _ = refine(start, source, None, macro_cycles=1, max_iterations=8,
                              max_step=0.2)
            return sites, source.executor.stats()["worker_restarts"]
        finally:
            source.close()

    undisturbed, restarts = minimise()
    assert restarts == 0
    disturbed, restarts = minimise(kill_at=((0, 3), (1, 6)))
    assert restarts == 2
    assert np.abs(undisturbed - start).max() > 0.05  # it did move
    assert np.array_equal(disturbed, undisturbed)


def test_fragments_go_to_workers_largest_first():
    # Job order small, small, big on two workers: in order, the big one
    # would join a small one (loads 9 and 1); largest first keeps it alone.
    from qrefine.restraints.executors import assign_workers, fragment_cost
    costs = {"a": fragment_cost("C"), "b": fragment_cost("C"), "c": fragment_cost("CCC")}
    loads = [0.0, 0.0]
    owners = assign_workers(costs, loads)
    assert owners["c"] != owners["a"] == owners["b"]
    assert sorted(loads) == [2.0, 27.0]
    # A later fragment goes to the lighter worker.
    assert assign_workers({"d": 1.0}, loads) == {"d": owners["a"]}
