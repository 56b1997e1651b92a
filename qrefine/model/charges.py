"""Formal charges of residues from their hydrogens, and electron bookkeeping.

A QM engine needs the total charge and spin multiplicity of what it computes.
For a protein the charge follows from the protonation state, which a
complete model states through its hydrogen atoms.  Every rule below counts
the hydrogens on one titratable group and compares them with the neutral
form::

    group                 neutral form            charge
    N-terminal NH2/NH3    2 H (PRO: 1 H)          (H on N) - 2  (PRO: - 1)
    C-terminal OXT        HXT present             -1 without HXT
    ASP / GLU             HD1|HD2 / HE1|HE2       -1 without one of them
    LYS NZ                HZ1-3: 2 H              (HZ count) - 2
    ARG guanidinium       HE,HH11,HH12,HH21,HH22  (count) - 4
    HIS imidazole         HD1 or HE2              (count) - 1
    CYS SG                HG, or a disulfide      -1 without (thiolate)
    TYR OH                HH                      -1 without (phenolate)

An internal residue has one H on N (PRO none), so the N-terminal rule needs
no knowledge of chain breaks: only a terminus can carry two or three.  The
same rules apply to the D-amino acids (DAS, DGL, DLY, DAR, DHI, DCY, DTY ...).

Every residue is decided by the first of these that applies:

1. ``ligand_charges={"RESNAME": charge}`` given by the caller;
2. water (HOH, WAT, DOD ...): 0;
3. amino acids (a residue with N, CA and C that no restraints CIF with
   formal charges describes): the hydrogen rules above; formal charges in
   the file that disagree are noted, not used;
4. formal charges in the model file itself (PDB columns 79-80 or mmCIF
   ``pdbx_formal_charge``) on any atom of the residue: their sum;
5. a ``_chem_comp_atom.charge`` column (formal charges, as eLBOW and AceDRG
   write) in a restraints CIF attached to the model;
6. the tables :data:`ION_CHARGES` (single-atom ions) and
   :data:`LIGAND_FORMS` (sulfate, phosphate, acetate, glycerol ...);
7. anything else: 0, with a note saying it was assumed (and whether the
   residue alone has an odd electron count, which a neutral molecule cannot).

The per-atom ``partial_charge`` column of the monomer library is *not* used:
it sums to +1.546 for ARG and to 0 for every ion and for acetate (checked
against chem_data/mon_lib and geostd), so it says nothing reliable about
formal charges.

A residue with alternate conformations is charged by its first conformer;
a note is added when another conformer would have a different charge.

The module reads the hierarchy objects it is given and imports cctbx only
to look for disulfides across crystal symmetry, so the engines can use the
electron bookkeeping (:func:`electron_count`, :func:`check_multiplicity`)
without cctbx.
"""

import collections

from ase.data import atomic_numbers
from cctbx import crystal
from scitbx.array_family import flex

from qrefine.engines import electrons
from qrefine.errors import QRefineError
from qrefine.model.elements import element_of

# Single-atom ions by residue name (PDB chemical component ids).  FE is
# Fe(III) and FE2 Fe(II), CU is Cu(II) and CU1 Cu(I), as the PDB defines them.
ION_CHARGES = {
    "LI": 1, "NA": 1, "K": 1, "RB": 1, "CS": 1, "AG": 1, "CU1": 1, "TL": 1,
    "MG": 2, "CA": 2, "SR": 2, "BA": 2, "ZN": 2, "MN": 2, "FE2": 2, "CO": 2,
    "NI": 2, "CU": 2, "CD": 2, "HG": 2, "PB": 2, "PD": 2, "PT": 2, "OS": 2,
    "FE": 3, "AL": 3, "MN3": 3, "3CO": 3, "CR": 3, "GA": 3, "IN": 3, "AU3": 3,
    "LA": 3, "CE": 3, "EU": 3, "GD": 3, "GD3": 3, "TB": 3, "YB": 3, "SM": 3,
    "LU": 3, "HO": 3, "HO3": 3, "Y1": 3,
    "F": -1, "CL": -1, "BR": -1, "IOD": -1,
}

