"""Models the PDB format cannot hold, occupancies of 0, and a disk that
fills or turns read-only during a run.

Each must end as bad input (exit 1, one line naming the file and what to
do), not as an internal error, and leave either a complete set of outputs
or none: no model file without its summary, no hidden temporary files.

The full and read-only disks are real: a small tmpfs, filled or remounted
read-only from a function the run calls part way.  Mounting needs root with
mount rights; elsewhere those tests are skipped, and the read-only one falls
back to chmod (not root: the kernel refuses writes for real) or, as root
without mount rights (root ignores permission bits), to a simulated EROFS.
"""

import errno
import json
import os
import stat
import subprocess

import numpy as np
import pytest

import qrefine.refine.checkpoint
import qrefine.errors
import qrefine.outputs
import qrefine.commands.refine
from qrefine.scripts.refine import main
from test_cli import assert_one_line_error, run_cli

FAST = ["refine.macro_cycles=1", "refine.max_iterations=5", "weights.search=false",
        "data_weight=1"]


@pytest.fixture
def helix(structures):
    """The 1us0 helix with H (94 atoms) and its X-ray data."""
    d = os.path.join(structures, "xray/1us0_helix")
    return os.path.join(d, "a87_99_h.pdb"), os.path.join(d, "data.mtz")


def _write_moved(src, dst, atom, xyz, occupancy=None, rigid=False):
    """Write ``src`` to ``dst`` (PDB or mmCIF by extension) with atom number
    ``atom`` at ``xyz`` (None: unchanged; ``rigid``: the whole model moved
    with it) and every occupancy set to ``occupancy`` (None: unchanged)."""
    import iotbx.pdb
    from scitbx.array_family import flex
    inp = iotbx.pdb.input(file_name=src)
    h = inp.construct_hierarchy()
    if xyz is not None:
        sites = np.array(h.atoms().extract_xyz())
        if rigid:
            sites += np.array(xyz) - sites[atom]
        else:
            sites[atom] = xyz
        h.atoms().set_xyz(flex.vec3_double(sites))
    if occupancy is not None:
        for a in h.atoms():
            a.occ = occupancy
    cs = inp.crystal_symmetry()
    with open(dst, "w") as f:
        f.write(h.as_mmcif_string(crystal_symmetry=cs) if dst.endswith(".cif")
                else h.as_pdb_string(crystal_symmetry=cs))


# --- a) coordinates beyond PDB's 8.3f columns -----------------------------------

