"""Output files: names, atomic writes, and protection of the inputs.

Every file is written to a hidden temporary file in the output directory and
renamed into place, so a crash never leaves a half-written output, and an
existing file is only replaced by a complete one.  A run's final files are
renamed together at its end (:class:`StagedFiles`).  A write that fails
(a full disk, a read-only directory) is one QRefineError line naming the
file (:func:`output_error`).
"""

import json
import os
import tempfile

from libtbx.utils import null_out
import mmtbx.model
import numpy as np

from qrefine.errors import QRefineError, output_error


class OutputPaths:
    """Output files of qr.refine; other commands override :meth:`_name_files`."""

    def __init__(self, prefix, directory):
        self.prefix = prefix
        self.directory = os.path.abspath(directory)
        self._name_files(os.path.join(self.directory, prefix))
        # The run's final files, renamed into place together (StagedFiles);
        # logged_run rolls them back when the run fails after all.
        self.staged = StagedFiles()
        self.note = None  # why the prefix was numbered (for_run), for the log

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

    def exist(self):
        return [p for p in self.all() if os.path.lexists(p)]

    @classmethod
    def for_run(cls, model_path, prefix, directory, inputs, overwrite=False):
        """Output paths for a run, refusing any that would overwrite an input.

        Where an earlier run's outputs carry the prefix, the run is numbered
        (``<prefix>_001``, ``_002``, ... the first with no outputs yet), as
        Phenix does, unless ``overwrite``; ``note`` then says so."""
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
        if not overwrite and paths.exist():
            earlier = paths
            for n in range(1, 1000):
                paths = cls("%s_%03d" % (prefix, n), directory or ".")
                if not paths.exist():
                    break
            else:
                raise QRefineError("outputs %s_001 .. _999 all exist in %s; choose another "
                                   "output.prefix= or output.dir=" % (prefix, earlier.directory))
            paths.note = ("%s is there from an earlier run, so this run's outputs are "
                          "named %s (output.overwrite=true replaces instead)"
                          % (os.path.basename(earlier.exist()[0]), paths.prefix))
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


def _remove(path):
    """Remove ``path`` if there; in a directory gone read-only it stays."""
    try:
        if path and os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass


def _write_temp(path, data):
    """Write ``data`` in full to a new hidden file beside ``path``; return its name."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                   dir=os.path.dirname(os.path.abspath(path)))
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file owner-only; outputs get the usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _remove(tmp)
        raise output_error(path, e) from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def write_atomic(path, text):
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` via a temporary file and a rename."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise output_error(path, e) from None


def write_json(path, data):
    write_atomic(path, _json_text(data))


def _json_text(data):
    return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


class StagedFiles:
    """A run's final files: each written in full to a hidden temporary name
    by :meth:`write`, then all renamed into place by :meth:`commit`.

    Why: a full disk or a read-only directory shows while writing, and
    everything is written before the first rename, so such a failure leaves
    no new file and the previous run's files at the same names as they were.
    Renames need no space.  They go in the order written, except that files
    written with ``last=True`` (the model files) go after all others: a model
    file that is there means its summary is there too.
    If a rename fails (the directory turned read-only between two of them),
    or the run fails after the commit (:meth:`roll_back`, called by
    qrefine.scripts.logged_run), the files this run renamed are removed
    again, where the directory still lets us: a set of outputs that is
    there is complete.
    """

    def __init__(self):
        self._pending = []    # (temporary name, final name), in rename order
        self._last = []       # the same, renamed after those in _pending
        self._remove = []     # final names of files this run does not write
        self.committed = []   # final names this run has renamed into place

    def __contains__(self, path):
        return any(p == path for _, p in self._pending + self._last) or \
            path in self.committed

    def write(self, path, data, last=False):
        """Write ``data`` (bytes or text) for ``path``; it appears at commit."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        (self._last if last else self._pending).append((_write_temp(path, data), path))

    def write_json(self, path, data):
        self.write(path, _json_text(data))

    def remove_at_commit(self, path):
        """Remove an earlier run's ``path`` at commit, e.g. a PDB file this run
        could not write, so that it is not taken for this run's model."""
        self._remove.append(path)

    def commit(self):
        pending, self._pending, self._last = self._pending + self._last, [], []
        for i, (tmp, path) in enumerate(pending):
            try:
                os.replace(tmp, path)
            except OSError as e:
                for t, _ in pending[i:]:
                    _remove(t)
                self.roll_back()
                raise output_error(path, e) from None
            self.committed.append(path)
        for path in self._remove:
            _remove(path)

    def discard(self):
        """Remove the temporary files of a run that failed before its commit."""
        for tmp, _ in self._pending + self._last:
            _remove(tmp)
        self._pending, self._last = [], []

    def roll_back(self):
        """Remove what this run wrote: pending temporary files and the files
        already renamed into place."""
        self.discard()
        for path in self.committed:
            _remove(path)
        self.committed = []