# Small molecules as the PDB Chemical Component Dictionary defines them:
# (formal charge, number of H) of that form.  A model with other H counts
# has them on the acidic or basic groups, so its charge is
# charge + (H in the model - H listed): acetic acid ACY with 3 H is acetate.
LIGAND_FORMS = {
    "SO4": (-2, 0), "PO4": (-3, 0), "NO3": (-1, 0), "CO3": (-2, 0),
    "NH4": (1, 4), "SCN": (-1, 0), "AZI": (-1, 0),
    "ACT": (-1, 3), "ACY": (0, 4), "FMT": (0, 2), "CIT": (0, 8),
    "TRS": (1, 12), "IMD": (1, 5),
    "GOL": (0, 8), "EDO": (0, 6), "EOH": (0, 6), "MOH": (0, 4),
    "DMS": (0, 6), "MPD": (0, 14), "PEG": (0, 10), "BME": (0, 6),
}

WATER = frozenset(["HOH", "WAT", "H2O", "DOD", "SOL", "TIP", "TIP3"])

# D-amino acids (and a few renamed protonation forms) share the L rules.
_ALIASES = {
    "DAS": "ASP", "DGL": "GLU", "DLY": "LYS", "DAR": "ARG", "DHI": "HIS",
    "DCY": "CYS", "DTY": "TYR", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS",
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS",
    "HSP": "HIS", "CYX": "CYS", "CYM": "CYS", "DPR": "PRO",
}

_N_TERMINAL_H = frozenset(["H", "HN", "H1", "H2", "H3", "HT1", "HT2", "HT3",
                           "HN1", "HN2", "HN3"])
_C_TERMINAL_O = frozenset(["OXT", "OT2"])
_C_TERMINAL_H = frozenset(["HXT", "HOXT"])
_SIDE_CHAIN = {
    # resname: (H names on the group, H count of the neutral form)
    "ASP": (("HD1", "HD2"), 1),
    "GLU": (("HE1", "HE2"), 1),
    "LYS": (("HZ1", "HZ2", "HZ3"), 2),
    "ARG": (("HE", "HH11", "HH12", "HH21", "HH22"), 4),
    "HIS": (("HD1", "HE2"), 1),
    "TYR": (("HH",), 1),
}
_DISULFIDE_MAX = 2.5  # A between two S; an S-S bond is 2.03 A, S...S contacts >= 3.3 A


class ResidueCharge(collections.namedtuple("ResidueCharge", "residue resname charge")):
    """``(residue id, resname, charge)``; ``note`` says how an unusual charge
    was decided (empty for the standard rules)."""

    def __new__(cls, residue, resname, charge, note=""):
        self = super().__new__(cls, residue, resname, int(charge))
        self.note = note
        return self


def residue_charges(model, ligand_charges=None):
    """[:class:`ResidueCharge`] for every residue of the first model.

    ``model`` is an ``mmtbx.model.manager`` or an ``iotbx.pdb.hierarchy.root``.
    ``ligand_charges`` maps residue names to charges; they override every
    rule (meant for ligands the rules do not cover).
    Raises :class:`QRefineError` when the model has no hydrogen atoms at all,
    since the protonation states are then unknown.
    """
    hierarchy, restraint_objects = _hierarchy_and_cifs(model)
    ligand_charges = {k.strip().upper(): int(v) for k, v in (ligand_charges or {}).items()}
    models = hierarchy.models()
    if not models:
        return []
    first = models[0]
    residues = [_Residue(rg) for chain in first.chains() for rg in chain.residue_groups()]
    if residues and not any(r.has_hydrogen for r in residues):
        raise QRefineError(
            "the model has no hydrogen atoms, so its protonation states and charge are "
            "unknown; add hydrogens first (e.g. phenix.ready_set or reduce)")
    sg_sites = [(r, r.site("SG")) for r in residues
                if _ALIASES.get(r.resname, r.resname) == "CYS" and r.site("SG") is not None]
    # Any sulfur can close a disulfide (MTSL spin labels, CoA, ...).
    s_sites = [(r, a.xyz) for r in residues for a in r.atoms if element_of(a) == "S"]
    symmetry_bonded = _symmetry_disulfides(model, sg_sites)
    dictionary = _DictionaryCharges(restraint_objects)
    out = []
    for res in residues:
        charge, note = _charge_of(res, ligand_charges, dictionary, s_sites, symmetry_bonded)
        if res.other_conformers:
            others = set()
            for conf in res.other_conformers:
                c, _ = _charge_of(conf, ligand_charges, dictionary, s_sites, symmetry_bonded)
                others.add(c)
            if others - {charge}:
                note = _join(note, "alternate conformers differ in charge (%s); "
                                   "the first conformer's charge is used"
                             % ", ".join(str(c) for c in sorted(others | {charge})))
        out.append(ResidueCharge(res.id, res.resname, charge, note))
    return out


