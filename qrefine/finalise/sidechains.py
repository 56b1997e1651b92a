"""Complete truncated side chains of standard amino acids.

cctbx does the building: ``mmtbx.building.extend_sidechains.extend_residue``
substitutes the ideal residue and turns its torsions to follow the atoms that
are present, and the monomer library's rotamer definitions
(``rotamer_iterator``'s torsion tree) set the torsions of the missing part.
Torsions fixed by atoms already present keep their measured values; the free
ones are taken from each library rotamer in turn, and the rotamer whose new
atoms clash least with the rest of the model wins (ties: the most frequent).
Atoms already present are never moved; the new ones are fitted onto them.
"""

import math
from dataclasses import dataclass

import numpy as np
import scitbx.math
import scitbx.math.superpose
from mmtbx.building.extend_sidechains import extend_residue
from mmtbx.monomer_library import idealized_aa
from scitbx.array_family import flex

from qrefine.finalise.checks import missing_heavy_atoms, standard_amino_acids
from qrefine.finalise.residues import append_atom, residue_label

# Closest approach without penalty between a new heavy atom and the rest of
# the model (heavy atoms only: H are added later).  Polar pairs may H-bond.
CONTACT = 3.1
POLAR_CONTACT = 2.6
_ENVIRONMENT_RADIUS = 14.0


@dataclass(frozen=True)
class SidechainCompletion:
    residue: str      # 'LYS A 57'
    added: tuple      # names of the atoms built
    rotamer: str      # library rotamer id, or '' when none applied
    clash: float      # residual clash penalty of the new atoms (A^2)

    def describe(self):
        text = "%s: built %s" % (self.residue, " ".join(self.added))
        if self.rotamer:
            text += " (rotamer %s)" % self.rotamer
        return text


def complete_sidechains(hierarchy, mon_lib_srv):
    """Add missing side-chain atoms in place; return SidechainCompletion list."""
    ideal = idealized_aa.residue_dict()
    todo = []
    for ag in hierarchy.atom_groups():
        if ag.resname.strip() in standard_amino_acids():
            missing = missing_heavy_atoms(ag, mon_lib_srv)
            if missing:
                todo.append(ag)
    done = []
    for ag in todo:
        target = ideal[ag.resname.strip().lower()].only_model().only_chain() \
            .only_residue_group().only_atom_group()
        env_xyz, env_polar = _environment(hierarchy, ag)
        built, rotamer, penalty = _build(ag, target, mon_lib_srv, env_xyz, env_polar)
        ca = ag.get_atom("CA")
        for name, element, xyz in built:
            append_atom(ag, name, element, xyz, ca)
        done.append(SidechainCompletion(residue_label(ag), tuple(n.strip() for n, _, _ in built),
                                        rotamer, round(penalty, 3)))
    hierarchy.atoms().reset_i_seq()
    return done


def _environment(hierarchy, ag):
    """Heavy atoms of the rest of the model near the residue (xyz, polar flags)."""
    centre = np.array(ag.get_atom("CA").xyz)
    xyz, polar = [], []
    atoms = hierarchy.atoms()
    all_xyz = atoms.extract_xyz().as_numpy_array()
    near = np.nonzero(np.linalg.norm(all_xyz - centre, axis=1) < _ENVIRONMENT_RADIUS)[0]
    own_seqs = {a.i_seq for a in ag.atoms()}
    for i in near:
        a = atoms[int(i)]
        if a.i_seq in own_seqs or a.element_is_hydrogen():
            continue
        xyz.append(all_xyz[i])
        polar.append(a.element.strip().upper() in ("N", "O"))
    return np.array(xyz).reshape(-1, 3), np.array(polar, dtype=bool)


