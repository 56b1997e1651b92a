"""Protonation states of titratable residues.

The monomer library defines each residue with a fixed set of H (His: both
HD1 and HE2; Lys: HZ1-3; Asp/Glu: none on the carboxylate).  A state names
the H to remove from, or add to, that set.  Defaults are those at neutral pH:
Asp-, Glu-, Lys+, Arg+, neutral Tyr and Cys, and neutral His with the H on
whichever ring nitrogen makes the better hydrogen bond (HIE on a tie).  A
nitrogen or sulfur bound to a metal ion carries no H, and a disulfide-bonded
Cys none on SG.  ``finalise.protonation=`` overrides per residue, e.g.
``HIS A 57 = HIP``.

The formal charge of each state is recorded only to describe the choice in
the log; the model's total charge comes from :mod:`qrefine.model.charges`.
"""

from dataclasses import dataclass

import numpy as np
from mmtbx.ligands.ready_set_basics import construct_xyz

from qrefine.errors import QRefineError
from qrefine.finalise.residues import METALS, append_atom, residue_key, residue_label


@dataclass(frozen=True)
class State:
    name: str
    resname: str
    remove: tuple = ()
    add: tuple = ()          # (H name, on atom, angle atom, dihedral atom)
    charge: int = 0
    selectable: bool = True  # False: assigned from the structure only
    text: str = ""


STATES = {s.name: s for s in (
    State("HIE", "HIS", remove=("HD1",), text="neutral, H on NE2"),
    State("HID", "HIS", remove=("HE2",), text="neutral, H on ND1"),
    State("HIP", "HIS", charge=1, text="protonated, H on ND1 and NE2"),
    State("ASP", "ASP", charge=-1, text="deprotonated"),
    State("ASH", "ASP", add=(("HD2", "OD2", "CG", "OD1"),), text="protonated on OD2"),
    State("GLU", "GLU", charge=-1, text="deprotonated"),
    State("GLH", "GLU", add=(("HE2", "OE2", "CD", "OE1"),), text="protonated on OE2"),
    State("LYS", "LYS", charge=1, text="protonated"),
    State("LYN", "LYS", remove=("HZ1",), text="neutral"),
    State("ARG", "ARG", charge=1, text="protonated"),
    State("CYS", "CYS", text="neutral"),
    State("CYM", "CYS", remove=("HG",), charge=-1, text="deprotonated"),
    State("CYX", "CYS", remove=("HG",), selectable=False, text="disulfide"),
    State("TYR", "TYR", text="neutral"),
    State("TYM", "TYR", remove=("HH",), charge=-1, text="deprotonated"),
)}
DEFAULT = {"ASP": "ASP", "GLU": "GLU", "LYS": "LYS", "ARG": "ARG", "CYS": "CYS",
           "TYR": "TYR", "HIS": "HIE"}

METAL_BOND = 2.8      # A; N/S to metal distance taken as coordination
HBOND_MAX = 2.6       # A; H...acceptor
HBOND_MIN_ANGLE = 120.0
BUMP = 2.0            # A; H...heavy atom closer than this is a bump
O_H = 0.948           # A; O-H of the cctbx ACID-ASP/ACID-GLU mods (X-ray distance)


@dataclass(frozen=True)
class Assignment:
    residue: str
    state: str
    reason: str       # 'default', 'override', 'metal', 'disulfide', 'H-bond ...'

    def describe(self):
        s = STATES[self.state]
        return "%s: %s (%s, charge %+d; %s)" % (self.residue, self.state, s.text,
                                                 s.charge, self.reason)


def parse_overrides(items):
    """{(chain, resid): (resname or None, state)} from 'HIS A 57 = HIE' strings."""
    result = {}
    for item in items or ():
        if "=" not in item:
            raise QRefineError("finalise.protonation='%s': expected 'RESNAME CHAIN RESSEQ = STATE',"
                               " e.g. 'HIS A 57 = HIE'" % item)
        left, state = (part.strip() for part in item.split("=", 1))
        words = left.split()
        state = state.upper()
        if len(words) == 3:
            resname, chain, resid = words[0].upper(), words[1], words[2]
        elif len(words) == 2:
            resname, (chain, resid) = None, words
        else:
            raise QRefineError("finalise.protonation='%s': expected 'RESNAME CHAIN RESSEQ = STATE',"
                               " e.g. 'HIS A 57 = HIE'" % item)
        if state not in STATES or not STATES[state].selectable:
            choices = ", ".join(sorted(n for n, s in STATES.items() if s.selectable))
            raise QRefineError("finalise.protonation='%s': unknown state %s; choose one of %s"
                               % (item, state, choices))
        if resname is not None and STATES[state].resname != resname:
            raise QRefineError("finalise.protonation='%s': %s is a state of %s, not %s"
                               % (item, state, STATES[state].resname, resname))
        result[(chain, resid)] = (resname, state)
    return result


def check_overrides(hierarchy, overrides):
    """Every override must name a residue of the model with the right name."""
    residues = {residue_key(rg): rg for rg in hierarchy.residue_groups()}
    for key, (resname, state) in overrides.items():
        rg = residues.get(key)
        label = "%s %s %s" % (resname or STATES[state].resname, key[0], key[1])
        if rg is None:
            raise QRefineError("finalise.protonation: no residue %s in the model (after "
                               "the selection)" % label)
        actual = rg.atom_groups()[0].resname.strip()
        if actual != STATES[state].resname:
            raise QRefineError("finalise.protonation: residue %s %s is %s; %s is a state of %s"
                               % (key[0], key[1], actual, state, STATES[state].resname))


