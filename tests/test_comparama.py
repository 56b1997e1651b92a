"""qr.comparama: the moved-residue table, the figure, and the command line.

The main test builds two models from residues 1-30 of 3j63 chain A by
setting backbone torsions (rotating the downstream part of the chain about
the N-CA or CA-C bond, so that no other phi/psi changes) and checks the exact
classification of every residue that moved between regions.
"""

import csv
import io
import math
import os

import numpy as np
import pytest

from qrefine.scripts.comparama import main
from qrefine.validation import comparama
from qrefine.validation.comparama import (ALLOWED, ALLOWED_TO_FAVORED, BECAME_OUTLIER,
                                          FAVORED, FAVORED_TO_ALLOWED, LEFT_OUTLIER,
                                          OUTLIER, RamaResidue)

MODEL_3J63 = "cryo_em/3j63_A/3j63_A_box_complete.pdb"
REFINED_3J63 = "cryo_em/3j63_A/qr3_results/xtb-gfn1_refinement/3j63_gfn1-xtb_real_space_refined.pdb"

# Target (phi, psi) in the two constructed models, with the Top8000 region
# they lie in (density well away from the cut-offs; see the comments).
HELIX = (-63.0, -43.0)      # general 1.0, Gly 0.995, Ile/Val 0.988: favored
BETA = (-60.0, 140.0)       # general 0.57: favored
GEN_ALLOWED = (-100.0, -70.0)   # general 0.0075, Ile/Val 0.0073: allowed
GEN_ALLOWED_2 = (-150.0, -60.0)  # general 0.0020: allowed
OUT_1 = (100.0, -100.0)     # general 2e-5: outlier
OUT_2 = (0.0, 180.0)        # general 0: outlier
GLY_OUT = (60.0, -60.0)     # Gly 1.1e-4 (cut-off 1e-3): outlier

# resseq: (before, after)
EDITS = {
    2: (HELIX, GLY_OUT),           # Gly: favored -> outlier
    5: (HELIX, OUT_1),             # favored -> outlier
    8: (GEN_ALLOWED, HELIX),       # Ile: allowed -> favored
    9: (OUT_1, HELIX),             # outlier -> favored
    12: (HELIX, GEN_ALLOWED),      # favored -> allowed
    15: (GEN_ALLOWED, BETA),       # allowed -> favored
    18: (OUT_2, GEN_ALLOWED_2),    # outlier -> allowed (across the psi = 180 edge)
    22: (HELIX, (-70.0, -40.0)),   # moves, stays favored
    25: (GEN_ALLOWED, GEN_ALLOWED_2),  # moves, stays allowed
}

EXPECTED_MOVED = [
    # label, category, region before, region after, kind
    ("A 2 GLY", "Gly", FAVORED, OUTLIER, BECAME_OUTLIER),
    ("A 5 ARG", "General", FAVORED, OUTLIER, BECAME_OUTLIER),
    ("A 8 ILE", "Ile/Val", ALLOWED, FAVORED, ALLOWED_TO_FAVORED),
    ("A 9 LEU", "General", OUTLIER, FAVORED, LEFT_OUTLIER),
    ("A 12 LEU", "General", FAVORED, ALLOWED, FAVORED_TO_ALLOWED),
    ("A 15 LEU", "General", ALLOWED, FAVORED, ALLOWED_TO_FAVORED),
    ("A 18 GLU", "General", OUTLIER, ALLOWED, LEFT_OUTLIER),
]


# --- building the pair --------------------------------------------------------

