"""qr.finalise: altlocs, side chains, hydrogens, protonation, termini, refusals.

Small pieces of 3dtj (X-ray) and 3j63 (cryo-EM) keep each test to seconds;
the clashscore (probe2, the slow part) is computed only in the 3j63 chain A
acceptance run.
"""

import os

import numpy as np
import pytest

from qrefine.errors import QRefineError

STRUCTURES_3DTJ = ("xray", "3dtj", "3dtj.pdb")
STRUCTURES_3J63 = ("cryo_em", "3j63_A", "3j63_original_full.pdb")
# qrefine.validation.validate(...).clashscore of the published
# cryo_em/3j63_A/3j63_A_box_complete.pdb (same 706 heavy atoms as 3j63 chain A).
PUBLISHED_3J63_A_CLASHSCORE = 45.96
PUBLISHED_3J63_A_H = 730


def _read(structures, parts, selection=None):
    from qrefine.model import io as model_io
    from qrefine.finalise import select
    path = os.path.join(structures, *parts)
    return select(model_io.read_model(path, make_restraints=False), selection, path)


def _fast(**kwargs):
    from qrefine.finalise import FinaliseOptions
    return FinaliseOptions(clashscore=False, **kwargs)


def _heavy(model):
    return {(a.parent().parent().parent().id, a.parent().parent().resid(),
             a.parent().resname, a.name): a.xyz
            for a in model.get_hierarchy().atoms() if not a.element_is_hydrogen()}


def _assert_heavy_atoms_kept(before, after):
    now = _heavy(after)
    for key, xyz in _heavy(before).items():
        assert key in now, key
        assert np.allclose(now[key], xyz, atol=1e-6), key


def _names(model, chain, resseq):
    for rg in model.get_hierarchy().residue_groups():
        if rg.parent().id == chain and rg.resseq.strip() == str(resseq):
            return {a.name.strip() for a in rg.atoms()}
    raise AssertionError("no residue %s %s" % (chain, resseq))


def _model(hierarchy, crystal_symmetry):
    import mmtbx.model
    from libtbx.utils import null_out
    hierarchy.atoms().reset_i_seq()
    return mmtbx.model.manager(model_input=None, pdb_hierarchy=hierarchy,
                               crystal_symmetry=crystal_symmetry, log=null_out())


def _write(model, path):
    with open(path, "w") as f:
        f.write(model.get_hierarchy().as_pdb_string(crystal_symmetry=model.crystal_symmetry()))
    return str(path)


# --- altlocs -----------------------------------------------------------------

def test_altloc_keeps_most_occupied_conformer(structures, tmp_path):
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise
    text = open(os.path.join(structures, "qrefine_unit_test_files", "h_altconf.pdb")).read()
    lines = []
    for line in text.splitlines():
        if line.startswith("ATOM") and line[16] in "AB":
            line = line[:54] + ("  0.40" if line[16] == "A" else "  0.60") + line[60:]
        lines.append(line)
    path = tmp_path / "altconf.pdb"
    path.write_text("\n".join(lines) + "\n")
    model = model_io.read_model(str(path), make_restraints=False)
    b_sites = {a.name: a.xyz for a in model.get_hierarchy().atoms()
               if a.parent().altloc == "B"}

    result = finalise(model, _fast())

    assert [(c.residue, c.kept, c.removed) for c in result.altlocs] == [("TYR A 94", "B", ("A",))]
    assert any("TYR A 94: kept altloc B" in line for line in result.log_lines())
    tyr = [ag for ag in result.model.get_hierarchy().atom_groups() if ag.resname == "TYR"]
    assert len(tyr) == 1 and tyr[0].altloc == ""
    for atom in tyr[0].atoms():
        if not atom.element_is_hydrogen():
            assert atom.occ == 1.0
            assert np.allclose(atom.xyz, b_sites[atom.name])
    assert not any(ag.altloc for ag in result.model.get_hierarchy().atom_groups())


