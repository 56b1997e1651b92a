"""Checkpoints: enough state to resume a killed qr.refine run.

Written after every weight-search trial and every final macro cycle to
``<prefix>.checkpoint`` (a NumPy .npz archive: coordinates as arrays, the rest
as JSON), atomically, and removed when the run completes.  Resuming with
``restart=<prefix>.checkpoint`` reuses finished trials and cycles as they are.
"""

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from qrefine.errors import QRefineError
from qrefine.outputs import write_atomic_bytes

FORMAT = 1


def fingerprint(inputs, parameters):
    """What must match for a checkpoint to be reused: the inputs' contents
    and the parameters that change results (not output names, restart,
    nproc, nor the number of macro cycles: a resumed run may go on longer or
    stop sooner).

    Inputs are compared by content (SHA-256), not by path: a model replaced
    at the same path must not resume with the old model's trials, and a
    copy moved elsewhere may resume.
    """
    skip = ("output.", "restart", "nproc", "parallel.", "refine.macro_cycles",
            "qm.low_level_cycles")
    return {"inputs": {k: file_sha256(v) if isinstance(v, str) else v
                       for k, v in inputs.items()},
            "parameters": {k: v for k, v in parameters.items() if not k.startswith(skip)}}


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Checkpoint:
    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint
        self.trials = []         # dicts: weight, metrics, seconds, accepted, reason
        self.trial_sites = []    # arrays, parallel to trials
        self.chosen_weight = None
        self.cycles = []         # dicts of finished final macro cycles
        self.sites = None        # coordinates after the last finished cycle
        self.adaptive = []       # dicts of finished adaptive force-scaling steps
        self.adaptive_sites = [] # arrays, parallel to adaptive

    def save(self):
        state = {"format": FORMAT, "fingerprint": self.fingerprint, "trials": self.trials,
                 "chosen_weight": self.chosen_weight, "cycles": self.cycles,
                 "adaptive": self.adaptive}
        arrays = {"state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)}
        for i, s in enumerate(self.trial_sites):
            arrays["trial_%d" % i] = np.asarray(s)
        for i, s in enumerate(self.adaptive_sites):
            arrays["adaptive_%d" % i] = np.asarray(s)
        if self.sites is not None:
            arrays["sites"] = np.asarray(self.sites)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomic_bytes(self.path, buffer.getvalue())

    @classmethod
    def load(cls, path, fingerprint):
        if not os.path.isfile(path):
            raise QRefineError("restart file %s does not exist" % path)
        try:
            with np.load(path) as z:
                state = json.loads(bytes(z["state"]).decode())
                trial_sites = [z["trial_%d" % i] for i in range(len(state["trials"]))]
                sites = z["sites"] if "sites" in z.files else None
                adaptive_sites = [z["adaptive_%d" % i]
                                  for i in range(len(state.get("adaptive", [])))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            # A run killed while the disk filled, or a file cut in a copy:
            # bad input, said in one line, not an internal error.
            raise QRefineError("restart file %s is truncated or not a qr.refine checkpoint "
                               "(%s); rerun without restart=" % (path, " ".join(str(e).split())))
        if state.get("format") != FORMAT:
            raise QRefineError("restart file %s has an unknown format" % path)
        if state["fingerprint"] != json.loads(json.dumps(fingerprint)):
            diff = _first_difference(state["fingerprint"], json.loads(json.dumps(fingerprint)))
            if diff.startswith("inputs."):
                what = "the %s file's content differs" % diff[len("inputs."):]
            else:
                what = "%s differs" % diff
            raise QRefineError("restart file %s was written for a different run (%s); "
                               "rerun without restart= or with the same inputs and "
                               "parameters" % (path, what))
        ck = cls(path, fingerprint)
        ck.trials, ck.trial_sites = state["trials"], trial_sites
        ck.chosen_weight, ck.cycles, ck.sites = state["chosen_weight"], state["cycles"], sites
        ck.adaptive, ck.adaptive_sites = state.get("adaptive", []), adaptive_sites
        return ck

    def remove(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def _first_difference(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), prefix + k + ".")
    return prefix.rstrip(".") or "content"
