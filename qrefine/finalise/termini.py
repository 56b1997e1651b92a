"""Chain termini and chain breaks.

A break is where the peptide bond to the previous amino acid is absent or
longer than cctbx links (``pdb_interpretation.link_distance_cutoff``, 3 A),
so the residues stay termini for cctbx as well.  True chain ends are charged
by default (NH3+ and COO-, neutral pH); breaks are neutral by default (NH2 and
COOH), so that a gap does not put charges inside the protein.  Either can be
switched.  All atom names are those of the cctbx terminal modifications (NH3,
NH1NOTPRO, NH2/NH1 for Pro, COO, COOH), so the model keeps library restraints.
"""

from dataclasses import dataclass

from mmtbx.ligands.ready_set_basics import construct_xyz
from mmtbx.ligands.ready_set_utils import (add_c_terminal_oxygens_to_atom_group,
                                           add_n_terminal_hydrogens_to_atom_group)

from qrefine.finalise.residues import append_atom, is_amino_acid, residue_label

LINK_CUTOFF = 3.0   # A; cctbx pdb_interpretation link_distance_cutoff
O_H = 0.948         # A; carboxylic acid O-H of the cctbx COOH mod (X-ray distance)


@dataclass(frozen=True)
class Terminus:
    residue: str      # 'ASP A 3'
    end: str          # 'N' or 'C'
    cause: str        # 'chain start', 'chain end', 'chain break'
    charged: bool

    def describe(self):
        if self.end == "N":
            form = "NH3+" if self.charged else "NH2 (neutral)"
        else:
            form = "COO-" if self.charged else "COOH (neutral)"
        return "%s: %s-terminus (%s), %s" % (self.residue, self.end, self.cause, form)


def find_termini(hierarchy, termini_charged=True, breaks_charged=False):
    """[(atom_group, Terminus)] for every amino-acid chain segment end."""
    found = []
    for chain in hierarchy.only_model().chains():
        residues = [rg.atom_groups()[0] for rg in chain.residue_groups()
                    if is_amino_acid(rg.atom_groups()[0])]
        for i, ag in enumerate(residues):
            first = i == 0
            last = i == len(residues) - 1
            if first:
                found.append((ag, Terminus(residue_label(ag), "N", "chain start", termini_charged)))
            elif not _linked(residues[i - 1], ag):
                found.append((ag, Terminus(residue_label(ag), "N", "chain break", breaks_charged)))
            if last:
                found.append((ag, Terminus(residue_label(ag), "C", "chain end", termini_charged)))
            elif not _linked(ag, residues[i + 1]):
                found.append((ag, Terminus(residue_label(ag), "C", "chain break", breaks_charged)))
    return found


def _linked(previous, current):
    c, n = previous.get_atom("C"), current.get_atom("N")
    if c is None or n is None:
        return False
    return c.distance(n) <= LINK_CUTOFF


def add_c_terminal_atoms(ag, charged):
    """OXT (if absent) and, for a neutral terminus, HXT.  Returns names added."""
    added = []
    if ag.get_atom("OXT") is None:
        add_c_terminal_oxygens_to_atom_group(ag)
        if ag.get_atom("OXT") is not None:
            added.append("OXT")
    if not charged and ag.get_atom("HXT") is None:
        oxt, c, o = ag.get_atom("OXT"), ag.get_atom("C"), ag.get_atom("O")
        xyz = construct_xyz(oxt, O_H, c, 108.0, o, 0.0, period=1)[0]
        append_atom(ag, " HXT", "H", xyz, oxt)
        added.append("HXT")
    return added


def add_n_terminal_hydrogens(ag, charged):
    """Terminal amine H, named as cctbx's terminal modifications expect.

    Charged: H1, H2, H3 (mod NH3); Pro H2, H3 (mod NH2).  Neutral: H and H1
    (the residue's own H plus mod NH1NOTPRO); Pro H2 (mod NH1).
    """
    before = {a.name.strip() for a in ag.atoms()}
    h = ag.get_atom("H")
    if h is not None:
        ag.remove_atom(h)
    add_n_terminal_hydrogens_to_atom_group(ag, use_capping_hydrogens=not charged,
                                           retain_original_hydrogens=False)
    if not charged and ag.resname.strip() != "PRO":
        second = ag.get_atom("H2")
        if second is not None:
            second.name = " H  "
    return sorted({a.name.strip() for a in ag.atoms()} - before)