def test_altloc_tie_keeps_first(structures):
    from qrefine.finalise import finalise
    model = _read(structures, ("qrefine_unit_test_files", "altlocs.pdb"))
    result = finalise(model, _fast())
    assert [(c.residue, c.kept) for c in result.altlocs] == [("GLY A 1", "A")]
    # The input's H are rebuilt; a lone Gly gets NH3+ and COO-.
    assert result.hydrogens_removed == 5     # those of the kept conformer
    assert {"H1", "H2", "H3", "HA2", "HA3", "OXT"} <= _names(result.model, "A", 1)


def test_keep_altlocs_is_refused():
    from qrefine.scripts.finalise import main
    assert main(["model.pdb", "keep_altlocs=true"]) == 1


# --- side chains -------------------------------------------------------------

def test_truncated_side_chains_are_rebuilt(structures):
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise, regularise
    model = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:160")
    full = {a.name.strip() for a in model.get_hierarchy().atoms()
            if a.parent().parent().resseq.strip() in ("154", "158")}
    hierarchy = model.get_hierarchy().deep_copy()
    for ag in hierarchy.atom_groups():
        if ag.parent().resseq.strip() in ("154", "158"):      # ARG 154, LYS 158
            for atom in list(ag.atoms()):
                if atom.name.strip() not in ("N", "CA", "C", "O", "CB"):
                    ag.remove_atom(atom)
    truncated = _model(hierarchy, model.crystal_symmetry())

    result = finalise(truncated, _fast())

    assert [s.residue for s in result.sidechains] == ["ARG A 154", "LYS A 158"]
    assert set(result.sidechains[0].added) == {"CG", "CD", "NE", "CZ", "NH1", "NH2"}
    rebuilt = {n for n in (_names(result.model, "A", 154) | _names(result.model, "A", 158))
               if not n.startswith("H")}
    assert full <= rebuilt
    _assert_heavy_atoms_kept(truncated, result.model)

    done = result.model
    model_io.process(done, "rebuilt")
    atoms = done.get_hierarchy().atoms()
    built = np.array([a.parent().parent().resseq.strip() in ("154", "158")
                      and a.name.strip() not in ("N", "CA", "C", "O", "CB")
                      for a in atoms])
    sites = done.get_sites_cart().as_numpy_array()
    bonds = done.get_restraints_manager().geometry.pair_proxies(
        sites_cart=done.get_sites_cart()).bond_proxies.simple
    checked = 0
    for proxy in bonds:
        i, j = proxy.i_seqs
        if (built[i] or built[j]) and not (atoms[i].element_is_hydrogen()
                                           or atoms[j].element_is_hydrogen()):
            assert abs(np.linalg.norm(sites[i] - sites[j]) - proxy.distance_ideal) < 0.05
            checked += 1
    assert checked >= 10
    assert regularise.clashes_involving(done, built) == []



def test_contact_term_exempts_hydrogen_bonds(structures):
    """Polar H are probe donors and O acceptors, so an N-H...O=C H-bond is
    no clash for the regularisation (as in probe)."""
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise, regularise
    model = finalise(_read(structures, STRUCTURES_3DTJ, "chain A and resseq 166:176"),
                     _fast()).model
    model_io.process(model, "piece")
    atoms = model.get_hierarchy().atoms()
    term = regularise.ContactTerm(model, np.array([a.element_is_hydrogen() for a in atoms]))
    index = {(a.parent().parent().resseq.strip(), a.name.strip()): a.i_seq for a in atoms}
    assert term.donor_h[index[("173", "H")]] and term.acceptor[index[("169", "O")]]
    assert not term.donor_h[index[("173", "HA")]]
    term.update_pairs(model.get_sites_cart().as_numpy_array())
    pairs = {tuple(sorted(p)) for p in term.pairs.tolist()}
    assert tuple(sorted((index[("173", "H")], index[("169", "O")]))) not in pairs


def test_regularisation_clears_riding_hydrogen_clashes(structures):
    """3dtj LYS A 203 HG2 rides into O of LYS A 199; at the base contact
    weight it stays at a clash, the per-pair escalation moves it off."""
    from qrefine.finalise import finalise, regularise
    model = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 196:206")
    result = finalise(model, _fast())
    _assert_heavy_atoms_kept(model, result.model)
    done = result.model
    from qrefine.model import io as model_io
    model_io.process(done, "piece")
    hydrogens = np.array([a.element_is_hydrogen() for a in done.get_hierarchy().atoms()])
    assert result.regularisation is not None
    assert regularise.clashes_involving(done, hydrogens) == []


