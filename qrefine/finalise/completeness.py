"""Does every residue have all the H its library definition expects?

This is the check the QM restraints need before they run.
"""

from libtbx.utils import null_out
import mmtbx.model
import mmtbx.monomer_library.pdb_interpretation as pdb_interpretation

from qrefine.finalise.residues import residue_label


def missing_hydrogens(model):
    """[(residue label, [H names])] that the library expects but the model lacks.

    The expectation is the monomer-library definition with the modifications
    cctbx applies from the atoms present (NH3/NH2 termini, COO/COOH, acidic
    Asp/Glu).  H that a recognised protonation state leaves off (HD1 or HE2
    of His, HG of Cys bonded to S or a metal or deprotonated, one HZ of Lys,
    HH of Tyr) do not count as missing.
    """
    if not model.processed():
        # A private processed copy loads any restraints CIFs into its monomer
        # library server; the caller's model is left alone.
        model = mmtbx.model.manager(model_input=None,
                                    pdb_hierarchy=model.get_hierarchy().deep_copy(),
                                    crystal_symmetry=model.crystal_symmetry(),
                                    restraint_objects=model.get_restraint_objects(),
                                    log=null_out())
        model.process(make_restraints=False)
    params = model.get_current_pdb_interpretation_params()
    processed = pdb_interpretation.process(
        mon_lib_srv=model.get_mon_lib_srv(), ener_lib=model.get_ener_lib(),
        params=params.pdb_interpretation, pdb_hierarchy=model.get_hierarchy().deep_copy(),
        crystal_symmetry=model.crystal_symmetry(), keep_monomer_mappings=True,
        log=null_out())
    result = []
    for mm in processed.all_chain_proxies.all_monomer_mappings:
        missing = getattr(mm, "missing_hydrogen_atoms", None)
        if not missing:
            continue
        names = set(missing)
        atoms = list(mm.expected_atoms.values())
        if not atoms:
            continue
        ag = atoms[0].parent()
        names = {n for n in names if _parent_present(mm, n)}
        names -= _allowed_absent(ag, names)
        names -= _terminal_amine(ag, names)
        if names:
            result.append((residue_label(ag), sorted(names)))
    return result


def _parent_present(mm, h_name):
    """False for an H whose bonded heavy atom is itself absent (a leaving group)."""
    for bond in mm.monomer.bond_list:
        if h_name in (bond.atom_id_1, bond.atom_id_2):
            other = bond.atom_id_2 if bond.atom_id_1 == h_name else bond.atom_id_1
            return other in mm.expected_atoms
    return True


# Names of N-terminal amine H in the libraries and force fields models come
# from (PDB v3, mon_lib, CHARMM).
TERMINAL_NH = {"H1", "H2", "H3", "HN1", "HN2", "HN3", "HT1", "HT2", "HT3"}


def _terminal_amine(ag, names):
    """An N terminus with two or three amine H needs no backbone 'H'; cctbx
    expects one when it does not recognise the terminus (CHARMM's HT1/HT2)."""
    present = {a.name.strip() for a in ag.atoms()}
    if "H" in names and len(present & TERMINAL_NH) >= 2:
        return {"H"}
    return set()


def _allowed_absent(ag, names):
    resname = ag.resname.strip()
    options = {
        "HIS": [{"HD1"}, {"HE2"}],
        "CYS": [{"HG"}],
        "LYS": [{n} for n in ("HZ1", "HZ2", "HZ3")],
        "TYR": [{"HH"}],
    }.get(resname, [])
    for option in options:
        if option <= names:
            return option
    return set()
