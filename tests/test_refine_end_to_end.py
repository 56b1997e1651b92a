"""qr.refine end to end on real data: outputs, summary contents, fit improves."""

import json
import os

import numpy as np
import pytest

from qrefine.scripts.refine import main

VALIDATION_KEYS = {"bond_rmsd", "angle_rmsd", "rama_favored", "rama_outliers", "rama_z_whole",
                   "rotamer_outliers", "cbeta_deviations", "clashscore", "hbonds", "cc_mask",
                   "r_work", "r_free"}


def load_summary(out, prefix):
    with open(os.path.join(out, prefix + "_summary.json")) as f:
        return json.load(f)


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def _readme_quick_start():
    """(argv of the README's qr.refine command, the transcript lines it shows)."""
    lines = open(README).read().split("\n")
    start = lines.index("## Quick start")
    command = next(l for l in lines[start:] if l.startswith("    qr.refine "))
    i = next(k for k in range(start, len(lines)) if lines[k].startswith("    Weight search: "))
    shown = []
    while lines[i].startswith("    "):
        shown.append(lines[i][4:])
        i += 1
    return command.split()[1:], shown


@pytest.fixture(scope="module")
def quick_start(structures, test_data, tmp_path_factory):
    """The README's quick-start command, run as written (paths to the test
    data and a fresh output directory substituted): (output dir, stdout)."""
    import contextlib
    import io
    argv, _ = _readme_quick_start()
    out = str(tmp_path_factory.mktemp("readme") / "out")
    argv = [a.replace("../shared/data", test_data) if a.startswith("../shared/data") else
            "output.dir=%s" % out if a == "output.dir=out" else a for a in argv]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return out, stdout.getvalue()


def _same_line(shown, printed):
    """A README line against a printed one: the same words, numbers within
    rounding (0.5 % or 0.0015: another BLAS may move the last digit)."""
    a, b = shown.split(), printed.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if abs(fx - fy) > max(0.0015, 0.005 * abs(fy)):
            return False
    return True


@pytest.mark.slow
def test_readme_quick_start(quick_start):
    """The README's quick-start transcript is what the command prints
    (trial lines less their seconds; "..." stands for lines left out)."""
    import re
    _, shown = _readme_quick_start()
    printed = [re.sub(r"  \(\d+\.\d s\)", "", l) for l in quick_start[1].splitlines()]
    for line in shown:
        if line.strip() == "...":
            continue
        assert any(_same_line(line, p) for p in printed), \
            "README line not printed: %r\nprinted:\n%s" % (line, "\n".join(printed))


def test_readme_lines_are_compared_number_by_number():
    assert _same_line("Rw 0.1586 Rf 0.2124", "Rw 0.1590 Rf 0.2120")
    assert not _same_line("Rw 0.1586 Rf 0.2124", "Rw 0.1620 Rf 0.2124")
    assert not _same_line("chosen weight 3.13e+04", "chosen weight 8.854e+04")
    assert not _same_line("trial w=5534 ok", "trial w=5534 STOP")