# --- hydrogens and termini ---------------------------------------------------

def test_hydrogen_count_is_that_of_the_library(structures):
    from mmtbx.monomer_library import server
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise, missing_hydrogens
    model = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:158")
    srv = server.server()
    expected = 0
    for ag in model.get_hierarchy().atom_groups():
        comp = srv.get_comp_comp_id_direct(ag.resname.strip())
        expected += sum(1 for atom in comp.atom_list if atom.type_symbol == "H")
    expected += 2   # N-terminal SER 149: H1, H2, H3 instead of H; C-terminal COO-: none

    result = finalise(model, _fast())

    assert result.n_hydrogens == expected
    assert _names(result.model, "A", 149) >= {"H1", "H2", "H3"}
    assert "H" not in _names(result.model, "A", 149)
    assert "OXT" in _names(result.model, "A", 158) and "HXT" not in _names(result.model, "A", 158)
    assert missing_hydrogens(result.model) == []
    _assert_heavy_atoms_kept(model, result.model)
    # The result processes with library restraints (no unknown atoms).
    model_io.process(result.model, "finalised")
    assert result.total_charge in (None, 1)   # ASP-, ARG+, LYS+, NH3+, COO-


def test_chain_break_is_neutral_by_default(structures):
    from qrefine.finalise import finalise, missing_hydrogens
    model = _read(structures, STRUCTURES_3DTJ, "chain A and (resseq 149:153 or resseq 156:158)")
    result = finalise(model, _fast())
    causes = {(t.residue, t.end): (t.cause, t.charged) for t in result.termini}
    assert causes[("ILE A 153", "C")] == ("chain break", False)
    assert causes[("GLY A 156", "N")] == ("chain break", False)
    assert {"OXT", "HXT"} <= _names(result.model, "A", 153)
    assert {"H", "H1"} <= _names(result.model, "A", 156)
    assert "H2" not in _names(result.model, "A", 156)
    assert missing_hydrogens(result.model) == []


# --- protonation -------------------------------------------------------------

def test_his_protonation_override(structures):
    from qrefine.finalise import finalise
    model = _read(structures, STRUCTURES_3J63, "chain A and resseq 86:91")
    hid = finalise(model, _fast(protonation=("HIS A 90 = HID",)))
    hip = finalise(model, _fast(protonation=("A 90=HIP",)))
    his_hid, his_hip = _names(hid.model, "A", 90), _names(hip.model, "A", 90)
    assert "HD1" in his_hid and "HE2" not in his_hid
    assert {"HD1", "HE2"} <= his_hip
    assert hip.n_hydrogens == hid.n_hydrogens + 1
    states = {p.residue: (p.state, p.reason) for p in hip.protonation}
    assert states["HIS A 90"] == ("HIP", "override")
    assert hip.total_charge == hid.total_charge + 1


@pytest.mark.parametrize("spec, words", [
    ("LYS A 90 = HIE", ["HIE is a state of HIS", "LYS"]),
    ("HIS A 999 = HIE", ["no residue HIS A 999"]),
    ("HIS A 90 = HIZ", ["unknown state HIZ"]),
    ("HIS A 90", ["expected 'RESNAME CHAIN RESSEQ = STATE'"]),
])
def test_bad_protonation_override(structures, spec, words):
    from qrefine.finalise import finalise
    model = _read(structures, STRUCTURES_3J63, "chain A and resseq 89:91")
    with pytest.raises(QRefineError) as e:
        finalise(model, _fast(protonation=(spec,)))
    for word in words:
        assert word in str(e.value)


# --- refusals ----------------------------------------------------------------

def test_refuses_nucleic_acid(structures, tmp_path):
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise
    piece = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:150")
    text = piece.get_hierarchy().as_pdb_string().replace("END\n", "")
    text += ("ATOM    900  P    DA B   5      10.000  10.000  10.000  1.00 20.00           P\n"
             "ATOM    901  OP1  DA B   5      11.000  10.000  10.000  1.00 20.00           O\n"
             "END\n")
    path = tmp_path / "with_dna.pdb"
    path.write_text(text)
    with pytest.raises(QRefineError) as e:
        finalise(model_io.read_model(str(path), make_restraints=False), _fast(), source=str(path))
    assert "DA B 5" in str(e.value) and "nucleic acid" in str(e.value)