@pytest.mark.parametrize("value, rigid, shown", [
    # was exit 2: cctbx cannot copy the model
    (12345678.0, False, "1 atom (first: pdb=\" C GLY A 88 \", x=12345678.000)"),
    # the whole helix moved: was a finished run with every x cut to 2 decimals
    (-1000.1234, True, "atoms (first: pdb=\" N GLY A 87 \", x=-1001.159)"),
])
def test_model_beyond_pdb_range_is_refused(tmp_path, capsys, helix, value, rigid, shown):
    model, mtz = helix
    big = str(tmp_path / "big.cif")
    _write_moved(model, big, 10, (value, 13.437, 9.673), rigid=rigid)
    out = tmp_path / "out"
    code, _, err = run_cli([big, mtz] + FAST + ["output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "big.cif", shown, "-999.999..9999.999",
                          "nearer the origin")
    assert not out.exists()


def test_model_ending_beyond_pdb_range_is_written_as_mmcif_only(tmp_path, capsys, helix,
                                                                  monkeypatch):
    """A model that only ends beyond the range gets its mmCIF file, a note in
    log and summary, and no PDB file; an earlier run's PDB file is removed,
    not left to pass for this run's model.  Real refinements pull outlying
    atoms in, so the end is provoked: the helix starts with its lowest atom
    at y=-999.000, and the real protocol's result is moved by -1.5 A in y."""
    import iotbx.pdb
    model = str(tmp_path / "edge.pdb")
    inp = iotbx.pdb.input(file_name=helix[0])
    h = inp.construct_hierarchy()
    xyz = np.array(h.atoms().extract_xyz())
    low = int(np.argmin(xyz[:, 1]))
    xyz[:, 1] += -999.0 - xyz[low, 1]
    from scitbx.array_family import flex
    h.atoms().set_xyz(flex.vec3_double(xyz))
    with open(model, "w") as f:
        f.write(h.as_pdb_string(crystal_symmetry=inp.crystal_symmetry()))
    real = qrefine.commands.refine.run_protocol

    def moved_out(*args, **kwargs):
        result, ck = real(*args, **kwargs)
        result.sites = np.array(result.sites) + [0.0, -1.5, 0.0]
        return result, ck

    monkeypatch.setattr(qrefine.commands.refine, "run_protocol", moved_out)
    out = tmp_path / "out"
    out.mkdir()
    (out / "r_refined.pdb").write_text("an earlier run's model\n")
    code, _, err = run_cli([model, "mode=opt"] + FAST + ["output.prefix=r", "output.overwrite=true",
                                                          "output.dir=%s" % out], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["r.log", "r_refined.cif", "r_summary.json"]
    import iotbx.pdb
    final = np.array(iotbx.pdb.input(file_name=str(out / "r_refined.cif")).atoms().extract_xyz())
    assert final[:, 1].min() < -1000.0
    assert abs(final[low, 1] - (-1000.5)) < 0.3  # the mmCIF keeps it, in full precision
    summary = json.loads((out / "r_summary.json").read_text())
    assert summary["outputs"]["pdb"] is None
    note = [n for n in summary["notes"] if n.startswith("no PDB file written")]
    assert len(note) == 1 and "(first: pdb=" in note[0] and "y=-1000." in note[0], note
    assert "use the mmCIF file" in note[0]
    assert "note: " + note[0] in (out / "r.log").read_text()


# --- b) every occupancy 0 ---------------------------------------------------------

def test_all_occupancies_zero_with_xray_data(tmp_path, capsys, helix):
    """Was exit 2: "Zero denominator in scale calculation"."""
    model, mtz = helix
    occ0 = str(tmp_path / "occ0.pdb")
    _write_moved(model, occ0, 0, None, occupancy=0.0)
    out = tmp_path / "out"
    code, _, err = run_cli([occ0, mtz] + FAST + ["output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "occ0.pdb", "all 94 atoms have occupancy 0", "data.mtz",
                          "set the occupancies")
    assert not out.exists()


def test_all_occupancies_zero_with_a_map(tmp_path, capsys, structures):
    """Was a finished run with CC 0 that moved atoms by the restraints alone."""
    d = os.path.join(structures, "cryo_em/3j63_A")
    occ0 = str(tmp_path / "occ0.pdb")
    _write_moved(os.path.join(d, "3j63_A_box_complete.pdb"), occ0, 0, None, occupancy=0.0)
    out = tmp_path / "out"
    code, _, err = run_cli([occ0, os.path.join(d, "3j63_A_box.ccp4"), "resolution=3.8"]
                           + FAST + ["output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "occ0.pdb", "have occupancy 0", "3j63_A_box.ccp4")
    assert not out.exists()


def test_all_occupancies_zero_without_data_runs_with_a_note(tmp_path, capsys, helix):
    """Geometry alone does not use occupancies: the run goes on, and says so."""
    model, _ = helix
    occ0 = str(tmp_path / "occ0.pdb")
    _write_moved(model, occ0, 0, None, occupancy=0.0)
    out = tmp_path / "out"
    code, _, err = run_cli([occ0] + FAST + ["output.dir=%s" % out], capsys)
    assert code == 0, err
    summary = json.loads((out / "occ0_summary.json").read_text())
    assert any("occupancy 0" in n for n in summary["notes"]), summary["notes"]


# --- c) a disk that fills or turns read-only --------------------------------------

def _mount_tmpfs(path, options="size=4m"):
    """Mount a tmpfs at ``path``; the reason when that is not allowed."""
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip() or "mount exit %d" % r.returncode)


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB file system (tmpfs) at tmp_path/disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    why = _mount_tmpfs(disk)
    if why:
        pytest.skip("cannot mount a tmpfs here (%s); needs root with mount rights" % why)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill_disk(disk):
    """Fill the file system at ``disk`` to the last byte: later writes get a
    real ENOSPC from the kernel."""
    with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def _files(directory):
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


def test_disk_full_while_writing_outputs(capsys, helix, small_disk, monkeypatch):
    """The disk fills as the final files are written: one line, exit 1, and
    the earlier run's complete set at the same prefix stays as it was (no
    model file of this run without its summary, no temporary files).  The
    checkpoint of the finished cycle stays for restart=."""
    model, mtz = helix
    out = small_disk / "out"
    argv = [model, mtz] + FAST + ["output.prefix=r", "output.dir=%s" % out]
    assert main(argv) == 0
    capsys.readouterr()
    before = _files(out)
    assert sorted(before) == ["r.log", "r_refined.cif", "r_refined.pdb", "r_summary.json"]
    real = qrefine.commands.refine.write_model

    def fill_then_write(*args, **kwargs):
        fill_disk(small_disk)
        return real(*args, **kwargs)

    monkeypatch.setattr(qrefine.commands.refine, "write_model", fill_then_write)
    code, _, err = run_cli(argv + ["output.overwrite=true"], capsys)
    assert_one_line_error(code, err, "cannot write %s" % (out / "r_refined."),
                          "No space left on device", "free space or choose another output.dir=")
    after = _files(out)
    assert after.pop("r.checkpoint")
    assert after == before


def test_disk_full_while_writing_a_checkpoint(capsys, helix, small_disk, monkeypatch):
    model, mtz = helix
    out = small_disk / "out"
    real = qrefine.refine.checkpoint.Checkpoint.save

    def fill_then_save(self):
        fill_disk(small_disk)
        return real(self)

    monkeypatch.setattr(qrefine.refine.checkpoint.Checkpoint, "save", fill_then_save)
    code, _, err = run_cli([model, mtz] + FAST + ["output.prefix=r", "output.dir=%s" % out],
                           capsys)
    assert_one_line_error(code, err, "cannot write %s" % (out / "r.checkpoint"),
                          "No space left on device")
    assert not out.exists()  # the directory it made, empty again, is gone


def test_disk_full_while_writing_the_log(capsys, helix, small_disk, monkeypatch):
    """The log is written all along, so on a filling disk it is often the
    first to fail.  The disk is filled as the restraints are built, and 8 KB
    are logged (more than the log's last, partly used page can take)."""
    model, mtz = helix
    out = small_disk / "out"
    real = qrefine.commands.refine.build_restraints

    def fill_then_build(*args, **kwargs):
        fill_disk(small_disk)
        kwargs["reporter"].info("x" * 8192)
        return real(*args, **kwargs)

    monkeypatch.setattr(qrefine.commands.refine, "build_restraints", fill_then_build)
    code, _, err = run_cli([model, mtz] + FAST + ["output.prefix=r", "output.dir=%s" % out],
                           capsys)
    assert_one_line_error(code, err, "cannot write %s" % (out / "r.log"),
                          "No space left on device")
    assert not out.exists()


def test_output_dir_turns_read_only_mid_run(tmp_path, capsys, helix, monkeypatch):
    """Made read-only as the final files are written: one line, exit 1, no
    output.  What a read-only directory keeps is only what the run could
    not remove: its partial log and its lock file (hidden), and the
    checkpoint written before, for restart=."""
    model, mtz = helix
    out = tmp_path / "out"
    out.mkdir()
    probe = tmp_path / "probe"
    probe.mkdir()
    if os.geteuid() != 0:
        how = "chmod"
    elif _mount_tmpfs(probe, "ro,size=64k") is None:
        # A file system with files open for writing (the log) cannot be
        # remounted read-only, so a read-only one is mounted over out.
        subprocess.run(["umount", str(probe)], check=True)
        how = "mount"
    else:  # root ignores permission bits, and may not mount: simulate EROFS
        how = "simulated"
    real_write = qrefine.commands.refine.write_model

    def refused_mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))

    def read_only_then_write(*args, **kwargs):
        if how == "chmod":
            os.chmod(out, 0o555)
        elif how == "mount":
            assert _mount_tmpfs(out, "ro,size=64k") is None
        else:
            monkeypatch.setattr(qrefine.outputs.tempfile, "mkstemp", refused_mkstemp)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(qrefine.commands.refine, "write_model", read_only_then_write)
    try:
        code, _, err = run_cli([model, mtz] + FAST + ["output.prefix=r",
                                                      "output.dir=%s" % out], capsys)
    finally:
        monkeypatch.undo()
        if how == "chmod":
            os.chmod(out, stat.S_IRWXU)
        elif how == "mount":
            subprocess.run(["umount", "-l", str(out)], capture_output=True)
    left = sorted(os.listdir(out))
    reason = "Permission denied" if how == "chmod" else "Read-only file system"
    assert_one_line_error(code, err, "cannot write %s" % (out / "r_refined."), reason,
                          "make %s writable or choose another output.dir=" % out)
    visible = [n for n in left if not n.startswith(".")]
    assert visible == ["r.checkpoint"], left
    assert set(left) - set(visible) <= {".r.log.partial", ".r.log.lock"}, left


def test_a_failed_rename_takes_back_the_renamed_outputs(tmp_path, capsys, helix, monkeypatch):
    """If the directory turns read-only between two renames of the final
    files (simulated: the mmCIF's rename, the last one, fails with EROFS),
    the summary already renamed is removed again: no summary of a run that
    has no model, and no model file without its summary."""
    model, mtz = helix
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if str(dst).endswith("_refined.cif"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dst)
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(qrefine.outputs.os, "replace", replace)
    code, _, err = run_cli([model, mtz] + FAST + ["output.prefix=r", "output.dir=%s" % out],
                           capsys)
    monkeypatch.undo()
    assert_one_line_error(code, err, "cannot write %s" % (out / "r_refined.cif"),
                          "Read-only file system")
    assert sorted(os.listdir(out)) == ["r.checkpoint"]


def test_staged_files_replace_an_earlier_set_only_when_all_are_written(tmp_path):
    """StagedFiles on its own: nothing appears before commit; a failed
    write leaves the earlier files and no temporary file."""
    a, b = tmp_path / "a.json", tmp_path / "b.cif"
    a.write_text("old a\n")
    b.write_text("old b\n")
    staged = qrefine.outputs.StagedFiles()
    staged.write(str(b), "new b\n", last=True)
    staged.write(str(a), "new a\n")
    assert a.read_text() == "old a\n" and b.read_text() == "old b\n"
    with pytest.raises(qrefine.errors.QRefineError, match="cannot write .*c.txt"):
        staged.write(str(tmp_path / "nodir" / "c.txt"), "x")
    staged.commit()
    assert a.read_text() == "new a\n" and b.read_text() == "new b\n"
    assert staged.committed == [str(a), str(b)]  # the model-like file last
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.cif"]
    staged.roll_back()
    assert os.listdir(tmp_path) == []