def _build(ag, target, mon_lib_srv, env_xyz, env_polar):
    """Return ([(name, element, xyz)] of new atoms, rotamer id, clash penalty)."""
    present = {a.name.strip(): np.array(a.xyz) for a in ag.atoms()}
    new = extend_residue(residue=ag, target_atom_group=target, mon_lib_srv=mon_lib_srv)
    names = [a.name for a in new.atoms()]
    elements = [a.element.strip() for a in new.atoms()]
    new_idx = [i for i, n in enumerate(names) if n.strip() not in present]
    old_idx = [i for i, n in enumerate(names) if n.strip() in present]
    polar_new = np.array([elements[i].upper() in ("N", "O") for i in new_idx], dtype=bool)

    candidates = list(_rotamer_candidates(new, mon_lib_srv, present))
    if not candidates:
        candidates = [("", 0.0, new.atoms().extract_xyz().as_numpy_array())]
    best = None
    for rotamer_id, frequency, sites in candidates:
        placed = _fit_onto(sites, old_idx, [present[names[i].strip()] for i in old_idx])
        xyz = placed[new_idx]
        penalty = _clash_penalty(xyz, polar_new, env_xyz, env_polar)
        key = (round(penalty, 2), -frequency)
        if best is None or key < best[0]:
            best = (key, rotamer_id, xyz, penalty)
    _, rotamer_id, xyz, penalty = best
    built = [(names[i], elements[i], xyz[k]) for k, i in enumerate(new_idx)]
    return built, rotamer_id, penalty


def _rotamer_candidates(new, mon_lib_srv, present):
    """(rotamer id, frequency, sites) with present atoms' torsions kept."""
    atom_names = new.atoms().extract_name()
    it = mon_lib_srv.rotamer_iterator(comp_id=new.resname.strip(), atom_names=atom_names,
                                      sites_cart=new.atoms().extract_xyz())
    if it is None or it.problem_message is not None or it.rotamer_info is None:
        return
    to_pdb = {ml: pdb.strip() for pdb, ml in zip(atom_names, it.mon_lib_atom_names)}
    fixed = {}
    for tor_id, atom_ids in it.rotamer_tor_atom_ids_by_tor_id.items():
        if tor_id not in it.i_q_packed_by_tor_id:
            continue
        pdb_names = [to_pdb.get(a) for a in atom_ids]
        if all(n in present for n in pdb_names):
            fixed[tor_id] = scitbx.math.dihedral_angle(
                sites=[tuple(present[n]) for n in pdb_names], deg=True)
    seen = set()
    for rotamer in it.rotamer_info.rotamer:
        if rotamer.frequency_annotation == "for more uniform sampling":
            continue
        angles = {}
        for tor_id, angle in zip(it.rotamer_info.tor_ids, rotamer.angles):
            if tor_id in fixed:
                angle = fixed[tor_id]
            if tor_id in it.i_q_packed_by_tor_id and angle is not None:
                angles[tor_id] = angle
        key = tuple(sorted((t, round(a)) for t, a in angles.items() if t not in fixed))
        if key in seen:
            continue
        seen.add(key)
        q = flex.double(it.tardy_model.q_packed_size, 0)
        for tor_id, angle in angles.items():
            q[it.i_q_packed_by_tor_id[tor_id]] = math.radians(
                angle - it.angle_start_by_tor_id[tor_id])
        it.tardy_model.unpack_q(q_packed=q)
        yield (rotamer.id, rotamer.frequency or 0.0,
               it.tardy_model.sites_moved().as_numpy_array())


def _fit_onto(sites, idx, reference):
    """``sites`` moved by the rigid fit of sites[idx] onto ``reference``."""
    fit = scitbx.math.superpose.least_squares_fit(
        reference_sites=flex.vec3_double([tuple(r) for r in reference]),
        other_sites=flex.vec3_double([tuple(sites[i]) for i in idx]))
    r = np.array(fit.r).reshape(3, 3)
    t = np.array(fit.t).reshape(3)
    return sites @ r.T + t


def _clash_penalty(xyz, polar, env_xyz, env_polar):
    if len(xyz) == 0 or len(env_xyz) == 0:
        return 0.0
    d = np.linalg.norm(xyz[:, None, :] - env_xyz[None, :, :], axis=2)
    limit = np.where(polar[:, None] & env_polar[None, :], POLAR_CONTACT, CONTACT)
    over = np.clip(limit - d, 0.0, None)
    return float((over ** 2).sum())
