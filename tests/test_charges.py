"""Residue charges from hydrogens, electron count and multiplicity, qr.charges."""

import os

import iotbx.pdb
import numpy as np
import pytest

from qrefine.model import charges
from qrefine.errors import QRefineError
from qrefine.model.io import read_model

THREEJ63 = "cryo_em/3j63_A/3j63_A_box_complete.pdb"
HELIX = "xray/1us0_helix/a87_99_h.pdb"


# -- helpers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def lines_3j63(structures):
    with open(os.path.join(structures, THREEJ63)) as f:
        return [l.rstrip("\n") for l in f if l.startswith(("ATOM", "HETATM"))]


def residue(lines, resseq, drop=(), add=(), resname=None, altloc=" ", shift=(0, 0, 0)):
    """PDB lines of residue ``resseq`` of 3j63, edited.

    ``drop``: atom names to remove; ``add``: (name, element) atoms to add (at
    the CA site; only names matter here); ``resname``: rename; ``shift``:
    move all atoms by this vector (A).
    """
    out = [l for l in lines if int(l[22:26]) == resseq and l[12:16].strip() not in drop]
    ca = next(l for l in out if l[12:16] == " CA ")
    for name, element in add:
        field = name.ljust(4) if len(name) == 4 else (" " + name).ljust(4)
        out.append(ca[:12] + field + ca[16:76] + element.rjust(2))
    edited = []
    for l in out:
        xyz = np.array([float(l[30:38]), float(l[38:46]), float(l[46:54])]) + shift
        edited.append(l[:16] + altloc + (resname or l[17:20]) + l[20:30]
                      + "%8.3f%8.3f%8.3f" % tuple(xyz) + l[54:])
    return edited


def as_cys(lines):
    """A SER turned into CYS (OG -> SG)."""
    return [l[:12] + " SG " + l[16:76] + " S" if l[12:16] == " OG " else l
            for l in lines]


def hierarchy(lines):
    return iotbx.pdb.input(source_info=None, lines=list(lines)).construct_hierarchy()


def charge_of(lines, **kw):
    rows = charges.residue_charges(hierarchy(lines), **kw)
    return sum(r.charge for r in rows)


def het(resname, name, element, resseq, charge="  ", xyz=(1.0, 2.0, 3.0)):
    return ("HETATM%5d %-4s %3s A%4d    %8.3f%8.3f%8.3f  1.00 20.00          %2s%2s"
            % (resseq, name if len(name) == 4 else " " + name, resname, resseq,
               xyz[0], xyz[1], xyz[2], element, charge))


# -- whole models ------------------------------------------------------------

def naive_ph7_charge(model):
    """Standard pH-7 states from residue names alone: +1 per LYS/ARG, -1 per
    ASP/GLU, HIS neutral, and the two termini of each chain cancel.  Valid
    only for a model protonated that way, which 3j63 is."""
    names = [rg.atom_groups()[0].resname for rg in model.get_hierarchy().residue_groups()]
    return sum(n in ("LYS", "ARG") for n in names) - sum(n in ("ASP", "GLU") for n in names)


def test_3j63_total_charge(structures):
    model = read_model(os.path.join(structures, THREEJ63), make_restraints=False)
    rows = charges.residue_charges(model)
    by_id = {r.residue: r for r in rows}
    assert len(rows) == 91
    assert by_id["A 1"].charge == 1        # MET 1: H1, H2, H3
    assert by_id["A 91"].charge == -1      # GLN 91: OXT, no HXT
    assert by_id["A 90"].charge == 0       # HIS 90: HE2 only
    assert all(not r.note for r in rows)
    total = charges.total_charge(model)
    assert total == -2
    # Cross-checks: the pH-7 count from residue names (6 ARG + 5 LYS - 6 ASP
    # - 7 GLU, termini cancel) and an even electron count, i.e. closed shell.
    assert naive_ph7_charge(model) == total
    n = charges.electron_count(model, total)
    assert n == 5400
    assert charges.check_multiplicity(n) == 1
    with pytest.raises(QRefineError, match="odd number of electrons"):
        charges.check_multiplicity(charges.electron_count(model, total + 1))