def test_refuses_missing_backbone(structures):
    from qrefine.finalise import finalise
    model = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:152 and not "
                                               "(resseq 150 and name CA)")
    with pytest.raises(QRefineError) as e:
        finalise(model, _fast())
    assert "ILE A 150" in str(e.value) and "backbone atom(s) CA" in str(e.value)


def test_refuses_unknown_ligand(structures, tmp_path):
    from qrefine.model import io as model_io
    from qrefine.finalise import finalise
    piece = _read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:150")
    text = piece.get_hierarchy().as_pdb_string().replace("END\n", "")
    text += "HETATM  900  C1  QQX A 301      10.000  10.000  10.000  1.00 20.00           C\nEND\n"
    path = tmp_path / "with_ligand.pdb"
    path.write_text(text)
    with pytest.raises(QRefineError) as e:
        finalise(model_io.read_model(str(path), make_restraints=False), _fast(), source=str(path))
    assert "QQX A 301" in str(e.value) and "restraints_cif=" in str(e.value)


# --- command line ------------------------------------------------------------

def test_command_line_outputs(structures, tmp_path, test_data, capsys):
    from qrefine.scripts.finalise import main
    piece = _write(_read(structures, STRUCTURES_3DTJ, "chain A and resseq 149:153"),
                   tmp_path / "piece.pdb")
    chem = "chem_data=%s" % os.path.join(test_data, "chem_data")
    out = tmp_path / "out"
    assert main([piece, chem, "output.dir=%s" % out]) == 0
    for name in ("piece_complete.pdb", "piece_complete.cif", "piece_finalise.log"):
        assert (out / name).is_file(), name
    log = (out / "piece_finalise.log").read_text()
    assert "H added:" in log and "total charge" in log and "clashscore" in log
    # An input is never overwritten.
    clash = tmp_path / "x_complete.pdb"
    clash.write_text(open(piece).read())
    before = clash.read_text()
    assert main([str(clash), chem, "output.prefix=x", "output.dir=%s" % tmp_path]) == 1
    assert clash.read_text() == before
    assert "would overwrite an input" in capsys.readouterr().err


# --- acceptance: 3j63 chain A (about 20 s) -----------------------------------

@pytest.mark.slow
def test_3j63_chain_a_acceptance(structures):
    from qrefine.finalise import finalise, FinaliseOptions, missing_hydrogens
    model = _read(structures, STRUCTURES_3J63, "chain A")
    result = finalise(model, FinaliseOptions())
    assert result.n_hydrogens == PUBLISHED_3J63_A_H
    assert missing_hydrogens(result.model) == []
    _assert_heavy_atoms_kept(model, result.model)
    assert result.clashscore_after is not None
    assert result.clashscore_after <= PUBLISHED_3J63_A_CLASHSCORE + 2
    if result.clashscore_before is not None:
        assert result.clashscore_after <= result.clashscore_before


def test_waters_get_hydrogens(structures):
    from qrefine.finalise import finalise, missing_hydrogens
    model = _read(structures, ("qrefine_unit_test_files", "1yjp.pdb"))
    result = finalise(model, _fast())
    waters = [ag for ag in result.model.get_hierarchy().atom_groups() if ag.resname == "HOH"]
    assert waters and result.n_water_hydrogens == 2 * len(waters)
    for ag in waters:
        o, h1, h2 = (np.array(ag.get_atom(n).xyz) for n in ("O", "H1", "H2"))
        assert np.linalg.norm(h1 - o) == pytest.approx(0.85, abs=0.05)
        angle = np.degrees(np.arccos(np.dot(h1 - o, h2 - o)
                                     / (np.linalg.norm(h1 - o) * np.linalg.norm(h2 - o))))
        assert angle == pytest.approx(103.9, abs=8)
    assert missing_hydrogens(result.model) == []
