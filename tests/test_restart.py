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


def checkpoint_progress(path):
    """(trials, final macro cycles) in a checkpoint; (0, 0) while none is whole."""
    try:
        with np.load(path) as z:
            state = json.loads(bytes(z["state"]).decode())
            return len(state["trials"]), len(state["cycles"])
    except (OSError, ValueError, KeyError):
        return 0, 0


def atom_records(cif):
    """The refined coordinates as written (mmCIF: 5 decimals)."""
    return [line for line in open(cif) if line.startswith(("ATOM", "HETATM"))]


# Where to kill: (trials, final cycles) the checkpoint must hold, then
# seconds to wait, so the kill lands between trials (just after a trial's
# checkpoint), inside a trial, or in the final macro cycles.
KILL_POINTS = {"between trials": ((2, 0), 0.0), "in a trial": ((3, 0), 0.4),
               "in the final cycles": ((None, 1), 0.0)}


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_model(tmp_path, structures, test_data):
    """X-ray with scales and bulk solvent updated: a run killed at any of
    three points and resumed writes the model of an uninterrupted run, bit
    for bit (every trial's metrics, every cycle's R factors, the
    coordinates)."""
    d = os.path.join(structures, "xray/1us0_helix")
    inputs = [os.path.join(d, "perturbed/1.5/3.pdb"), os.path.join(d, "data.mtz"),
              "chem_data=%s" % os.path.join(test_data, "chem_data")] + FAST

    whole = tmp_path / "whole"
    assert main(inputs + ["output.prefix=run", "output.dir=%s" % whole]) == 0
    a = json.loads((whole / "run_summary.json").read_text())
    assert a["parameters"]["reflections.update_scales"] is True
    exe = shutil.which("qr.refine", path=os.path.dirname(sys.executable)) or "qr.refine"
    for name, ((trials, cycles), wait) in KILL_POINTS.items():
        killed = tmp_path / name.replace(" ", "_")
        proc = subprocess.Popen([exe] + inputs + ["output.prefix=run",
                                                  "output.dir=%s" % killed],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = killed / "run.checkpoint"
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            t, c = checkpoint_progress(checkpoint)
            if (trials is None or t >= trials) and c >= cycles:
                break
            time.sleep(0.01)
        time.sleep(wait)
        assert proc.poll() is None, "the run finished before it could be killed (%s)" % name
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n_trials, n_cycles = checkpoint_progress(checkpoint)
        assert n_trials >= (trials or 1) and n_cycles >= cycles
        assert not (killed / "run_refined.pdb").exists()

        resumed = tmp_path / (name.replace(" ", "_") + "_resumed")
        assert main(inputs + ["restart=%s" % checkpoint, "output.prefix=run",
                              "output.dir=%s" % resumed]) == 0, name
        log = (resumed / "run.log").read_text()
        assert "resuming from" in log and log.count("(from checkpoint)") == n_trials
        b = json.loads((resumed / "run_summary.json").read_text())
        assert [t["metrics"] for t in a["weight_search"]] == \
            [t["metrics"] for t in b["weight_search"]], name
        assert a["chosen_weight"] == b["chosen_weight"]
        assert [c["statistics"] for c in a["macro_cycles"]] == \
            [c["statistics"] for c in b["macro_cycles"]], name
        assert a["final"] == b["final"], name
        assert atom_records(whole / "run_refined.cif") == \
            atom_records(resumed / "run_refined.cif"), name
        assert not os.path.exists(resumed / "run.checkpoint")


def test_a_model_replaced_at_the_same_path_is_refused(tmp_path):
    """The checkpoint holds the inputs' contents (SHA-256), not their paths."""
    from qrefine.refine.checkpoint import Checkpoint, fingerprint
    from qrefine.errors import QRefineError
    model = tmp_path / "m.pdb"
    model.write_text("ATOM      1  CA  GLY A   1       1.000   2.000   3.000  1.00 10.00           C\n")
    ck = Checkpoint(str(tmp_path / "r.checkpoint"), fingerprint({"model": str(model)}, {}))
    ck.save()
    moved = tmp_path / "copy.pdb"
    shutil.copy(model, moved)
    Checkpoint.load(ck.path, fingerprint({"model": str(moved)}, {}))  # same content: resumes
    model.write_text(model.read_text().replace("1.000", "1.500"))
    with pytest.raises(QRefineError) as e:
        Checkpoint.load(ck.path, fingerprint({"model": str(model)}, {}))
    assert "model file's content differs" in str(e.value) and "\n" not in str(e.value)


def test_restart_with_other_parameters_is_refused(tmp_path, structures, capsys, test_data):
    from qrefine.refine.checkpoint import Checkpoint
    ck = Checkpoint(str(tmp_path / "x.checkpoint"), {"inputs": {}, "parameters": {"a": 1}})
    ck.save()
    d = os.path.join(structures, "xray/1us0_helix")
    code = main([os.path.join(d, "perturbed/1.5/3.pdb"), os.path.join(d, "data.mtz"),
                 "restart=%s" % ck.path, "output.dir=%s" % (tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "different run" in err and len(err.strip().splitlines()) == 1


def test_a_resumed_run_may_change_its_number_of_macro_cycles():
    from qrefine.refine.checkpoint import fingerprint
    def fp(**parameters):
        return fingerprint({"model": None}, dict({"data_weight": 1.0}, **parameters))
    a = fp(**{"refine.macro_cycles": 5, "qm.low_level_cycles": 30})
    assert a == fp(**{"refine.macro_cycles": 9, "qm.low_level_cycles": 12})
    assert a != fp(**{"refine.macro_cycles": 5, "qm.low_level_cycles": 30, "data_weight": 2.0})


def test_truncated_checkpoint_is_bad_input(tmp_path):
    """A checkpoint cut in half (a full disk, a broken copy) is refused in one
    line that names the file, not as an internal error."""
    from qrefine.refine.checkpoint import Checkpoint
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