def total_charge(model, ligand_charges=None):
    """Sum of :func:`residue_charges` (an int)."""
    return sum(r.charge for r in residue_charges(model, ligand_charges))


def electron_count(atoms, charge=0):
    """Number of electrons of ``atoms`` at total ``charge``.

    ``atoms`` may be ASE ``Atoms``, a sequence of atomic numbers or element
    symbols, cctbx/iotbx atoms (anything with an ``element`` attribute), or a
    whole model (``mmtbx.model.manager`` or hierarchy), of which the first
    model and the first conformer of each residue are counted, as in
    :func:`residue_charges`.
    """
    if hasattr(atoms, "get_hierarchy") or hasattr(atoms, "models"):
        atoms = first_conformer_atoms(atoms)
    numbers = getattr(atoms, "numbers", None)
    if numbers is None:
        numbers = []
        for a in atoms:
            if hasattr(a, "element"):
                a = element_of(a)
            if isinstance(a, str):
                symbol = a.strip().capitalize()
                if symbol == "D":
                    symbol = "H"
                if symbol not in atomic_numbers:
                    raise QRefineError("unknown element '%s' in electron count" % a.strip())
                numbers.append(atomic_numbers[symbol])
            else:
                numbers.append(int(a))
    return electrons.electron_count(numbers, charge)


def first_conformer_atoms(model):
    """The atoms of the first model, first conformer of each residue."""
    hierarchy, _ = _hierarchy_and_cifs(model)
    models = hierarchy.models()
    if not models:
        return []
    return [a for chain in models[0].chains() for rg in chain.residue_groups()
            for a in _Residue(rg).atoms]


# The spin rule lives with the engines, which check it too.
check_multiplicity = electrons.check_multiplicity


# ---------------------------------------------------------------------------

def _hierarchy_and_cifs(model):
    if hasattr(model, "get_hierarchy"):
        cifs = model.get_restraint_objects() if hasattr(model, "get_restraint_objects") else None
        return model.get_hierarchy(), cifs or []
    if hasattr(model, "models"):
        return model, []
    raise TypeError("expected an mmtbx.model.manager or an iotbx.pdb hierarchy, got %s"
                    % type(model).__name__)


def _h_name(name):
    """Deuterium names as hydrogen names (DZ1 -> HZ1)."""
    return "H" + name[1:] if name.startswith("D") else name


class _Conformer:
    """The atoms of one conformer of a residue group, by name."""

    def __init__(self, atoms, rid, resname):
        self.id = rid
        self.resname = resname
        self.names = set()
        self.h_names = set()
        self.sites = {}
        self.formal = []
        self.n_h = 0
        self.atoms = list(atoms)
        for a in self.atoms:
            name = a.name.strip().upper()
            if element_of(a) == "H":
                self.n_h += 1
                self.h_names.add(_h_name(name))
            else:
                self.names.add(name)
                self.sites.setdefault(name, a.xyz)
            c = a.charge_as_int() if hasattr(a, "charge_as_int") else 0
            if c:
                self.formal.append(c)

    @property
    def has_hydrogen(self):
        return self.n_h > 0

    def site(self, name):
        return self.sites.get(name)


