"""qr.refine from the command line: help, defaults, and bad input.

Each bad input must end in one line on stderr that names the file (or the
parameter), exit status 1, and no files in the output directory.
"""

import os
import shutil
import subprocess
import sys

import pytest

from qrefine.scripts.refine import main


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 1
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("qr.refine: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_help_and_defaults(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "qr.refine model.pdb" in out
    code, out, _ = run_cli(["--show-defaults"], capsys)
    assert code == 0 and "macro_cycles" in out and "resolution" in out


def test_console_script_is_installed():
    exe = shutil.which("qr.refine", path=os.path.dirname(sys.executable)) or shutil.which("qr.refine")
    assert exe, "qr.refine entry point not installed"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("qrefine ")


@pytest.fixture
def helix(structures):
    return os.path.join(structures, "xray/1us0_helix/perturbed/1.5/0.pdb")


def test_missing_model_file(tmp_path, capsys, test_data):
    out = tmp_path / "out"
    code, _, err = run_cli([str(tmp_path / "nope.pdb"), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "nope.pdb", "does not exist")
    assert not out.exists()  # the directory it made is gone again


def test_corrupt_model_file(tmp_path, capsys, test_data):
    bad = tmp_path / "garbage.pdb"
    bad.write_bytes(bytes(range(256)) * 20)
    out = tmp_path / "out"
    code, _, err = run_cli([str(bad), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "garbage.pdb")
    assert not out.exists()


def test_model_cut_mid_line(tmp_path, capsys, structures, test_data):
    """A PDB file cut in the middle of an ATOM record is named as such, not
    as "no restraints for residue(s) ;" with an empty name."""
    with open(os.path.join(structures, "xray/1us0_helix/a87_99_h.pdb")) as f:
        text = f.read()
    cut = text.index("ATOM", len(text) // 2) + 12
    bad = tmp_path / "cut.pdb"
    bad.write_text(text[:cut])
    out = tmp_path / "out"
    code, _, err = run_cli([str(bad), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "cut.pdb", "cut mid-line")
    assert "residue(s) ;" not in err
    assert not out.exists()


def test_an_existing_output_dir_is_kept_after_bad_input(tmp_path, capsys, test_data):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli([str(tmp_path / "nope.pdb"), "output.dir=%s" % out], capsys)
    assert code == 1 and out.is_dir() and not os.listdir(out)


def test_empty_model(tmp_path, capsys, test_data):
    empty = tmp_path / "empty.pdb"
    empty.write_text("CRYST1   10.000   10.000   10.000  90.00  90.00  90.00 P 1\nEND\n")
    out = tmp_path / "out"
    code, _, err = run_cli([str(empty), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "empty.pdb", "no atoms")
    assert not out.exists() or not os.listdir(out)


def test_non_finite_coordinates(tmp_path, capsys, helix):
    lines = open(helix).read().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("ATOM"))
    lines[i] = lines[i][:30] + "     nan" + lines[i][38:]
    bad = tmp_path / "nan.pdb"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code, _, err = run_cli([str(bad), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "nan.pdb", "line")
    assert not out.exists() or not os.listdir(out)


def test_residue_without_restraints(tmp_path, capsys, structures):
    model = os.path.join(structures, "xray/5c11/5c11.pdb")
    out = tmp_path / "out"
    code, _, err = run_cli([model, "mode=opt", "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "5c11.pdb", "4WQ", "restraints_cif=")
    assert not out.exists() or not os.listdir(out)


def test_map_needs_resolution(tmp_path, capsys, structures):
    d = os.path.join(structures, "cryo_em/3j63_A")
    out = tmp_path / "out"
    code, _, err = run_cli([os.path.join(d, "3j63_A_box_complete.pdb"),
                            os.path.join(d, "3j63_A_box.ccp4"), "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "resolution=")
    assert not out.exists() or not os.listdir(out)


def test_map_resolution_finer_than_its_voxels(tmp_path, capsys, structures):
    """resolution=0.01 on a map of 1.2 A voxels once took over 8 GB: it is
    refused in one line that gives the finest resolution the map holds."""
    d = os.path.join(structures, "cryo_em/3j63_A")
    out = tmp_path / "out"
    code, _, err = run_cli([os.path.join(d, "3j63_A_box_complete.pdb"),
                            os.path.join(d, "3j63_A_box.ccp4"), "resolution=0.01",
                            "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "resolution=0.01", "3j63_A_box.ccp4", "voxels")
    assert not out.exists()


def test_unknown_labels(tmp_path, capsys, helix, structures):
    out = tmp_path / "out"
    code, _, err = run_cli([helix, os.path.join(structures, "xray/1us0_helix/data.mtz"),
                            "labels=FOO,SIGFOO", "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "data.mtz", "FOO")
    assert not out.exists() or not os.listdir(out)


def test_model_outside_map(tmp_path, capsys, structures):
    d = os.path.join(structures, "cryo_em/3j63_A")
    lines = open(os.path.join(d, "3j63_A_box_complete.pdb")).read().splitlines()
    moved = []
    for l in lines:
        if l.startswith(("ATOM", "HETATM")):
            x = float(l[30:38]) + 200.0
            l = l[:30] + "%8.3f" % x + l[38:]
        moved.append(l)
    model = tmp_path / "moved.pdb"
    model.write_text("\n".join(moved) + "\n")
    out = tmp_path / "out"
    code, _, err = run_cli([str(model), os.path.join(d, "3j63_A_box.ccp4"), "resolution=3.8",
                            "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "3j63_A_box.ccp4")
    assert not out.exists() or not os.listdir(out)


def test_unknown_parameter(tmp_path, capsys, helix):
    code, _, err = run_cli([helix, "macro_cycle=3"], capsys)
    assert_one_line_error(code, err, "refine.macro_cycles")


def test_output_never_overwrites_input(tmp_path, capsys, helix):
    model = tmp_path / "m_refined.pdb"
    shutil.copy(helix, model)
    before = model.read_bytes()
    code, _, err = run_cli([str(model), "output.prefix=m", "output.dir=%s" % tmp_path], capsys)
    assert_one_line_error(code, err, "overwrite an input")
    assert model.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m_refined.pdb"]


def test_qm_refuses_a_model_without_hydrogens(tmp_path, capsys, structures):
    model = os.path.join(structures, "xray/1us0_helix/a87_99.pdb")
    out = tmp_path / "out"
    code, _, err = run_cli([model, "restraints=qm", "engine=xtb", "mode=opt",
                            "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "a87_99.pdb", "qr.finalise")
    assert not out.exists() or not os.listdir(out)


def test_qm_names_a_residue_with_missing_hydrogens(tmp_path, capsys, structures):
    lines = open(os.path.join(structures, "xray/1us0_helix/a87_99_h.pdb")).read().splitlines()
    # drop the amide H of residue 93
    kept = [l for l in lines if not (l.startswith("ATOM") and l[12:16].strip() == "H"
                                     and l[22:26].strip() == "93")]
    assert len(kept) == len(lines) - 1
    model = tmp_path / "noh.pdb"
    model.write_text("\n".join(kept) + "\n")
    out = tmp_path / "out"
    code, _, err = run_cli([str(model), "restraints=qm", "engine=xtb", "mode=opt",
                            "use_neutron_distances=true", "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, "noh.pdb", "93", "qr.finalise")
    assert not out.exists() or not os.listdir(out)


def test_qm_refuses_alternate_conformations(tmp_path, capsys, structures):
    """Altlocs with QM used to be a dead end (the electron count was of one
    conformer, the engine got both): refused up front, naming residues and
    pointing to qr.finalise."""
    model = os.path.join(structures, "xray/1us0_helix/1us0.pdb")
    out = tmp_path / "out"
    code, _, err = run_cli([model, "restraints=qm", "engine=xtb", "output.dir=%s" % out],
                           capsys)
    assert_one_line_error(code, err, "1us0.pdb", "alternate conformations", "ILE A14",
                          "qr.finalise")
    assert not out.exists()


def test_second_run_into_the_same_prefix_is_refused(tmp_path, capsys, helix):
    """While a run holds output prefix r in a directory, a second one is
    refused in one line and touches none of the first one's files; once the
    first ends, its lock file is gone."""
    import fcntl
    out = tmp_path / "out"
    out.mkdir()
    first = out / "r_refined.pdb"
    first.write_text("the first run's model\n")
    lock_path = out / ".r.log.lock"
    with open(lock_path, "w") as held:  # the first run, as qr.refine holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        # (without output.overwrite the second run would go to r_001 instead)
        code, _, err = run_cli([helix, "output.prefix=r", "output.overwrite=true",
                                "output.dir=%s" % out], capsys)
        assert_one_line_error(code, err, "another run", "output prefix r", str(out))
        assert first.read_text() == "the first run's model\n"
        assert sorted(os.listdir(out)) == [".r.log.lock", "r_refined.pdb"]
    os.unlink(lock_path)
    # An ordinary run that fails on bad input leaves no lock behind.
    code, _, err = run_cli([str(tmp_path / "nope.pdb"), "output.prefix=r",
                            "output.dir=%s" % out], capsys)
    assert code == 1 and sorted(os.listdir(out)) == ["r_refined.pdb"]


COMMANDS = {  # command -> (module, arguments naming a file that is not there)
    "qr.refine": ("refine", ["{missing}"]),
    "qr.finalise": ("finalise", ["{missing}"]),
    "qr.comparama": ("comparama", ["{missing}", "{missing}"]),
    "qr.fragments": ("fragments", ["{missing}"]),
    "qr.charges": ("charges", ["{missing}"]),
    "qr.setup": ("setup_chem_data", ["chem_data={missing}"]),
}


@pytest.mark.parametrize("program", sorted(COMMANDS))
def test_every_command_shares_the_runner(program, tmp_path, capsys, monkeypatch, test_data):
    """All six commands answer --help and --version alike, end bad input in
    one line and exit 1, and a bug in one line and exit 2 (no traceback)."""
    import importlib
    name, args = COMMANDS[program]
    main = importlib.import_module("qrefine.scripts." + name).main
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("qrefine ")
    assert main(["--help"]) == 0
    assert program in capsys.readouterr().out
    missing = str(tmp_path / "nope.pdb")
    monkeypatch.chdir(tmp_path)
    code = main([a.format(missing=missing) for a in args])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(program + ": error: ") and "nope.pdb" in err, err
    assert len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []

    import qrefine.scripts.logged_run as runner

    def bug():
        raise ZeroDivisionError("a bug")

    assert runner.plain_run(program, bug) == 2
    err = capsys.readouterr().err
    assert err == "%s: internal error: ZeroDivisionError: a bug\n" % program


@pytest.mark.parametrize("arg, words", [
    ("refine.max_step=0", "refine.max_step must be > 0 A"),
    ("refine.gradient_tolerance=-1", "refine.gradient_tolerance must be > 0"),
])
def test_bad_refinement_settings_are_refused_before_the_model_is_read(
        tmp_path, capsys, helix, monkeypatch, arg, words):
    import qrefine.model.io

    def never(*args, **kwargs):
        raise AssertionError("the model was read before the parameters were checked")

    monkeypatch.setattr(qrefine.model.io, "read_model", never)
    out = tmp_path / "out"
    code, _, err = run_cli([helix, arg, "output.dir=%s" % out], capsys)
    assert_one_line_error(code, err, words)
    assert not out.exists()