@pytest.mark.slow
def test_xray_refinement_of_the_helix(quick_start):
    """The quick-start run (the helix against its X-ray data, defaults)."""
    out, _ = quick_start
    for name in ("0_refined.pdb", "0_refined.cif", "0.log", "0_summary.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    s = load_summary(out, "0")
    assert VALIDATION_KEYS <= set(s["start"]) and VALIDATION_KEYS <= set(s["final"])
    assert s["final"]["cc_mask"] is None
    assert s["final"]["r_work"] < s["start"]["r_work"] - 0.2
    assert s["final"]["r_work"] < 0.15
    assert s["final"]["hbonds"] is not None
    assert 1 <= len(s["macro_cycles"]) <= 5 and all(c["weight"] > 0 for c in s["macro_cycles"])
    assert s["parameters"]["refine.macro_cycles"] == 5
    assert s["timings"]["total_s"] > 0 and "refinement_s" in s["timings"]
    trials = s["weight_search"]
    assert len(trials) >= 2 and s["chosen_weight"] in [t["weight"] for t in trials]
    weights = [t["weight"] for t in trials]
    top = weights.index(max(weights)) + 1   # the grid rises; then a bracket or lower weights
    assert weights[:top] == sorted(weights[:top])
    # no temporary, partial or checkpoint files are left behind
    assert sorted(os.listdir(out)) == ["0.log", "0_refined.cif", "0_refined.pdb",
                                       "0_summary.json", "0_weights.png"]


@pytest.mark.slow
def test_map_refinement_of_3j63(tmp_path, structures):
    d = os.path.join(structures, "cryo_em/3j63_A")
    out = str(tmp_path)
    assert main([os.path.join(d, "3j63_A_box_complete.pdb"), os.path.join(d, "3j63_A_box.ccp4"),
                 "resolution=3.8", "refine.macro_cycles=2", "refine.max_iterations=40",
                 "weights.search=false",
                 "output.prefix=emap", "output.dir=%s" % out]) == 0
    s = load_summary(out, "emap")
    assert s["start"]["cc_mask"] is not None and s["final"]["cc_mask"] is not None
    assert s["final"]["r_work"] is None
    assert s["final"]["bond_rmsd"] <= 0.02
    assert s["final"]["rama_outliers"] <= s["start"]["rama_outliers"]


def test_geometry_regularisation_without_data(tmp_path, structures):
    model = os.path.join(structures, "xray/1us0_helix/perturbed/1.5/0.pdb")
    out = str(tmp_path)
    assert main([model, "mode=opt", "use_neutron_distances=true", "refine.macro_cycles=1",
                 "output.prefix=opt", "output.dir=%s" % out]) == 0
    s = load_summary(out, "opt")
    assert s["final"]["bond_rmsd"] < s["start"]["bond_rmsd"]
    assert s["final"]["r_work"] is None and s["final"]["cc_mask"] is None
    assert s["macro_cycles"][0]["final_target"] < s["macro_cycles"][0]["start_target"]


def test_summary_provenance_and_numbered_rerun(tmp_path, structures):
    """The summary says what made it (versions, host, command line, inputs
    by SHA-256, schema version); a rerun into the same prefix numbers its
    outputs and leaves the first run's alone; output.overwrite=true replaces."""
    import hashlib
    from qrefine import __version__
    model = os.path.join(structures, "xray/1us0_helix/perturbed/1.5/0.pdb")
    out = str(tmp_path)
    eff = tmp_path / "opt.eff"
    eff.write_text("refine.macro_cycles = 1\n")
    args = [model, str(eff), "mode=opt", "refine.max_iterations=5", "output.prefix=opt",
            "output.dir=%s" % out]
    assert main(args) == 0
    first = open(os.path.join(out, "opt_refined.pdb")).read()
    header = [l for l in first.splitlines() if l.startswith("REMARK   3 ")]
    assert header[0] == "REMARK   3 REFINEMENT PROGRAM : qrefine %s (qr.refine)" % __version__
    assert any(l.split()[2:4] == ["Bond", "RMSD"] for l in header), header
    s = load_summary(out, "opt")
    p = s["provenance"]
    assert s["schema_version"] == p["schema_version"] >= 2
    assert p["versions"]["qrefine"] == __version__ and p["versions"]["cctbx"]
    assert p["host"]["cores"] >= 1 and p["host"]["name"]
    assert p["command"] == "qr.refine " + " ".join(args) and p["engine"] is None
    assert s["restraints"] == "cctbx library geometry restraints"
    with open(model, "rb") as f:
        assert p["inputs"]["model"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert p["inputs"]["params opt.eff"]["path"] == str(eff)
    assert "data" not in p["inputs"]

    assert main(args) == 0
    assert open(os.path.join(out, "opt_refined.pdb")).read() == first
    assert load_summary(out, "opt_001")["provenance"]["inputs"] == p["inputs"]
    log = open(os.path.join(out, "opt_001.log")).read()
    assert "opt_refined.pdb is there from an earlier run, so this run's outputs are " \
        "named opt_001" in log
    assert "parameters from %s: refine.macro_cycles = 1" % eff in log

    assert main(args + ["output.overwrite=true"]) == 0
    names = sorted(os.listdir(out))
    assert names == ["opt.eff", "opt.log", "opt_001.log", "opt_001_refined.cif",
                     "opt_001_refined.pdb", "opt_001_summary.json", "opt_refined.cif",
                     "opt_refined.pdb", "opt_summary.json"], names


def test_weight_trials_show_a_live_line(tmp_path, structures, monkeypatch):
    """On a terminal each weight trial shows a live line (its cycles, then
    its validation); the log keeps one plain line per trial."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    d = os.path.join(structures, "xray/1us0_helix")
    out = str(tmp_path)
    assert main([os.path.join(d, "perturbed/1.5/0.pdb"), os.path.join(d, "data.mtz"),
                 "weights.trials=2,4", "weights.trial_macro_cycles=1", "refine.macro_cycles=1",
                 "refine.max_iterations=5", "output.prefix=live", "output.dir=%s" % out]) == 0
    shown = screen.getvalue()
    assert "\rweight trial 1: w=2 cycle 1, iteration" in shown
    assert "\rweight trial 2: w=4 validating" in shown
    log = open(os.path.join(out, "live.log")).read()
    assert "weight trial" not in log and "\r" not in log
    assert len([l for l in log.splitlines() if l.startswith("  trial w=")]) == 2


@pytest.fixture(scope="module")
def piece_of_3j63(structures, tmp_path_factory):
    """Residues 1-20 of 3j63_A (with H), in the full map's box."""
    import iotbx.pdb
    d = os.path.join(structures, "cryo_em/3j63_A")
    h = iotbx.pdb.input(os.path.join(d, "3j63_A_box_complete.pdb")).construct_hierarchy()
    piece = h.select(h.atom_selection_cache().selection("resseq 1:20"))
    path = str(tmp_path_factory.mktemp("piece") / "piece.pdb")
    cs = iotbx.pdb.input(os.path.join(d, "3j63_A_box_complete.pdb")).crystal_symmetry()
    with open(path, "w") as f:
        f.write(piece.as_pdb_string(crystal_symmetry=cs))
    return path, os.path.join(d, "3j63_A_box.ccp4")


SHORT = ["resolution=3.8", "refine.macro_cycles=2", "refine.max_iterations=20"]


def test_map_weight_search_end_to_end(piece_of_3j63, tmp_path, test_data):
    """A map weight search as qr.refine runs it: the grid rises from the
    gradient-norm ratio, every trial is validated against the map, the
    search stops at a limit or a worsening metric (and says which), and the
    final cycles use the chosen weight."""
    model, emap = piece_of_3j63
    out = str(tmp_path)
    assert main([model, emap] + SHORT + ["weights.trial_macro_cycles=1", "weights.grid_factor=4",
                                        "output.prefix=s", "output.dir=%s" % out]) == 0
    s = load_summary(out, "s")
    trials = s["weight_search"]
    assert len(trials) >= 3
    assert all(t["metrics"]["cc_mask"] is not None and t["metrics"]["bond_rmsd"] is not None
               for t in trials)
    rising = [t["weight"] for t in trials]
    top = rising.index(max(rising)) + 1
    assert rising[:top] == sorted(rising[:top])
    # the grid is the gradient-norm ratio x 0.1 times powers of the factor
    ratios = np.array(rising[:top]) / rising[0]
    assert np.allclose(np.log(ratios) / np.log(4), np.round(np.log(ratios) / np.log(4)))
    stopped = [t for t in trials if not t["accepted"]]
    assert all(t["reason"] for t in stopped)
    chosen = s["chosen_weight"]
    assert chosen in [t["weight"] for t in trials if t["accepted"]]
    assert [c["weight"] for c in s["macro_cycles"]] == [chosen] * len(s["macro_cycles"])
    assert os.path.exists(os.path.join(out, "s_weights.png"))


def test_a_fixed_data_weight_is_used_as_given(piece_of_3j63, tmp_path, test_data):
    """data_weight= skips the search and every macro cycle uses exactly it."""
    model, emap = piece_of_3j63
    out = str(tmp_path)
    assert main([model, emap] + SHORT + ["data_weight=2.5", "output.prefix=f",
                                        "output.dir=%s" % out]) == 0
    s = load_summary(out, "f")
    assert s["weight_search"] == [] and s["chosen_weight"] is None
    assert [c["weight"] for c in s["macro_cycles"]] == [2.5, 2.5]
    assert s["parameters"]["data_weight"] == 2.5
    assert not os.path.exists(os.path.join(out, "f_weights.png"))


def test_trials_on_two_cores_choose_and_refine_as_on_one(piece_of_3j63, tmp_path, test_data):
    """nproc=2 runs two weight trials at a time in forked processes
    (qrefine.forks); the search and the refined model are those of nproc=1,
    number for number."""
    model, emap = piece_of_3j63
    out = str(tmp_path)
    args = [model, emap] + SHORT + ["weights.trial_macro_cycles=1", "weights.grid_factor=4",
                                    "output.dir=%s" % out]
    assert main(args + ["output.prefix=one"]) == 0
    assert main(args + ["output.prefix=two", "nproc=2"]) == 0
    one, two = load_summary(out, "one"), load_summary(out, "two")
    assert len(one["weight_search"]) >= 3
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in one["weight_search"]]
    assert strip == [{k: v for k, v in t.items() if k != "seconds"}
                     for t in two["weight_search"]]
    assert one["chosen_weight"] == two["chosen_weight"]
    assert one["final"] == two["final"] and one["start"] == two["start"]
    atoms = [[l for l in open(os.path.join(out, p + "_refined.pdb")) if l.startswith("ATOM")]
             for p in ("one", "two")]
    assert atoms[0] == atoms[1]
    log = open(os.path.join(out, "two.log")).read()
    assert "2 trials at a time, each in a forked process (nproc=2)" in log
    assert log.count("  trial w=") == len(two["weight_search"])
