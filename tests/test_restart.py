"""Kill a run in the middle of its weight search, resume it, and get the same
model as an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qrefine.scripts.refine import main

FAST = ["refine.macro_cycles=2", "weights.trial_macro_cycles=1", "refine.max_iterations=60"]


def sites(pdb):
    import iotbx.pdb
    return iotbx.pdb.input(file_name=pdb).atoms().extract_xyz().as_numpy_array()


def checkpoint_trials(path):
    try:
        with np.load(path) as z:
            return len(json.loads(bytes(z["state"]).decode())["trials"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_model(tmp_path, structures, test_data):
    d = os.path.join(structures, "xray/1us0_helix")
    inputs = [os.path.join(d, "perturbed/1.5/3.pdb"), os.path.join(d, "data.mtz"),
              "chem_data=%s" % os.path.join(test_data, "chem_data")] + FAST

    whole = tmp_path / "whole"
    assert main(inputs + ["output.prefix=run", "output.dir=%s" % whole]) == 0

    killed = tmp_path / "killed"
    exe = shutil.which("qr.refine", path=os.path.dirname(sys.executable)) or "qr.refine"
    proc = subprocess.Popen([exe] + inputs + ["output.prefix=run", "output.dir=%s" % killed],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "run.checkpoint"
    deadline = time.time() + 120
    while checkpoint_trials(checkpoint) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = checkpoint_trials(checkpoint)
    assert n_done >= 2
    assert not (killed / "run_refined.pdb").exists()

    resumed = tmp_path / "resumed"
    assert main(inputs + ["restart=%s" % checkpoint, "output.prefix=run",
                          "output.dir=%s" % resumed]) == 0
    log = (resumed / "run.log").read_text()
    assert "resuming from" in log and log.count("(from checkpoint)") == n_done
    a = json.loads((whole / "run_summary.json").read_text())
    b = json.loads((resumed / "run_summary.json").read_text())
    assert [t["weight"] for t in a["weight_search"]] == [t["weight"] for t in b["weight_search"]]
    assert a["chosen_weight"] == b["chosen_weight"]
    diff = np.abs(sites(str(whole / "run_refined.pdb")) - sites(str(resumed / "run_refined.pdb")))
    assert diff.max() < 1e-3
    assert abs(a["final"]["r_free"] - b["final"]["r_free"]) < 1e-4
    assert not os.path.exists(resumed / "run.checkpoint")


def test_restart_with_other_parameters_is_refused(tmp_path, structures, capsys, test_data):
    from qrefine.checkpoint import Checkpoint
    ck = Checkpoint(str(tmp_path / "x.checkpoint"), {"inputs": {}, "parameters": {"a": 1}})
    ck.save()
    d = os.path.join(structures, "xray/1us0_helix")
    code = main([os.path.join(d, "perturbed/1.5/3.pdb"), os.path.join(d, "data.mtz"),
                 "restart=%s" % ck.path, "output.dir=%s" % (tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "different run" in err and len(err.strip().splitlines()) == 1


def test_a_resumed_run_may_change_its_number_of_macro_cycles():
    from qrefine.checkpoint import fingerprint
    def fp(**parameters):
        return fingerprint({"model": "m.pdb"}, dict({"data_weight": 1.0}, **parameters))
    a = fp(**{"refine.macro_cycles": 5, "qm.low_level_cycles": 30})
    assert a == fp(**{"refine.macro_cycles": 9, "qm.low_level_cycles": 12})
    assert a != fp(**{"refine.macro_cycles": 5, "qm.low_level_cycles": 30, "data_weight": 2.0})


def test_truncated_checkpoint_is_bad_input(tmp_path):
    """A checkpoint cut in half (a full disk, a broken copy) is refused in one
    line that names the file, not as an internal error."""
    from qrefine.checkpoint import Checkpoint
    from qrefine.errors import QRefineError
    path = str(tmp_path / "r.checkpoint")
    ck = Checkpoint(path, {"inputs": {}, "parameters": {}})
    ck.trials, ck.trial_sites = [{"weight": 1.0}], [np.zeros((50, 3))]
    ck.save()
    Checkpoint.load(path, {"inputs": {}, "parameters": {}})  # whole: loads
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(QRefineError) as e:
        Checkpoint.load(path, {"inputs": {}, "parameters": {}})
    message = str(e.value)
    assert path in message and "restart=" in message and "\n" not in message
