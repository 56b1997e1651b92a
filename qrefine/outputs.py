"""Output files: names, atomic writes, and protection of the inputs.

Every file is written to a hidden temporary file in the output directory and
renamed into place, so a crash never leaves a half-written output, and an
existing file is only replaced by a complete one.
"""

import json
import os
import tempfile

from qrefine.errors import QRefineError


class OutputPaths:
    """Output files of qr.refine; other commands override :meth:`_name_files`."""

    def __init__(self, prefix, directory):
        self.prefix = prefix
        self.directory = os.path.abspath(directory)
        self._name_files(os.path.join(self.directory, prefix))

    def _name_files(self, base):
        self.pdb = base + "_refined.pdb"
        self.cif = base + "_refined.cif"
        self.log = base + ".log"
        self.summary = base + "_summary.json"
        # Inputs of a QM calculation that failed for good are kept here.
        self.failed_dir = base + "_failed"
        self.checkpoint = base + ".checkpoint"
        self.weights_plot = base + "_weights.png"

    def all(self):
        return [self.pdb, self.cif, self.log, self.summary]

    @classmethod
    def for_run(cls, model_path, prefix, directory, inputs):
        """Output paths for a run, refusing any that would overwrite an input."""
        if not prefix:
            prefix = os.path.splitext(os.path.basename(model_path))[0]
        if os.sep in prefix or prefix in (".", ".."):
            raise QRefineError("output.prefix=%s must be a plain name; use output.dir= "
                               "for the directory" % prefix)
        paths = cls(prefix, directory or ".")
        given = {os.path.realpath(p) for p in inputs if p}
        for p in paths.all():
            if os.path.realpath(p) in given:
                raise QRefineError("output %s would overwrite an input file; choose "
                                   "another output.prefix= or output.dir=" % p)
        return paths

    def prepare_directory(self):
        # Remembered so that a run refused for bad input can remove the
        # directory it made, and leave nothing behind.
        self.created_directory = not os.path.isdir(self.directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise QRefineError("cannot create output directory %s: %s"
                               % (self.directory, e.strerror))
        if not os.access(self.directory, os.W_OK):
            raise QRefineError("output directory %s is not writable" % self.directory)


def write_atomic(path, text):
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` via a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        # mkstemp makes the file owner-only; outputs get the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_model(model, pdb_path, cif_path):
    """Write the model as mmCIF and, when it fits the format, as PDB.

    Returns a list of notes (e.g. why no PDB file was written).
    """
    import mmtbx.model
    from libtbx.utils import null_out
    notes = []
    # A restraint-free copy: with restraints, cctbx appends model statistics
    # to the mmCIF, and those call the external probe program.
    plain = mmtbx.model.manager(model_input=None,
                                pdb_hierarchy=model.get_hierarchy().deep_copy(),
                                crystal_symmetry=model.crystal_symmetry(), log=null_out())
    write_atomic(cif_path, plain.model_as_mmcif())
    try:
        text = plain.model_as_pdb()
    except Exception as e:  # cctbx refuses models too large for the PDB format
        notes.append("no PDB file written (%s); use the mmCIF file" % str(e).splitlines()[0])
    else:
        write_atomic(pdb_path, text)
    return notes
