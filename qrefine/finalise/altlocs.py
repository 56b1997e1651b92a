"""Reduce a model to one conformer: the most occupied one.

Residues whose alternate conformations include backbone atoms and that are
bonded to each other along the chain are resolved together (one altloc for
the whole run), so the kept backbone stays connected.  Everywhere else each
residue keeps its own most occupied altloc.  The kept atoms get occupancy 1.
"""

from dataclasses import dataclass

from qrefine.finalise.residues import BACKBONE, residue_label


@dataclass(frozen=True)
class AltlocChoice:
    residue: str          # 'SER A 57'
    kept: str             # altloc id kept
    occupancy: float      # its mean occupancy before the reset
    removed: tuple        # altloc ids removed

    def describe(self):
        removed = ",".join(self.removed) if self.removed else "none"
        return "%s: kept altloc %s (occupancy %.2f), removed %s" % (
            self.residue, self.kept, self.occupancy, removed)


def has_altlocs(hierarchy):
    return any(ag.altloc.strip() for ag in hierarchy.atom_groups())


def residues_with_alternatives(hierarchy):
    """Residue groups with two or more altloc ids: atoms present twice."""
    return [rg for rg in hierarchy.residue_groups() if len(_altlocs(rg)) > 1]


def resolve_altlocs(hierarchy):
    """Keep one conformer per residue in place; return the AltlocChoice list."""
    choices = []
    for model in hierarchy.models():
        for chain in model.chains():
            for group in _linked_groups(chain.residue_groups()):
                choices.extend(_resolve_group(group))
    hierarchy.atoms().reset_i_seq()
    return choices


def _altlocs(rg):
    return sorted({ag.altloc for ag in rg.atom_groups() if ag.altloc.strip()})


def _backbone_in_altloc(rg):
    return any(a.name.strip() in BACKBONE
               for ag in rg.atom_groups() if ag.altloc.strip() for a in ag.atoms())


def _linked_groups(residue_groups):
    """Runs of consecutive residues with backbone altlocs; others alone."""
    group = []
    for rg in residue_groups:
        if not _altlocs(rg):
            if group:
                yield group
                group = []
            continue
        if group and _backbone_in_altloc(rg) and _backbone_in_altloc(group[-1]):
            group.append(rg)
            continue
        if group:
            yield group
        group = [rg]
    if group:
        yield group


def _resolve_group(group):
    occupancies = {}
    for rg in group:
        for ag in rg.atom_groups():
            if ag.altloc.strip():
                occupancies.setdefault(ag.altloc, []).extend(a.occ for a in ag.atoms())
    mean = {alt: sum(v) / len(v) for alt, v in occupancies.items()}
    # Highest mean occupancy; ties go to the first altloc id (usually 'A').
    kept = sorted(mean, key=lambda alt: (-round(mean[alt], 6), alt))[0]
    choices = []
    for rg in group:
        present = _altlocs(rg)
        if not present:
            continue
        keep = kept if kept in present else sorted(
            present, key=lambda alt: (-_mean_occ(rg, alt), alt))[0]
        occupancy = _mean_occ(rg, keep)
        _keep_only(rg, keep)
        choices.append(AltlocChoice(residue_label(rg), keep, occupancy,
                                    tuple(a for a in present if a != keep)))
    return choices


def _mean_occ(rg, altloc):
    occ = [a.occ for ag in rg.atom_groups() if ag.altloc == altloc for a in ag.atoms()]
    return sum(occ) / len(occ) if occ else 0.0


def _keep_only(rg, altloc):
    for ag in list(rg.atom_groups()):
        if ag.altloc.strip() and ag.altloc != altloc:
            rg.remove_atom_group(ag)
    for ag in list(rg.atom_groups()):
        if ag.altloc != altloc:
            continue
        for atom in ag.atoms():
            atom.occ = 1.0
        blank = [other for other in rg.atom_groups()
                 if not other.altloc.strip() and other.resname == ag.resname]
        if blank:
            # Move the conformer's atoms into the shared (blank) atom group.
            for atom in ag.atoms():
                blank[0].append_atom(atom.detached_copy())
            rg.remove_atom_group(ag)
        else:
            ag.altloc = ""