def _dihedral(p0, p1, p2, p3):
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return math.degrees(math.atan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def _rotate(xyz, origin, axis, degrees):
    """Rotate points (n x 3) about the line through origin along axis (right hand)."""
    k = axis / np.linalg.norm(axis)
    t = math.radians(degrees)
    p = xyz - origin
    rotated = (p * math.cos(t) + np.cross(k, p) * math.sin(t)
               + np.outer(p @ k, k) * (1 - math.cos(t)))
    return rotated + origin


def set_phi_psi(hierarchy, resseq, phi, psi):
    """Set phi and psi of residue ``resseq`` (single chain) by rotating the
    rest of the chain about N-CA (phi) and CA-C (psi); bond geometry and every
    other phi/psi stay as they are."""
    groups = list(hierarchy.only_model().only_chain().residue_groups())
    i = [rg.resseq_as_int() for rg in groups].index(resseq)
    xyz = np.array(hierarchy.atoms().extract_xyz())
    index = {}
    for j, rg in enumerate(groups):
        for atom in rg.atoms():
            index[(j, atom.name.strip())] = atom.i_seq
    downstream = [a.i_seq for rg in groups[i + 1:] for a in rg.atoms()]
    own = [(a.name.strip(), a.i_seq) for a in groups[i].atoms()]

    def pos(j, name):
        return xyz[index[(j, name)]]

    # phi: everything of residue i but N and H, and the downstream chain
    current = _dihedral(pos(i - 1, "C"), pos(i, "N"), pos(i, "CA"), pos(i, "C"))
    moving = [s for name, s in own if name not in ("N", "H")] + downstream
    xyz[moving] = _rotate(xyz[moving], pos(i, "N"), pos(i, "CA") - pos(i, "N"), phi - current)
    # psi: O (and OXT) of residue i and the downstream chain
    current = _dihedral(pos(i, "N"), pos(i, "CA"), pos(i, "C"), pos(i + 1, "N"))
    moving = [s for name, s in own if name in ("O", "OXT")] + downstream
    xyz[moving] = _rotate(xyz[moving], pos(i, "CA"), pos(i, "C") - pos(i, "CA"), psi - current)

    from scitbx.array_family import flex
    hierarchy.atoms().set_xyz(flex.vec3_double(xyz.tolist()))
    got = (_dihedral(pos_new(hierarchy, index, i - 1, "C"), pos_new(hierarchy, index, i, "N"),
                     pos_new(hierarchy, index, i, "CA"), pos_new(hierarchy, index, i, "C")),
           _dihedral(pos_new(hierarchy, index, i, "N"), pos_new(hierarchy, index, i, "CA"),
                     pos_new(hierarchy, index, i, "C"), pos_new(hierarchy, index, i + 1, "N")))
    assert all(abs(((g - w + 180) % 360) - 180) < 1e-3 for g, w in zip(got, (phi, psi))), got


def pos_new(hierarchy, index, j, name):
    return np.array(hierarchy.atoms()[index[(j, name)]].xyz)


def _segment(structures):
    import iotbx.pdb
    inp = iotbx.pdb.input(file_name=os.path.join(structures, MODEL_3J63))
    h = inp.construct_hierarchy()
    h = h.select(h.atom_selection_cache().selection("resseq 1:30")).deep_copy()
    h.atoms().reset_i_seq()
    return h, inp.crystal_symmetry()


def _model(hierarchy, symmetry):
    import mmtbx.model
    from libtbx.utils import null_out
    return mmtbx.model.manager(model_input=None, pdb_hierarchy=hierarchy,
                               crystal_symmetry=symmetry, log=null_out())


@pytest.fixture(scope="module")
def pair(structures):
    """(before, after) models built from 3j63 A 1-30; after lacks residue 30."""
    base, symmetry = _segment(structures)
    models = []
    for which in (0, 1):
        h = base.deep_copy()
        for resseq, targets in EDITS.items():
            set_phi_psi(h, resseq, *targets[which])
        if which == 1:  # drop the last residue: residue 29 loses its psi
            h = h.select(h.atom_selection_cache().selection("not resseq 30")).deep_copy()
            h.atoms().reset_i_seq()
        models.append(_model(h, symmetry))
    return models


@pytest.fixture
def pair_files(pair, tmp_path):
    paths = []
    for model, name in zip(pair, ("before.pdb", "after.pdb")):
        path = tmp_path / name
        path.write_text(model.model_as_pdb())
        paths.append(str(path))
    return paths


# --- the table ----------------------------------------------------------------

def test_constructed_pair_moved_residues(pair):
    result = comparama.compare_models(*pair, rama_z=False)
    got = [(c.after.label, c.after.category, c.before.region, c.after.region, c.kind)
           for c in result.moved]
    assert got == EXPECTED_MOVED
    assert all(c.before.category == c.after.category for c in result.moved)
    # phi/psi of the moved residues are the ones set
    for c in result.moved:
        resseq = int(c.after.resseq)
        for r, target in ((c.before, EDITS[resseq][0]), (c.after, EDITS[resseq][1])):
            assert abs(((r.phi - target[0] + 180) % 360) - 180) < 0.01
            assert abs(((r.psi - target[1] + 180) % 360) - 180) < 0.01
    assert [r.label for r in result.only_before] == ["A 29 SER"]
    assert result.only_after == []
    assert result.counts() == {LEFT_OUTLIER: 2, BECAME_OUTLIER: 2,
                               FAVORED_TO_ALLOWED: 1, ALLOWED_TO_FAVORED: 2}
    # the residues moved within a region are not in the table
    assert not {"A 22 LYS", "A 25 LEU"} & {c.after.label for c in result.moved}
    # rows: moved residues, then the one found in before only
    rows = result.as_rows()
    assert [(r["residue"], r["change"]) for r in rows] == (
        [(m[0], m[4]) for m in EXPECTED_MOVED] + [("A 29 SER", "only_in_before")])


def test_category_stats_agree_with_ramalyze(pair):
    from libtbx.utils import null_out
    from mmtbx.validation.ramalyze import ramalyze
    result = comparama.compare_models(*pair, rama_z=False)
    for model, stats in zip(pair, (result.stats_before, result.stats_after)):
        rama = ramalyze(model.get_hierarchy(), out=null_out())
        assert stats["all"].n == rama.n_total
        assert stats["all"].percent_favored == pytest.approx(rama.percent_favored)
        assert stats["all"].percent_outliers == pytest.approx(rama.percent_outliers)
        assert sum(stats[c].n for c in comparama.CATEGORIES) == rama.n_total
    assert result.stats_after["Gly"].n_outliers == 1
    assert result.stats_after["Ile/Val"].n_favored == 1


def test_matching_uses_altloc_and_icode():
    def res(resseq, icode="", altloc="", region=FAVORED):
        return RamaResidue("A", resseq, icode, altloc, "SER", "General", region,
                           -63.0, -43.0, 50.0)
    before = [res("5", altloc="A"), res("5", altloc="B", region=ALLOWED), res("6"),
              res("7", icode="A", region=OUTLIER)]
    after = [res("5", altloc="A", region=ALLOWED), res("5"), res("6"),
             res("7", icode="A")]
    moved, only_before, only_after = comparama.match_residues(before, after)
    assert [(c.after.label, c.kind) for c in moved] == [
        ("A 5 A:SER", FAVORED_TO_ALLOWED), ("A 7A SER", LEFT_OUTLIER)]
    assert [r.label for r in only_before] == ["A 5 B:SER"]
    assert [r.label for r in only_after] == ["A 5 SER"]


def test_change_kind():
    kinds = {(b, a): comparama.change_kind(b, a)
             for b in (FAVORED, ALLOWED, OUTLIER) for a in (FAVORED, ALLOWED, OUTLIER)}
    assert kinds == {
        (FAVORED, FAVORED): None, (ALLOWED, ALLOWED): None, (OUTLIER, OUTLIER): None,
        (OUTLIER, FAVORED): LEFT_OUTLIER, (OUTLIER, ALLOWED): LEFT_OUTLIER,
        (FAVORED, OUTLIER): BECAME_OUTLIER, (ALLOWED, OUTLIER): BECAME_OUTLIER,
        (FAVORED, ALLOWED): FAVORED_TO_ALLOWED, (ALLOWED, FAVORED): ALLOWED_TO_FAVORED}


# --- the figure ---------------------------------------------------------------

def test_wrapped_copies():
    from qrefine.validation.rama_plot import wrapped_copies
    assert wrapped_copies((-60, -40), (-100, 120)) == [((-60, -40), (-100, 120))]
    # psi 170 -> -170 goes up across the edge: drawn once and once shifted down
    assert wrapped_copies((-60, 170), (-60, -170)) == [
        ((-60, 170), (-60, 190)), ((-60, -190), (-60, -170))]
    # across a corner: four copies
    assert len(wrapped_copies((175, 175), (-175, -175))) == 4


def test_contours_are_ramalyze_cutoffs(test_data):
    from mmtbx.rotamer.ramachandran_eval import RamachandranEval
    from qrefine.validation.rama_plot import contour_grid
    evaluator = RamachandranEval()
    for category, name, allowed_cut in (("General", "general", 0.0005),
                                        ("cis-Pro", "cis-proline", 0.002),
                                        ("Gly", "glycine", 0.001)):
        grid, (allowed, favored) = contour_grid(category)
        assert grid.shape == (180, 180)
        assert allowed == pytest.approx(allowed_cut ** 0.25, abs=2e-4)
        assert favored == pytest.approx(0.02 ** 0.25, abs=2e-4)
        # rows are psi, columns phi (2-degree cells from -180)
        for phi, psi in ((-63, -43), (-119, 113), (81, -171), (60, -120)):
            cell = grid[(psi + 180) // 2, (phi + 180) // 2]
            value = evaluator.evaluate(name, [phi + 1.0 - (phi % 2), psi + 1.0 - (psi % 2)])
            assert cell == pytest.approx(value ** 0.25, rel=0.05, abs=0.02), (category, phi, psi)


def test_3j63_refinement_pair(structures, tmp_path):
    from qrefine.validation import rama_plot
    result = comparama.compare_files(os.path.join(structures, MODEL_3J63),
                                     os.path.join(structures, REFINED_3J63))
    assert result.counts() == {LEFT_OUTLIER: 4, BECAME_OUTLIER: 0,
                               FAVORED_TO_ALLOWED: 1, ALLOWED_TO_FAVORED: 9}
    assert [c.after.label for c in result.moved if c.kind == LEFT_OUTLIER] == [
        "A 2 GLY", "A 42 GLY", "A 47 MET", "A 71 ASN"]
    assert result.only_before == [] and result.only_after == []
    assert result.stats_before["all"].n == result.stats_after["all"].n == 89
    assert result.rama_z_before["whole"] == pytest.approx(-4.46, abs=0.01)
    assert result.rama_z_after["whole"] < result.rama_z_before["whole"] + 3
    path = rama_plot.write_plot(result, str(tmp_path / "x.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# --- the command line ---------------------------------------------------------

def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_colours(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for words in ("light green", "left the outlier region", "red", "became an outlier",
                  "orange", "favored -> allowed", "green", "allowed -> favored",
                  "output.prefix", "output.dir", "format=png|pdf"):
        assert words in out, words
    code, out, _ = run_cli(["--show-defaults"], capsys)
    assert code == 0 and "prefix" in out and "format" in out


def test_cli_writes_table_csv_and_image(pair_files, tmp_path, capsys, test_data):
    before, after = pair_files
    out_dir = tmp_path / "out"
    code, out, err = run_cli([before, after, "output.dir=%s" % out_dir], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out_dir)) == [
        "after_comparama.csv", "after_comparama.png", "after_comparama.txt"]
    with open(out_dir / "after_comparama.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO((out_dir / "after_comparama.csv").read_text())))
    assert [(r["residue"], r["category_after"], r["region_before"], r["region_after"],
             r["change"]) for r in rows[:-1]] == EXPECTED_MOVED
    assert rows[-1]["residue"] == "A 29 SER" and rows[-1]["change"] == "only_in_before"
    assert rows[-1]["region_after"] == "" and rows[-1]["region_before"] == FAVORED
    assert tuple(rows[0].keys()) == comparama.CSV_COLUMNS
    text = (out_dir / "after_comparama.txt").read_text()
    assert "A 18 GLU" in text and "1 in before only, 0 in after only" in text
    assert "Rama-Z whole" in text
    assert "after_comparama.png" in out

    code, _, err = run_cli([before, after, "output.dir=%s" % out_dir, "format=pdf",
                            "output.prefix=run1", "labels=all", "rama_z=false"], capsys)
    assert code == 0, err
    with open(out_dir / "run1_comparama.pdf", "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert not (out_dir / "run1_comparama.png").exists()


@pytest.mark.parametrize("args, needles", [
    (["{before}"], ["give two model files"]),
    (["{before}", "{missing}"], ["nope.pdb", "does not exist"]),
    (["{before}", "{after}", "outptu.dir=x"], ["did you mean 'output.dir'", "qr.comparama"]),
    (["{before}", "{after}", "format=svg"], ["format"]),
    (["{before}", "{after}", "output.prefix=a/b"], ["plain name"]),
    (["{before}", "{after}", "--plot"], ["unknown option --plot"]),
])
def test_errors_are_one_line(args, needles, pair_files, tmp_path, capsys, test_data):
    before, after = pair_files
    out_dir = tmp_path / "errout"
    argv = [a.format(before=before, after=after, missing=str(tmp_path / "nope.pdb"))
            for a in args] + ["output.dir=%s" % out_dir]
    code, out, err = run_cli(argv, capsys)
    assert code == 1
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("qr.comparama: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not out_dir.exists() or not os.listdir(out_dir)


def test_models_without_common_residues(pair_files, tmp_path, capsys, test_data):
    before, _ = pair_files
    other = tmp_path / "other.pdb"
    other.write_text(open(before).read().replace(" A ", " B "))
    code, _, err = run_cli([before, str(other), "output.dir=%s" % tmp_path], capsys)
    assert code == 1 and "share no residues" in err