def test_helix_is_neutral_and_closed_shell_in_xtb(structures):
    # a87_99_h: poly-GLY 87-99 with a neutral NH2 N-terminus (HT1, HT2) and a
    # COOH C-terminus (HXT), so charge 0.
    model = read_model(os.path.join(structures, HELIX), make_restraints=False)
    assert charges.total_charge(model) == 0
    n = charges.electron_count(model, 0)
    assert n == 400 and charges.check_multiplicity(n) == 1
    xtb_engine = pytest.importorskip("qrefine.engines.xtb_engine")
    if not xtb_engine.availability()[0]:
        pytest.skip("xtb-python not installed")
    from ase import Atoms
    h = model.get_hierarchy()
    atoms = Atoms(symbols=[a.element.strip().capitalize() for a in h.atoms()],
                  positions=h.atoms().extract_xyz().as_numpy_array())
    occupations = {}
    for charge in (0, 2):
        atoms.calc = xtb_engine.make_calculator("GFN2-xTB", charge=charge)
        atoms.get_potential_energy()
        occupations[charge] = atoms.calc.results["occupations"]
    # Charge 0: integer occupations and a gap of ~3 eV: a closed shell.  The
    # wrong charge +2 leaves two half-filled levels (occupations near 1).
    assert np.abs(occupations[0] - np.round(occupations[0])).max() < 1e-3
    assert np.abs(occupations[2] - np.round(occupations[2])).max() > 0.3


def test_symmetry_disulfide_and_zinc_fingers(structures):
    # 5c11: CYS 12 bonds to its copy across a crystal 2-fold (SSBOND 1555
    # 18455); the other six CYS bind two ZN as thiolates.
    model = read_model(os.path.join(structures, "xray/5c11/5c11_4WQ_to_LYS_complete.pdb"),
                       make_restraints=False)
    rows = {r.residue: r for r in charges.residue_charges(model)}
    assert rows["A 12"].charge == 0 and "symmetry mate" in rows["A 12"].note
    assert [rows["A %d" % i].charge for i in (3, 8, 21, 25, 33, 48, 51)] == [-1] * 7
    assert rows["A 101"].resname == "ZN" and rows["A 101"].charge == 2


def test_restraints_cif_formal_charges(structures, tmp_path):
    # 5bmi: MTN (MTSL spin label) has formal charges (all 0) in its eLBOW CIF,
    # and its S bonds to CYS 44 SG, so CYS 44 is not a thiolate.
    path = os.path.join(structures, "xray/5bmi/5bmi_refine_001_complete.pdb")
    cif = os.path.join(structures, "xray/5bmi/data_MTN.cif")
    model = read_model(path, restraint_cifs=[cif], make_restraints=False)
    rows = {r.residue: r for r in charges.residue_charges(model)}
    assert rows["A 101"].charge == 0 and "restraints CIF" in rows["A 101"].note
    assert rows["A 44"].charge == 0
    # The same CIF with a formal +1 on N1 makes MTN a cation.
    text = open(cif).read().replace("MTN         N1     N   NR5    0",
                                    "MTN         N1     N   NR5    1")
    charged = tmp_path / "MTN_plus.cif"
    charged.write_text(text)
    model = read_model(path, restraint_cifs=[str(charged)], make_restraints=False)
    assert {r.residue: r.charge for r in charges.residue_charges(model)}["A 101"] == 1


# -- one rule at a time -------------------------------------------------------

def test_asp_glu(lines_3j63):
    assert charge_of(residue(lines_3j63, 6)) == -1                    # ASP 6
    assert charge_of(residue(lines_3j63, 6, add=[("HD2", "H")])) == 0
    assert charge_of(residue(lines_3j63, 13)) == -1                   # GLU 13
    assert charge_of(residue(lines_3j63, 13, add=[("HE2", "H")])) == 0
    # The same rules for the D-amino acid.
    assert charge_of(residue(lines_3j63, 6, resname="DAS")) == -1


