"""The one element rule: which element an atom is.

Every package that needs an atom's element (the residue graph and its caps,
charges and electron counts, H-bond donors, the symbols an engine gets)
asks here, so that a file without an element column is read the same way
everywhere.
"""


def element_of(atom):
    """The element of an iotbx atom, upper case ("C", "ZN", "H").

    The element column when it is filled; else the PDB atom-name rule: the
    element sits in columns 13-14, right-justified (" CA " is carbon, "ZN  "
    zinc, "1HG2" and "HG21" are H).  Deuterium counts as H.
    """
    e = atom.element.strip().upper()
    if not e:
        name = atom.name.upper().ljust(4)
        if name[0] in " 0123456789":
            e = name[1]
        elif name[0] in "HD" and len(name.strip()) == 4:
            e = "H"
        else:
            e = name[:2].strip()
    return "H" if e == "D" else e


def symbol_of(atom):
    """The element as ASE writes it ("C", "Zn", "H"): what an engine gets."""
    return element_of(atom).capitalize()


# Van der Waals radii (A) for clash counting, close to probe2's with H at
# nuclear distances (H 1.17, O 1.40), so that what qrefine calls clash-free
# the clashscore does too (the rotamer fit, the QM clash restraint).
CONTACT_RADII = {"H": 1.17, "C": 1.7, "N": 1.55, "O": 1.4, "S": 1.8}