def _pdb_range_problem(model):
    """Why the PDB format cannot hold the model's coordinates, or ''.

    PDB's 8.3f columns hold -999.999 to 9999.999; beyond that cctbx writes
    fewer decimals (and fails from 1e7 on), which would silently lose
    precision."""
    beyond = coordinates_beyond_pdb(model.get_hierarchy().atoms())
    return "coordinates beyond the PDB format's -999.999..9999.999 A in %s" % beyond \
        if beyond else ""


def coordinates_beyond_pdb(atoms):
    """Which atoms have a coordinate PDB's 8.3f columns cannot hold, in
    words ("2 atoms (first: pdb=... x=-1000.123)"), or ''."""
    xyz = np.array(atoms.extract_xyz()).reshape(-1, 3)
    # Values that round to -1000.000 or 10000.000 no longer fit in 8 columns.
    bad = (xyz <= -999.9995) | (xyz >= 9999.9995)
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return ""
    i = int(rows[0])
    k = int(np.flatnonzero(bad[i])[0])
    return "%d atom%s (first: %s, %s=%.3f)" % (
        len(rows), "" if len(rows) == 1 else "s", " ".join(atoms[i].id_str().split()),
        "xyz"[k], xyz[i, k])


def write_model(model, pdb_path, cif_path, staged=None, remarks=()):
    """Write the model as mmCIF and, when it fits the format, as PDB.

    A model whose coordinates PDB's 8.3f columns cannot hold (or that does
    not fit the format otherwise) is written as mmCIF only, with a note, and
    an earlier run's PDB file at ``pdb_path`` is removed: a user expects
    what phenix.refine does for such models, the mmCIF, and no stale PDB
    beside it.  (A model that is out of range already when it is read is
    refused by qrefine.model.io.read_model.)  With ``staged``
    (:class:`StagedFiles`), the files appear at its commit; without, now.

    ``remarks``: lines for the PDB header, written as ``REMARK   3`` records
    (the refinement statistics, as phenix.refine writes them).

    Returns a list of notes (e.g. why no PDB file was written).
    """
    own = staged is None
    staged = StagedFiles() if own else staged
    notes = []
    # A restraint-free copy: with restraints, cctbx appends model statistics
    # to the mmCIF, and those call the external probe program.
    plain = mmtbx.model.manager(model_input=None,
                                pdb_hierarchy=model.get_hierarchy().deep_copy(),
                                crystal_symmetry=model.crystal_symmetry(), log=null_out())
    cif_text = plain.model_as_mmcif()
    problem = _pdb_range_problem(plain)
    text = None
    if not problem:
        try:
            text = "".join("REMARK   3 %s\n" % r[:69] for r in remarks) + plain.model_as_pdb()
        except Exception as e:  # cctbx refuses models too large for the PDB format
            problem = str(e).splitlines()[0]
    if problem:
        notes.append("no PDB file written (%s); use the mmCIF file" % problem)
        staged.remove_at_commit(pdb_path)
    try:
        if text is not None:
            staged.write(pdb_path, text, last=True)
        staged.write(cif_path, cif_text, last=True)
    except BaseException:
        if own:
            staged.discard()
        raise
    if own:
        staged.commit()
    return notes
