"""Small helpers shared by the finalise steps: residue labels and classes."""

import iotbx.pdb

get_class = iotbx.pdb.common_residue_names_get_class

AMINO_ACID_CLASSES = ("common_amino_acid", "modified_amino_acid", "d_amino_acid")
NUCLEIC_ACID_CLASSES = ("common_rna_dna", "modified_rna_dna", "ccp4_mon_lib_rna_dna")
BACKBONE = ("N", "CA", "C", "O")

# Elements treated as metal ions: they bind His/Cys/Asp/Glu side chains, and a
# nitrogen or sulfur bound to one carries no hydrogen.
METALS = frozenset("""LI NA K RB CS BE MG CA SR BA AL GA MN FE CO NI CU ZN CD HG
PT PD AU AG MO W V CR TI ZR Y LA CE GD EU TB YB SM IR OS RU RH RE SB TL PB BI SN""".split())


def residue_label(residue):
    """'HIS A 57' for an atom_group or residue_group (with its insertion code)."""
    if hasattr(residue, "resname"):  # atom_group
        resname, rg = residue.resname.strip(), residue.parent()
    else:
        rg = residue
        resname = rg.atom_groups()[0].resname.strip()
    chain = rg.parent().id.strip() or "_"
    return "%s %s %s%s" % (resname, chain, rg.resseq.strip(), rg.icode.strip())


def residue_key(rg):
    """(chain id, resseq+icode) of a residue group, as used by overrides."""
    return (rg.parent().id.strip(), rg.resseq.strip() + rg.icode.strip())


def is_amino_acid(atom_group):
    return get_class(atom_group.resname) in AMINO_ACID_CLASSES


def is_nucleic_acid(atom_group):
    return get_class(atom_group.resname) in NUCLEIC_ACID_CLASSES


def is_water(atom_group):
    return get_class(atom_group.resname) == "common_water"


def is_metal(atom):
    return atom.element.strip().upper() in METALS and len(atom.parent().atoms()) == 1


def heavy_atoms(atom_group):
    return [a for a in atom_group.atoms() if not a.element_is_hydrogen()]


def append_atom(atom_group, name, element, xyz, like):
    """Add an atom named ``name`` (PDB 4-character form) at ``xyz``.

    Occupancy, B, segid and the HETATM flag are copied from ``like``.
    """
    atom = iotbx.pdb.hierarchy.atom()
    atom.name = name if len(name) == 4 else (" " + name.strip()).ljust(4)
    atom.element = element.strip().upper().rjust(2)
    atom.xyz = tuple(float(v) for v in xyz)
    atom.occ = like.occ
    atom.b = like.b
    atom.segid = like.segid
    atom.hetero = like.hetero
    atom_group.append_atom(atom)
    return atom


# Atom-name pairs that cctbx swaps when it "flips symmetric amino acids"
# (iotbx.pdb.hierarchy.flip_symmetric_amino_acids); the first pair decides.
SYMMETRIC_PAIRS = {
    "ARG": (("NH1", "NH2"), ("HH11", "HH21"), ("HH12", "HH22")),
    "ASP": (("OD1", "OD2"),),
    "GLU": (("OE1", "OE2"),),
    "PHE": (("CD1", "CD2"), ("CE1", "CE2"), ("HD1", "HD2"), ("HE1", "HE2")),
    "TYR": (("CD1", "CD2"), ("CE1", "CE2"), ("HD1", "HD2"), ("HE1", "HE2")),
    "VAL": (("CG1", "CG2"), ("HG11", "HG21"), ("HG12", "HG22"), ("HG13", "HG23")),
    "LEU": (("CD1", "CD2"), ("HD11", "HD21"), ("HD12", "HD22"), ("HD13", "HD23")),
}


def atom_key(atom):
    """(chain, resseq, icode, resname, name): an atom's identity in one conformer."""
    ag = atom.parent()
    rg = ag.parent()
    return (rg.parent().id, rg.resseq, rg.icode, ag.resname, atom.name)


def restore_swapped_names(hierarchy, reference):
    """Undo cctbx's renaming of symmetric atoms, where the coordinates show it.

    ``reference`` maps atom_key -> xyz of the input heavy atoms.  Returns the
    labels of the residues renamed back.
    """
    restored = []
    for ag in hierarchy.atom_groups():
        pairs = SYMMETRIC_PAIRS.get(ag.resname.strip())
        if not pairs:
            continue
        first, second = (ag.get_atom(n) for n in pairs[0])
        if first is None or second is None:
            continue
        ref_first = reference.get(atom_key(first))
        ref_second = reference.get(atom_key(second))
        if ref_first is None or ref_second is None or first.xyz == ref_first:
            continue
        if _same(first.xyz, ref_second) and _same(second.xyz, ref_first):
            for name_a, name_b in pairs:
                a, b = ag.get_atom(name_a), ag.get_atom(name_b)
                if a is not None:
                    a.name = (" " + name_b).ljust(4) if len(name_b) < 4 else name_b
                if b is not None:
                    b.name = (" " + name_a).ljust(4) if len(name_a) < 4 else name_a
            restored.append(residue_label(ag))
    return restored


def _same(xyz, ref):
    return max(abs(a - b) for a, b in zip(xyz, ref)) < 1e-6