def assign_states(hierarchy, overrides):
    """One Assignment per titratable residue of a hierarchy that has riding H.

    Must run after the library H are placed: the His choice compares the
    hydrogen bonds HD1 and HE2 would make.
    """
    atoms = hierarchy.atoms()
    xyz = atoms.extract_xyz().as_numpy_array()
    metal = np.array([a.element.strip().upper() in METALS and a.parent().atoms_size() == 1
                      for a in atoms], dtype=bool)
    assignments = {}
    for rg in hierarchy.residue_groups():
        ag = rg.atom_groups()[0]
        resname = ag.resname.strip()
        if resname not in DEFAULT:
            continue
        key = residue_key(rg)
        if key in overrides:
            state, reason = overrides[key][1], "override"
            if resname == "CYS" and _cys_state(ag, atoms, xyz, metal)[0] == "CYX":
                raise QRefineError("finalise.protonation: %s forms a disulfide; its state "
                                   "is fixed (CYX)" % residue_label(ag))
        elif resname == "HIS":
            state, reason = _his_state(ag, atoms, xyz, metal)
        elif resname == "CYS":
            state, reason = _cys_state(ag, atoms, xyz, metal)
        else:
            state, reason = DEFAULT[resname], "default"
        assignments[key] = (ag, Assignment(residue_label(ag), state, reason))
    return assignments


def apply_states(assignments):
    """Remove and add H in place; return the number of H added minus removed."""
    delta = 0
    for ag, assignment in assignments.values():
        state = STATES[assignment.state]
        for name in state.remove:
            atom = ag.get_atom(name)
            if atom is not None:
                ag.remove_atom(atom)
                delta -= 1
        for name, on, angle_atom, dihedral_atom in state.add:
            if ag.get_atom(name) is not None:
                continue
            o, c, o2 = ag.get_atom(on), ag.get_atom(angle_atom), ag.get_atom(dihedral_atom)
            site = construct_xyz(o, O_H, c, 108.0, o2, 0.0, period=1)[0]
            append_atom(ag, name, "H", site, o)
            delta += 1
    return delta


def _near(atom, xyz, mask, cutoff):
    d = np.linalg.norm(xyz - np.array(atom.xyz), axis=1)
    return bool(np.any(mask & (d < cutoff)))


def _cys_state(ag, atoms, xyz, metal):
    sg = ag.get_atom("SG")
    if sg is None:
        return "CYS", "default"
    if _near(sg, xyz, metal, METAL_BOND):
        return "CYM", "SG binds a metal ion"
    if ag.get_atom("HG") is None:
        # place_hydrogens leaves HG off sulfurs in a disulfide link.
        return "CYX", "disulfide"
    return "CYS", "default"


def _his_state(ag, atoms, xyz, metal):
    nd1, ne2 = ag.get_atom("ND1"), ag.get_atom("NE2")
    if nd1 is None or ne2 is None:
        return "HIE", "default"
    nd1_metal = _near(nd1, xyz, metal, METAL_BOND)
    ne2_metal = _near(ne2, xyz, metal, METAL_BOND)
    if nd1_metal and not ne2_metal:
        return "HIE", "ND1 binds a metal ion"
    if ne2_metal and not nd1_metal:
        return "HID", "NE2 binds a metal ion"
    own = {a.i_seq for a in ag.atoms()}
    score = {}
    for n_name, h_name in (("ND1", "HD1"), ("NE2", "HE2")):
        h = ag.get_atom(h_name)
        score[h_name] = 0 if h is None else _hbond_score(ag.get_atom(n_name), h, atoms, xyz, own)
    if score["HD1"] > score["HE2"]:
        return "HID", "HD1 makes the better hydrogen bond"
    if score["HE2"] > score["HD1"]:
        return "HIE", "HE2 makes the better hydrogen bond"
    return "HIE", "default (no hydrogen-bond preference)"


def _hbond_score(n, h, atoms, xyz, own):
    """+1 per acceptor the H points at (any O; a His ring N); -1 per bump."""
    hxyz = np.array(h.xyz)
    to_n = np.array(n.xyz) - hxyz
    d = np.linalg.norm(xyz - hxyz, axis=1)
    score = 0
    for i in np.nonzero(d < max(HBOND_MAX, BUMP))[0]:
        a = atoms[int(i)]
        if a.i_seq in own or a.element_is_hydrogen():
            continue
        to_a = np.array(a.xyz) - hxyz
        cos = np.dot(to_n, to_a) / (np.linalg.norm(to_n) * np.linalg.norm(to_a))
        angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))   # N-H...A
        acceptor = a.element.strip().upper() == "O" or (
            a.parent().resname.strip() == "HIS" and a.name.strip() in ("ND1", "NE2"))
        if acceptor and d[i] <= HBOND_MAX and angle >= HBOND_MIN_ANGLE:
            score += 1
        elif d[i] < BUMP:
            score -= 1
    return score