def test_lys_arg(lines_3j63):
    assert charge_of(residue(lines_3j63, 21)) == 1                    # LYS 21
    assert charge_of(residue(lines_3j63, 21, drop=["HZ3"])) == 0
    assert charge_of(residue(lines_3j63, 21, resname="DLY")) == 1
    assert charge_of(residue(lines_3j63, 3)) == 1                     # ARG 3
    assert charge_of(residue(lines_3j63, 3, drop=["HH22"])) == 0
    assert charge_of(residue(lines_3j63, 3, drop=["HE"])) == 0


def test_his(lines_3j63):
    assert charge_of(residue(lines_3j63, 90)) == 0                    # HIS 90: HE2
    assert charge_of(residue(lines_3j63, 90, drop=["HE2"], add=[("HD1", "H")])) == 0
    assert charge_of(residue(lines_3j63, 90, add=[("HD1", "H")])) == 1
    rows = charges.residue_charges(hierarchy(residue(lines_3j63, 90, drop=["HE2"])))
    assert rows[0].charge == -1 and "unusual" in rows[0].note


def test_tyr_and_cys(lines_3j63):
    assert charge_of(residue(lines_3j63, 36)) == 0                    # TYR 36
    assert charge_of(residue(lines_3j63, 36, drop=["HH"])) == -1
    # SER 29 turned into CYS: SG with HG is neutral, without HG a thiolate.
    cys = as_cys(residue(lines_3j63, 29, resname="CYS"))
    assert charge_of(cys) == 0
    thiolate = as_cys(residue(lines_3j63, 29, resname="CYS", drop=["HG"]))
    assert charge_of(thiolate) == -1
    # Two of them with the SG 2.03 A apart: a disulfide, both neutral.
    partner = as_cys(residue(lines_3j63, 29, resname="CYS", drop=["HG"], shift=(2.03, 0, 0)))
    partner = [l[:22] + "%4d" % 129 + l[26:] for l in partner]
    assert [r.charge for r in charges.residue_charges(hierarchy(thiolate + partner))] == [0, 0]
    # ... but 3.5 A apart they are two thiolates.
    far = [l[:30] + "%8.3f" % (float(l[30:38]) + 1.47) + l[38:] for l in partner]
    assert [r.charge for r in charges.residue_charges(hierarchy(thiolate + far))] == [-1, -1]


def test_termini(lines_3j63):
    assert charge_of(residue(lines_3j63, 1)) == 1                     # MET 1: NH3+
    assert charge_of(residue(lines_3j63, 1, drop=["H3"])) == 0        # NH2
    assert charge_of(residue(lines_3j63, 91)) == -1                   # GLN 91: COO-
    assert charge_of(residue(lines_3j63, 91, add=[("HXT", "H")])) == 0
    # Internal PRO (no H on N) is neutral; an N-terminal PRO with 2 H is +1.
    assert charge_of(residue(lines_3j63, 31)) == 0
    assert charge_of(residue(lines_3j63, 31, add=[("H2", "H"), ("H3", "H")])) == 1
    assert charge_of(residue(lines_3j63, 31, add=[("H2", "H")])) == 0
    # CHARMM names HT1-3 count as well.
    assert charge_of(residue(lines_3j63, 1, drop=["H1", "H2", "H3"],
                             add=[("HT1", "H"), ("HT2", "H"), ("HT3", "H")])) == 1


def test_ions_water_and_ligands(lines_3j63):
    protein = residue(lines_3j63, 2)                                  # GLY 2, neutral
    ions = [het("ZN", "ZN", "ZN", 201), het("NA", "NA", "NA", 202),
            het("CL", "CL", "CL", 203), het("MG", "MG", "MG", 204),
            het("HOH", "O", "O", 205)]
    assert charge_of(protein + ions) == 2 + 1 - 1 + 2
    # A formal charge in the file wins over the table (FE is Fe(III)).
    assert charge_of(protein + [het("FE", "FE", "FE", 206)]) == 3
    assert charge_of(protein + [het("FE", "FE", "FE", 206, charge="2+")]) == 2
    sulfate = [het("SO4", n, e, 207) for n, e in
               (("S", "S"), ("O1", "O"), ("O2", "O"), ("O3", "O"), ("O4", "O"))]
    assert charge_of(protein + sulfate) == -2
    acetate = [het("ACY", n, e, 208) for n, e in
               (("C", "C"), ("O", "O"), ("OXT", "O"), ("CH3", "C"),
                ("H1", "H"), ("H2", "H"), ("H3", "H"))]
    assert charge_of(protein + acetate) == -1     # acetic acid without its acid H
    unknown = [het("LIG", n, e, 209) for n, e in (("C1", "C"), ("O1", "O"), ("H1", "H"))]
    rows = charges.residue_charges(hierarchy(protein + unknown))
    assert rows[-1].charge == 0 and "assumed neutral" in rows[-1].note
    assert "odd number of electrons" in rows[-1].note
    assert charge_of(protein + unknown, ligand_charges={"LIG": -1}) == -1