class _Residue(_Conformer):
    """First conformer of a residue group, plus the others for comparison."""

    def __init__(self, rg):
        chain_id = rg.parent().id.strip()
        rid = ("%s %s%s" % (chain_id, rg.resseq.strip(), rg.icode.strip())).strip()
        groups = list(rg.atom_groups())
        blank = [ag for ag in groups if not ag.altloc.strip()]
        alt = [ag for ag in groups if ag.altloc.strip()]
        altlocs = []
        for ag in alt:
            if ag.altloc not in altlocs:
                altlocs.append(ag.altloc)

        def atoms_of(altloc):
            sel = blank + [ag for ag in alt if ag.altloc == altloc]
            return [a for ag in sel for a in ag.atoms()], sel[-1].resname

        atoms, resname = atoms_of(altlocs[0] if altlocs else None)
        _Conformer.__init__(self, atoms, rid, resname.strip().upper())
        self.other_conformers = []
        for altloc in altlocs[1:]:
            a, rn = atoms_of(altloc)
            self.other_conformers.append(_Conformer(a, rid, rn.strip().upper()))


class _DictionaryCharges:
    """Formal charges from ``_chem_comp_atom.charge`` in restraints CIFs."""

    def __init__(self, restraint_objects):
        self._charges = {}
        for item in restraint_objects or ():
            cif = item[1] if isinstance(item, tuple) else item
            try:
                blocks = list(cif.items())
            except AttributeError:
                continue
            for name, block in blocks:
                if not name.startswith("comp_") or name == "comp_list":
                    continue
                loop = block.get_loop("_chem_comp_atom")
                if loop is None or "_chem_comp_atom.charge" not in loop.keys():
                    continue
                values = []
                for v in loop["_chem_comp_atom.charge"]:
                    try:
                        values.append(int(round(float(v))))
                    except ValueError:  # '.' or '?'
                        values.append(0)
                self._charges[name[len("comp_"):].upper()] = sum(values)

    def get(self, resname):
        return self._charges.get(resname)


def _charge_of(res, ligand_charges, dictionary, sg_sites, symmetry_bonded=()):
    """(charge, note) of one conformer."""
    resname = _ALIASES.get(res.resname, res.resname)
    if res.resname in ligand_charges:
        return ligand_charges[res.resname], "given in ligand_charges"
    if res.resname in WATER:
        return 0, ""
    if {"N", "CA", "C"} <= res.names and dictionary.get(res.resname) is None:
        # Amino acids: the hydrogens decide, whatever formal charges say.
        charge, note = _amino_acid_charge(res, resname, sg_sites, symmetry_bonded)
        if res.formal and sum(res.formal) != charge:
            note = _join(note, "formal charges in the file sum to %+d; the hydrogens "
                               "say %+d, which is used" % (sum(res.formal), charge))
        return charge, note
    if res.formal:
        return sum(res.formal), "formal charges in the model file"
    d = dictionary.get(res.resname)
    if d is not None:
        return d, "formal charges of the restraints CIF"
    if res.resname in ION_CHARGES:
        return ION_CHARGES[res.resname], ""
    if res.resname in LIGAND_FORMS:
        base, n_h = LIGAND_FORMS[res.resname]
        return base + (res.n_h - n_h), ""
    note = ("no charge rule for %s; assumed neutral (give ligand_charges or a "
            "restraints CIF with formal charges)" % res.resname)
    if electron_count(res.atoms) % 2:
        note += ("; alone and neutral it has an odd number of electrons (fine only "
                 "if it is bonded to a neighbour)")
    return 0, note


