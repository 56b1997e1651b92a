"""Hydrogen atoms: library placement and rotor optimisation (reduce2's halves).

* :func:`place_library_hydrogens` puts every H the monomer library defines
  at its riding position (``mmtbx.hydrogens.reduce_hydrogen.place_hydrogens``,
  the first half of reduce2; terminal H are left to :mod:`termini`).
* :func:`optimise_rotors` turns OH, SH, NH3+ and methyl groups to their best
  probe score (``mmtbx.reduce.Optimizers``, the second half of reduce2),
  without flip movers, so no heavy atom moves.
(Water H: :mod:`water`; the completeness check: :mod:`completeness`.)
"""

import iotbx.phil
from libtbx.utils import null_out
from mmtbx.hydrogens import reduce_hydrogen
from mmtbx.ligands.ready_set_basics import construct_xyz
import mmtbx.model
from mmtbx.programs import reduce2
from mmtbx.reduce import Optimizers

from qrefine.errors import QRefineError
from qrefine.finalise.residues import append_atom, residue_label


def strip_hydrogens(hierarchy):
    """Remove all H/D in place; return how many were removed."""
    n = 0
    for ag in hierarchy.atom_groups():
        for atom in list(ag.atoms()):
            if atom.element_is_hydrogen():
                ag.remove_atom(atom)
                n += 1
    hierarchy.atoms().reset_i_seq()
    return n


def reduce_interpretation_params():
    p = reduce_hydrogen.get_reduce_pdb_interpretation_params(False)
    p.pdb_interpretation.flip_symmetric_amino_acids = False  # never rename heavy atoms
    return p


def make_model(hierarchy, crystal_symmetry, restraint_objects, process=False):
    """A fresh model manager for ``hierarchy`` (processed with reduce's settings)."""
    hierarchy.atoms().reset_i_seq()
    model = mmtbx.model.manager(model_input=None, pdb_hierarchy=hierarchy,
                                crystal_symmetry=crystal_symmetry,
                                restraint_objects=restraint_objects, log=null_out())
    if process:
        model.process(make_restraints=True,
                      pdb_interpretation_params=reduce_interpretation_params())
    return model


def place_library_hydrogens(model):
    """Return (model with riding H, notes).  Existing H are replaced.

    H that cctbx cannot parameterise for riding (typically a ligand hydroxyl
    whose dictionary has no torsion for it) are built from the dictionary's
    bond and angle with an anti torsion, for the rotor optimisation and the
    regularisation to settle.  N-terminal H are left to :mod:`termini`.
    """
    placer = reduce_hydrogen.place_hydrogens(model=model, n_terminal_charge="no_charge",
                                             exclude_water=True, keep_existing_H=False)
    placer.run()
    notes = []
    if placer.no_H_placed_mlq:
        raise QRefineError("no hydrogens could be placed on %s (no restraints); supply "
                           "restraints_cif=" % ", ".join(sorted(set(placer.no_H_placed_mlq))))
    for label, link in placer.sl_removed:
        notes.append("no H on %s (it is in a %s link)" % (label.strip(), link))
    placed = placer.get_model()
    hierarchy = placed.get_hierarchy()
    for atom in hierarchy.atoms():
        # place_hydrogens leaves element symbols left-justified ('N'); restore
        # the PDB form (' N') that file readers give, which probe relies on.
        atom.element = atom.element.strip().upper().rjust(2)
    built = _build_unparameterised(hierarchy, placer.site_labels_no_para,
                                   placed.get_mon_lib_srv())
    if built:
        notes.append("H without a riding torsion built with an anti torsion: %s"
                     % ", ".join(built))
    hierarchy.atoms().reset_i_seq()
    return placed, notes


def _build_unparameterised(hierarchy, labels, mon_lib_srv):
    """Place the H named in place_hydrogens' 'not parameterised' labels."""
    wanted = {}
    for label in labels:
        # ' HO3 GOL C  71 ': atom name (4), residue name (3), chain, resseq+icode
        name, resname, chain, resid = label[0:4].strip(), label[5:8].strip(), \
            label[9:11].strip(), label[11:].strip()
        wanted.setdefault((chain, resname, resid), []).append(name)
    built = []
    for ag in hierarchy.atom_groups():
        rg = ag.parent()
        names = wanted.get((rg.parent().id.strip(), ag.resname.strip(),
                            rg.resseq.strip() + rg.icode.strip()))
        if not names:
            continue
        comp = mon_lib_srv.get_comp_comp_id_direct(ag.resname.strip())
        if comp is None:
            continue
        for name in names:
            if name == "H" and ag.get_atom("CA") is not None:
                continue  # backbone H of a terminal residue: termini.py adds H1-H3
            site = _site_from_dictionary(ag, name, comp, construct_xyz)
            if site is None:
                raise QRefineError("cannot place H %s of residue %s: its dictionary gives no "
                                   "bonded heavy atom with a neighbour" % (name, residue_label(ag)))
            append_atom(ag, name, "H", site, _parent(ag, name, comp))
            built.append("%s %s" % (residue_label(ag), name))
    return built


def _bonded(comp, name):
    out = []
    for b in comp.bond_list:
        if b.atom_id_1 == name:
            out.append((b.atom_id_2, b.value_dist))
        elif b.atom_id_2 == name:
            out.append((b.atom_id_1, b.value_dist))
    return out


def _parent(ag, name, comp):
    for other, _ in _bonded(comp, name):
        if ag.get_atom(other) is not None:
            return ag.get_atom(other)
    return None


def _site_from_dictionary(ag, name, comp, construct_xyz):
    parent = _parent(ag, name, comp)
    if parent is None:
        return None
    length = [d for other, d in _bonded(comp, name) if other == parent.name.strip()][0]
    for second, _ in _bonded(comp, parent.name.strip()):
        a2 = ag.get_atom(second)
        if a2 is None or a2.element_is_hydrogen() or second == name:
            continue
        angle = 109.5
        for a in comp.angle_list:
            if {a.atom_id_1, a.atom_id_3} == {name, second} and a.atom_id_2 == parent.name.strip():
                angle = a.value_angle
        for third, _ in _bonded(comp, second):
            a3 = ag.get_atom(third)
            if a3 is None or a3.element_is_hydrogen() or third == parent.name.strip():
                continue
            return construct_xyz(parent, length, a2, angle, a3, 180.0, period=1)[0]
    return None


def optimise_rotors(model):
    """Optimise rotatable H in place with reduce2's Optimizer (no flips).

    Returns (number of movers, names of H the optimiser removed).
    """
    params = iotbx.phil.parse(reduce2.master_phil_str).extract()
    before = {a.id_str() for a in model.get_hierarchy().atoms() if a.element_is_hydrogen()}
    opt = Optimizers.Optimizer(params.probe, False, model, altID=None,
                               preferenceMagnitude=1.0, nonFlipPreference=0.5,
                               bondedNeighborDepth=params.bonded_neighbor_depth,
                               verbosity=1, fillAtomDump=False)
    info = opt.getInfo()
    movers = sum(1 for line in info.splitlines()
                 if line.strip().startswith(("SingleHydrogenRotator", "NH3Rotator",
                                             "AromaticMethylRotator", "MethylRotator")))
    after = {a.id_str() for a in model.get_hierarchy().atoms() if a.element_is_hydrogen()}
    return movers, sorted(before - after)