def test_alternate_conformers_use_the_first(lines_3j63):
    a = residue(lines_3j63, 6, add=[("HD2", "H")], altloc="A")
    b = residue(lines_3j63, 6, altloc="B")
    rows = charges.residue_charges(hierarchy(a + b))
    assert len(rows) == 1 and rows[0].charge == 0
    assert "alternate conformers differ" in rows[0].note
    assert charges.electron_count(hierarchy(a + b)) == \
        charges.electron_count([l[76:78].strip() for l in a])


def test_model_without_hydrogens(structures):
    model = read_model(os.path.join(structures, "xray/1us0_helix/a87_99.pdb"),
                       make_restraints=False)
    with pytest.raises(QRefineError, match="hydrogen"):
        charges.total_charge(model)


# -- electrons and multiplicity ------------------------------------------------

def test_electron_count():
    from ase.build import molecule
    assert charges.electron_count(["O", "H", "H"]) == 10
    assert charges.electron_count([8, 1, 1], charge=-1) == 11
    assert charges.electron_count(molecule("H2O"), charge=1) == 9
    assert charges.electron_count(["o", "D", "h"]) == 10
    with pytest.raises(QRefineError, match="unknown element"):
        charges.electron_count(["Xx"])
    with pytest.raises(QRefineError, match="integer"):
        charges.electron_count(["O"], charge=0.5)


def test_check_multiplicity():
    assert charges.check_multiplicity(10) == 1
    assert charges.check_multiplicity(9, 2) == 2
    assert charges.check_multiplicity(10, 3) == 3
    with pytest.raises(QRefineError, match=r"odd number of electrons \(9\).*multiplicity=2"):
        charges.check_multiplicity(9)
    with pytest.raises(QRefineError, match="multiplicity 2 does not fit 10 electrons"):
        charges.check_multiplicity(10, 2)
    with pytest.raises(QRefineError, match="multiplicity 1 does not fit 9 electrons"):
        charges.check_multiplicity(9, 1)
    with pytest.raises(QRefineError, match="only 1"):
        charges.check_multiplicity(1, 4)
    with pytest.raises(QRefineError, match="positive integer"):
        charges.check_multiplicity(10, 0)


# -- qr.charges ------------------------------------------------------------------

def test_cli(structures, capsys):
    from qrefine.scripts.charges import main
    assert main([os.path.join(structures, THREEJ63)]) == 0
    out = capsys.readouterr().out
    assert "total charge: -2" in out and "multiplicity: 1" in out
    assert "  A 1        MET  +1" in out and "  A 91       GLN  -1" in out
    assert "LEU" not in out  # only charged residues are listed
    assert main(["--help"]) == 0
    assert "usage: qr.charges" in capsys.readouterr().out


def test_cli_errors(structures, capsys, tmp_path):
    from qrefine.scripts.charges import main
    assert main([str(tmp_path / "missing.pdb")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qr.charges: error: model file") and err.count("\n") == 1
    assert main([os.path.join(structures, THREEJ63), "frobnicate=1"]) == 1
    assert "unknown parameter" in capsys.readouterr().err
    # 3j63 at charge -2 has 5400 electrons; asking for a doublet fails.
    assert main([os.path.join(structures, THREEJ63), "multiplicity=2"]) == 1
    assert "multiplicity 2 does not fit 5400 electrons" in capsys.readouterr().err
