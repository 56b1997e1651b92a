"""What qr.finalise refuses, each time naming the residue and what to do.

Called on the heavy-atom model after the selection and altloc resolution:
nucleic acids (not supported yet), residues without a monomer-library entry
or restraints CIF, amino acids without their full backbone, and residues
that would carry H on a crystallographic special position.  Incomplete
residues other than standard amino acids (ligands without their leaving
atoms, say) are noted and left as they are.
"""

from mmtbx.monomer_library import idealized_aa
from mmtbx.rotamer.rotamer_eval import eval_residue_completeness

from qrefine.errors import QRefineError
from qrefine.finalise.residues import (BACKBONE, is_amino_acid, is_nucleic_acid, is_water,
                                       residue_label)

_IDEAL = None


def standard_amino_acids():
    """Residue names whose side chains can be rebuilt (cctbx idealized_aa)."""
    global _IDEAL
    if _IDEAL is None:
        _IDEAL = frozenset(k.upper() for k in idealized_aa.residue_dict() if "_" not in k)
    return _IDEAL


def check_model_shape(hierarchy, path):
    if hierarchy.models_size() != 1:
        raise QRefineError("model file %s has %d models; qr.finalise needs one (split the "
                           "file or keep one model)" % (path, hierarchy.models_size()))
    if hierarchy.atoms_size() == 0:
        raise QRefineError("model file %s: no atoms left after the selection" % path)


def check_special_positions(hierarchy, crystal_symmetry, path):
    """Refuse atoms on crystallographic special positions that would carry H.

    Their H cannot be placed consistently with the symmetry (a water on a
    rotation axis, say).  Single-atom ions there are fine.
    """
    if crystal_symmetry is None or crystal_symmetry.unit_cell() is None \
            or crystal_symmetry.space_group_info() is None:
        return
    xrs = hierarchy.extract_xray_structure(crystal_symmetry=crystal_symmetry)
    table = xrs.site_symmetry_table()
    atoms = hierarchy.atoms()
    for i in table.special_position_indices():
        ag = atoms[i].parent()
        if ag.atoms_size() == 1 and not is_water(ag):
            continue
        raise QRefineError(
            "model file %s: residue %s lies on a crystallographic special position, where its "
            "hydrogens cannot follow the symmetry; remove it, e.g. selection=\"not (chain %s and "
            "resseq %s)\"" % (path, residue_label(ag), ag.parent().parent().id.strip(),
                               ag.parent().resseq.strip()))


def check_residues(hierarchy, mon_lib_srv, path):
    """Raise QRefineError for the first residue qr.finalise cannot handle.

    Returns notes on residues that are incomplete but need not be rebuilt
    (ligands without their leaving atoms, say).
    """
    notes = []
    for rg in hierarchy.residue_groups():
        for ag in rg.atom_groups():
            label = residue_label(ag)
            if is_nucleic_acid(ag):
                raise QRefineError(
                    "model file %s: residue %s is a nucleic acid; qr.finalise does not "
                    "support nucleic acids yet (remove them with selection=)" % (path, label))
            if is_water(ag):
                continue
            if mon_lib_srv.get_comp_comp_id_direct(ag.resname.strip()) is None:
                raise QRefineError(
                    "model file %s: no restraints for residue %s; supply "
                    "restraints_cif=<file>.cif for %s" % (path, label, ag.resname.strip()))
            names = {a.name.strip() for a in ag.atoms()}
            if is_amino_acid(ag):
                missing = [n for n in BACKBONE if n not in names]
                if missing:
                    raise QRefineError(
                        "model file %s: residue %s lacks backbone atom(s) %s; qr.finalise "
                        "rebuilds side chains only (complete the backbone or remove the "
                        "residue with selection=)" % (path, label, " ".join(missing)))
            if ag.resname.strip() not in standard_amino_acids():
                missing = missing_heavy_atoms(ag, mon_lib_srv)
                if missing:
                    notes.append("%s lacks dictionary atom(s) %s (a leaving group, or "
                                 "incomplete); left as it is" % (label, " ".join(missing)))
    return notes


def missing_heavy_atoms(atom_group, mon_lib_srv):
    """Names of non-H atoms of the library definition absent from the residue.

    Terminal and leaving atoms (OXT, and the like) are not expected.
    """
    try:
        missing = eval_residue_completeness(residue=atom_group, mon_lib_srv=mon_lib_srv,
                                            ignore_hydrogens=True)
    except Exception:  # cctbx raises assorted errors on odd residues; treat as complete
        return []
    return [n for n in missing if n not in ("OXT",) and not n.startswith("H")]
