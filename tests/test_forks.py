"""Work in forked children (qrefine.forks): answers, errors, and weight
trials run ahead of the search without changing its choices."""

import os
import signal
import subprocess
import sys
import time

import pytest

from qrefine.errors import QRefineError
from qrefine.forks import ForkedCall, ForkedTrials, single_threaded_blas
from qrefine.weights.search import WeightSearch


def test_a_forked_call_answers_from_another_process():
    call = ForkedCall(lambda: (os.getpid(), [1.5, 2.5]))
    (pid, values), seconds = call.result()
    assert pid != os.getpid() and values == [1.5, 2.5] and seconds >= 0
    assert call.result()[0] == (pid, values)  # the answer is kept


def test_an_error_in_the_child_is_raised_in_the_parent():
    def fails():
        raise QRefineError("residue A 7: no restraints")
    with pytest.raises(QRefineError, match="residue A 7: no restraints"):
        ForkedCall(fails).result()


def test_a_child_that_dies_is_one_clear_error():
    with pytest.raises(QRefineError, match="weight trial w=2: its process ended without an "
                                           "answer .* nproc=1"):
        ForkedCall(lambda: os.kill(os.getpid(), signal.SIGKILL), what="weight trial w=2").result()


def test_a_child_writes_nothing_to_the_parents_output(capfd):
    def noisy():
        print("from the child")
        os.write(2, b"child stderr\n")
        return 1
    assert ForkedCall(noisy).result()[0] == 1
    out, err = capfd.readouterr()
    assert "from the child" not in out and "child stderr" not in err


def test_cancel_ends_a_running_child():
    call = ForkedCall(lambda: time.sleep(60))
    pid = call.pid
    t0 = time.time()
    call.cancel()
    assert time.time() - t0 < 5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process


def test_blas_libraries_of_numpy_and_scipy_are_found():
    """Both wheels bundle an OpenBLAS whose threads a child limits to one."""
    assert single_threaded_blas() == 2


def _trial(log_dir):
    """A weight trial: bond RMSD grows with the weight, CC too; it leaves
    a file per start so the test sees which trials ran."""
    def run_trial(weight):
        open(os.path.join(log_dir, "started_%g" % weight), "w").close()
        time.sleep(0.2)
        metrics = {"bond_rmsd": 0.004 * weight, "angle_rmsd": 0.5, "cc_mask": 0.5 + 0.01 * weight}
        return [weight] * 3, metrics, (lambda: {"clashscore": 1.0, "pid": os.getpid()})
    return run_trial


def test_trials_ahead_make_the_same_choices_as_one_at_a_time(tmp_path):
    grid = [0.5, 1, 2, 4, 8, 16]
    serial_dir, forked_dir = tmp_path / "serial", tmp_path / "forked"
    serial_dir.mkdir()
    forked_dir.mkdir()
    search = WeightSearch(grid, "map", max_bond_rmsd=0.02, max_angle_rmsd=2.0)
    chosen, trials = search.run(_trial(str(serial_dir)))
    forked = ForkedTrials(_trial(str(forked_dir)), workers=2)
    try:
        chosen2, trials2 = WeightSearch(grid, "map", max_bond_rmsd=0.02, max_angle_rmsd=2.0).run(
            forked, ahead=forked.ahead)
    finally:
        forked.close()
    # 0.5 .. 4 pass (bond 0.016), 8 fails (0.032), bracket sqrt(32) fails, 4 is chosen
    assert [t.weight for t in trials] == [t.weight for t in trials2]
    assert [t.accepted for t in trials] == [t.accepted for t in trials2]
    assert chosen.weight == chosen2.weight == 4
    # the costly rest came from the child, only for trials that passed the rest
    assert all(t.metrics["pid"] != os.getpid() for t in trials2 if t.accepted)
    assert all("clashscore" not in t.metrics for t in trials2 if not t.accepted)
    # the next grid weight ran ahead: 16 started while 8 was judged, and was
    # then ended when 8 failed
    assert sorted(os.listdir(str(serial_dir))) != sorted(os.listdir(str(forked_dir)))
    assert "started_16" in os.listdir(str(forked_dir))
    assert "started_16" not in os.listdir(str(serial_dir))
    # a trial's seconds are its own, not the time the search waited for it
    assert all(0.15 < t.seconds < 5 for t in trials2)


def test_children_end_with_a_killed_parent(tmp_path):
    """A parent killed outright (SIGKILL: no cleanup runs) leaves no child
    computing on: the kernel ends it (PR_SET_PDEATHSIG)."""
    script = tmp_path / "parent.py"
    pid_file = tmp_path / "child.pid"
    script.write_text(
        "import os, signal, time\n"
        "import qrefine\n"
        "from qrefine.forks import ForkedCall\n"
        "call = ForkedCall(lambda: time.sleep(120))\n"
        "open(%r, 'w').write(str(call.pid))\n"
        "time.sleep(0.5)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n" % str(pid_file))
    subprocess.call([sys.executable, str(script)])
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("child %d outlived its killed parent" % child)


def test_which_searches_run_trials_at_once():
    """nproc trials at once for library restraints and whole-model QM in
    this process; one at a time for fragments (their own workers), for a
    program engine (one work directory per calculator), without a search,
    and with nproc=1."""
    from qrefine.config import phil as params_mod
    from qrefine.refine.protocol import parallel_trials

    def workers(*settings, n_atoms=1436, data_kind="map"):
        p, _ = params_mod.parse(list(settings))
        return parallel_trials(p, n_atoms, data_kind)
    assert workers("nproc=2") == 2
    assert workers("nproc=2", data_kind="reflections") == 2
    assert workers("nproc=1") == 1
    assert workers("nproc=2", data_kind=None) == 1
    assert workers("nproc=2", "data_weight=3") == 1
    assert workers("nproc=2", "restraints=qm", "engine=xtb", "method=GFN-FF") == 2
    assert workers("nproc=2", "restraints=qm", "engine=xtb", "method=GFN2-xTB",
                   "qm.clustering=true") == 1
    assert workers("nproc=2", "restraints=qm", "engine=mopac", "qm.clustering=false") == 1
    # a map model over four times weights.part_atoms: trials on a part
    assert workers("nproc=2", "restraints=qm", "engine=xtb", "method=GFN-FF",
                   n_atoms=4500) == 1
