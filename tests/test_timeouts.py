"""qm.timeout, interruptions and engine child processes, provoked for real: a
MOPAC command that hangs (``sleep``; ASE_MOPAC_COMMAND is MOPAC's documented
override), SIGTERM to a running qr.refine, and an xtb call longer than its
limit in a fragment worker."""

import glob
import os
import signal
import subprocess
import sys
import shutil
import time

import pytest

from qrefine.errors import QRefineError
from qrefine.scripts.refine import main


def sleeping(marker):
    """PIDs of the hung 'engine' processes (sleep <marker>)."""
    out = subprocess.run(["pgrep", "-f", "sleep %d" % marker], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def hung_mopac(monkeypatch, tmp_path):
    """MOPAC's command replaced by one that never finishes; temporary
    folders go to tmp_path/tmp, so leftovers can be counted."""
    if shutil.which("pgrep") is None:
        pytest.skip("pgrep is not installed")
    marker = 300 + os.getpid() % 600
    monkeypatch.setenv("ASE_MOPAC_COMMAND", "sleep %d; true PREFIX.mop" % marker)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield marker, tmp
    for pid in sleeping(marker):  # never leave one behind, even on failure
        os.kill(pid, signal.SIGKILL)


def helix(structures):
    return os.path.join(structures, "xray/1us0_helix/a87_99_h.pdb")


def test_a_hung_program_is_killed_retried_and_its_input_kept(structures, tmp_path,
                                                             hung_mopac, capsys):
    marker, tmp = hung_mopac
    out = tmp_path / "out"
    t0 = time.time()
    code = main([helix(structures), "restraints=qm", "engine=mopac", "qm.timeout=1",
                 "qm.clustering=false", "output.dir=%s" % out, "output.prefix=r"])
    seconds = time.time() - t0
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "did not finish in 1 s (qm.timeout=1)" in err and "after 2 retries" in err
    assert str(out / "r_failed") in err
    assert seconds < 60  # three attempts of 1 s, not a hang
    kept = os.listdir(out / "r_failed")
    assert "failed_geometry.xyz" in kept and "engine_files" in kept
    assert os.path.isfile(out / "r_failed" / "engine_files" / "job.mop")
    assert sleeping(marker) == []  # every killed attempt's program is gone
    assert glob.glob(str(tmp / "qrefine-mopac-*")) == []  # and its temporary folder


def test_sigterm_ends_the_run_its_workers_and_their_programs(structures, tmp_path,
                                                             hung_mopac, test_data):
    marker, tmp = hung_mopac
    exe = shutil.which("qr.refine", path=os.path.dirname(sys.executable)) or "qr.refine"
    out = tmp_path / "out"
    proc = subprocess.Popen([exe, helix(structures), "restraints=qm", "engine=mopac",
                             "qm.clustering=true", "fragments.max_cluster_residues=4",
                             "fragments.buffer=3", "nproc=2", "output.dir=%s" % out,
                             "output.prefix=r",
                             "chem_data=%s" % os.path.join(test_data, "chem_data")],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.time() + 120
        while len(sleeping(marker)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert len(sleeping(marker)) >= 2, "no engine programs started: %s" % (
            proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert code == 130 and "interrupted" in err, err
    time.sleep(0.5)
    assert sleeping(marker) == []
    assert glob.glob(str(tmp / "qrefine-mopac-*")) == []
    assert not (out / "r_refined.pdb").exists() and not (out / "r.log").exists()


def test_an_in_process_engine_over_its_limit_ends_its_worker(helix_model, tmp_path):
    """GFN2-xTB on a fragment cannot finish in 1 ms: with nproc=1 the
    fragments still run in a worker, which is ended, started again for one
    more try, ended again; the error names the fragment and keeps its input."""
    from common import xtb_or_skip
    xtb_or_skip()
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    failed = tmp_path / "failed"
    source = FragmentQMRestraints(helix_model, "xtb", "GFN2-xTB", options={"timeout": 0.001},
                                  nproc=1, failed_dir=str(failed), max_cluster_residues=4,
                                  buffer=3.0)
    try:
        with pytest.raises(QRefineError) as e:
            source.gradient(helix_model.get_sites_cart().as_numpy_array())
        assert source.executor.stats()["worker_restarts"] == 2
    finally:
        source.close()
    message = str(e.value)
    assert "did not finish in 0.001 s (qm.timeout=0.001), twice" in message
    folders = os.listdir(failed)
    assert len(folders) == 1 and str(failed / folders[0]) in message
    assert sorted(os.listdir(failed / folders[0])) == ["failed_geometry.xyz", "failure.txt"]


def test_timeout_on_a_whole_model_in_process_engine_is_refused(structures, tmp_path, capsys):
    code = main([helix(structures), "restraints=qm", "engine=xtb", "method=GFN-FF",
                 "qm.timeout=10", "qm.clustering=false", "output.dir=%s" % (tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "qm.timeout= with engine xtb needs fragments" in err and "qm.clustering=true" in err
    assert not (tmp_path / "o").exists()