def _amino_acid_charge(res, resname, sg_sites, symmetry_bonded=()):
    if not res.has_hydrogen:
        raise QRefineError(
            "residue %s %s has no hydrogen atoms, so its protonation state is unknown; "
            "add hydrogens first" % (res.resname, res.id))
    charge = 0
    notes = []
    # N terminus: an internal residue has one H on N (PRO none).
    n_h = len(res.h_names & _N_TERMINAL_H)
    neutral = 1 if resname == "PRO" else 2
    if n_h > neutral:
        charge += n_h - neutral
    elif n_h == 0 and resname != "PRO":
        notes.append("no hydrogen on N (missing H?)")
    # C terminus.
    if res.names & _C_TERMINAL_O and not res.h_names & _C_TERMINAL_H:
        charge -= 1
    if resname in _SIDE_CHAIN:
        names, neutral = _SIDE_CHAIN[resname]
        if not _has_side_chain(res, resname):
            notes.append("side chain incomplete; not charged")
        else:
            count = len(res.h_names & set(names))
            group = count - neutral
            if resname in ("ASP", "GLU") and group > 0:
                group = 0  # an H on each carboxylate O: still neutral
            charge += group
            low, high = {"ASP": (-1, 0), "GLU": (-1, 0), "LYS": (0, 1), "ARG": (0, 1),
                         "HIS": (0, 1), "TYR": (-1, 0)}[resname]
            if not low <= group <= high:
                notes.append("unusual protonation: %d of %s" % (count, "/".join(names)))
    elif resname == "CYS" and "SG" in res.names and "HG" not in res.h_names:
        if res.id in symmetry_bonded:
            notes.append("disulfide to a symmetry mate (neutral; SG has an open "
                         "valence in the model alone)")
        elif not _in_disulfide(res, sg_sites):
            charge -= 1
            notes.append("thiolate (no HG, no disulfide partner)")
    return charge, "; ".join(notes)


_GROUP_HEAVY = {"ASP": ("OD1", "OD2"), "GLU": ("OE1", "OE2"), "LYS": ("NZ",),
                "ARG": ("NE", "NH1", "NH2"), "HIS": ("ND1", "NE2"), "TYR": ("OH",)}


def _has_side_chain(res, resname):
    return all(n in res.names for n in _GROUP_HEAVY[resname])


def _in_disulfide(res, s_sites):
    """Is the SG of ``res`` within bonding distance of another sulfur?"""
    sg = res.site("SG")
    for other, site in s_sites:
        if other.id == res.id:
            continue
        d2 = sum((a - b) ** 2 for a, b in zip(sg, site))
        if d2 < _DISULFIDE_MAX ** 2:
            return True
    return False


def _symmetry_disulfides(model, sg_sites):
    """Ids of CYS whose SG bonds to a symmetry copy of an SG (crystals only)."""
    if not sg_sites or not hasattr(model, "crystal_symmetry"):
        return set()
    xs = model.crystal_symmetry()
    if xs is None or xs.unit_cell() is None or xs.space_group() is None:
        return set()
    sites = flex.vec3_double([site for _, site in sg_sites])
    try:
        asu = xs.special_position_settings(min_distance_sym_equiv=0.5).asu_mappings(
            buffer_thickness=_DISULFIDE_MAX, sites_cart=sites)
    except (RuntimeError, AssertionError):  # an unusable cell (EM boxes with cell 1 1 1)
        return set()
    table = crystal.pair_asu_table(asu_mappings=asu)
    table.add_all_pairs(distance_cutoff=_DISULFIDE_MAX)
    bonded = set()
    for i, pairs in enumerate(table.extract_pair_sym_table()):
        for j, operators in pairs.items():
            if any(not op.is_unit_mx() for op in operators):
                bonded.add(sg_sites[i][0].id)
                bonded.add(sg_sites[j][0].id)
    return bonded


def _join(a, b):
    return "%s; %s" % (a, b) if a else b


def parse_ligand_charges(items):
    """{RESNAME: charge} from ``ligand_charge=RESNAME:CHARGE`` values."""
    result = {}
    for item in items or ():
        name, _, charge = str(item).partition(":")
        try:
            result[name.strip().upper()] = int(charge)
        except ValueError:
            raise QRefineError("ligand_charge=%s: expected RESNAME:CHARGE, e.g. "
                               "ligand_charge=NDP:-4" % item)
    return result
