"""qr.finalise as one function: heavy-atom model in, atom-complete model out.

Order of the steps (each its own module):

1. ``checks``       refuse what cannot be handled (naming the residue);
2. ``altlocs``      keep the most occupied conformer, occupancy 1;
3. ``sidechains``   rebuild truncated side chains (rotamers, fewest clashes);
4. ``termini``      OXT at C-termini; chain ends charged, breaks neutral;
5. ``hydrogens``    library H at riding positions, terminal H, protonation
                    states (``protonation``), reduce2 rotor optimisation, water H;
6. ``regularise``   only when added atoms clash (or side chains were built):
                    L-BFGS of the added atoms with the cctbx restraints and a
                    probe-radius contact term, clashscore before and after;
7. checks of the result: input heavy atoms unchanged, no H missing.

No printing: the result (``result.FinaliseResult``) carries what was done,
and its ``log_lines()`` say it.
"""

from libtbx.utils import null_out
import mmtbx.model
import numpy as np
from scitbx.array_family import flex

from qrefine.errors import QRefineError
from qrefine.finalise import (altlocs, checks, completeness, hydrogens, protonation, regularise,
                              sidechains, termini, water)
from qrefine.finalise.residues import atom_key, residue_label, restore_swapped_names
from qrefine.finalise.result import FinaliseOptions, FinaliseResult
from qrefine.model import io as model_io
from qrefine.model.charges import total_charge
from qrefine.validation import clashscore


def select(model, selection, path):
    """The sub-model for a cctbx atom selection (one-line error if invalid/empty)."""
    if not selection:
        return model
    try:
        mask = model.selection(selection)
    except Exception as e:  # cctbx raises Sorry/RuntimeError for bad syntax
        raise QRefineError("selection=%r is not a valid atom selection: %s"
                           % (selection, " ".join(str(e).split())[:200]))
    if mask.count(True) == 0:
        raise QRefineError("selection=%r selects no atoms of %s" % (selection, path))
    return model.select(mask)


def finalise(model, options=FinaliseOptions(), source="model", reporter=None):
    """Return a FinaliseResult whose ``model`` is atom-complete.

    ``model`` (an ``mmtbx.model.manager``, read without restraints, with any
    restraints CIFs attached) is not modified.  ``source`` names it in errors;
    ``reporter`` (a :class:`qrefine.log.Reporter`, optional) shows progress.
    """
    overrides = protonation.parse_overrides(options.protonation)
    restraint_objects = model.get_restraint_objects()
    symmetry = model.crystal_symmetry()
    hierarchy = model.get_hierarchy().deep_copy()
    result = FinaliseResult(model=None)

    _progress(reporter, "checking the model")
    mon_lib_srv = _prepare(hierarchy, symmetry, restraint_objects, overrides, source, result)
    fixed = _heavy_sites(hierarchy)
    _progress(reporter, "completing side chains and termini")
    _complete_heavy_atoms(hierarchy, mon_lib_srv, options, result)
    _progress(reporter, "adding hydrogens")
    hierarchy, box = _add_hydrogens(hierarchy, symmetry, restraint_objects, fixed, overrides,
                                    reporter, result)
    _progress(reporter, "checking clashes of the added atoms")
    work = hydrogens.make_model(hierarchy, box, restraint_objects)
    model_io.process(work, source)
    _regularise_if_needed(work, _movable(work.get_hierarchy(), fixed), options, reporter,
                          result)
    _progress(reporter, "checking the result")
    _finish(work, fixed, symmetry, restraint_objects, source, result)
    return result


def _prepare(hierarchy, symmetry, restraint_objects, overrides, source, result):
    """Refusals, one conformer, no H.  Returns the monomer library server."""
    checks.check_model_shape(hierarchy, source)
    result.altlocs = altlocs.resolve_altlocs(hierarchy)
    work = hydrogens.make_model(hierarchy, symmetry, restraint_objects)
    mon_lib_srv = _library(work, restraint_objects)
    result.notes.extend(checks.check_residues(hierarchy, mon_lib_srv, source))
    checks.check_special_positions(hierarchy, symmetry, source)
    protonation.check_overrides(hierarchy, overrides)
    result.hydrogens_removed = hydrogens.strip_hydrogens(hierarchy)
    return mon_lib_srv


def _complete_heavy_atoms(hierarchy, mon_lib_srv, options, result):
    """Side chains, and OXT on every C-terminus (their H come later)."""
    result.sidechains = sidechains.complete_sidechains(hierarchy, mon_lib_srv)
    found = termini.find_termini(hierarchy, options.termini_charged, options.breaks_charged)
    for ag, terminus in found:
        if terminus.end == "C":
            termini.add_c_terminal_atoms(ag, charged=True)
    result.termini = [t for _, t in found]
    hierarchy.atoms().reset_i_seq()


def _add_hydrogens(hierarchy, symmetry, restraint_objects, fixed, overrides, reporter, result):
    """Library H, terminal H, protonation states, rotors, water H.

    Returns (hierarchy, crystal symmetry used: a box around the model when it
    has none, as cctbx H placement needs a unit cell; the model is not moved).
    """
    work = hydrogens.make_model(hierarchy, symmetry, restraint_objects)
    work.add_crystal_symmetry_if_necessary()
    box = work.crystal_symmetry()
    _library(work, restraint_objects)  # place_hydrogens looks ligands up there
    work, notes = hydrogens.place_library_hydrogens(work)
    result.notes.extend(notes)
    hierarchy = work.get_hierarchy()
    # place_hydrogens lets cctbx rename symmetric side-chain atoms (NH1/NH2...).
    restore_swapped_names(hierarchy, fixed)
    by_label = {residue_label(ag): ag for ag in hierarchy.atom_groups()}
    for terminus in result.termini:
        ag = by_label[terminus.residue]
        if terminus.end == "N":
            termini.add_n_terminal_hydrogens(ag, terminus.charged)
        else:
            termini.add_c_terminal_atoms(ag, terminus.charged)
    hierarchy.atoms().reset_i_seq()
    assignments = protonation.assign_states(hierarchy, overrides)
    protonation.apply_states(assignments)
    result.protonation = [a for _, a in assignments.values()]

    _progress(reporter, "optimising rotatable hydrogens (reduce2)")
    work = hydrogens.make_model(hierarchy, box, restraint_objects, process=True)
    result.rotors_optimised, removed = hydrogens.optimise_rotors(work)
    if removed:
        result.notes.append("reduce2 removed H bound to metal ions: %s" % ", ".join(removed))
    hierarchy = work.get_hierarchy()
    result.n_water_hydrogens = water.add_water_hydrogens(hierarchy)
    return hierarchy, box


def _regularise_if_needed(work, movable, options, reporter, result):
    """Regularise the added atoms when they clash or side chains were built."""
    _round_sites(work, movable)
    clashes = regularise.clashes_involving(work, movable)
    result.clashing_added_atoms = len({i for i, j, _ in clashes if movable[i]}
                                      | {j for i, j, _ in clashes if movable[j]})
    if not clashes and not result.sidechains:
        result.clashscore_after = _clashscore(work, options)
        return
    _progress(reporter, "regularising the added atoms")
    before_sites = work.get_sites_cart().deep_copy()
    result.clashscore_before = _clashscore(work, options)
    result.regularisation = regularise.regularise(work, movable)
    _round_sites(work, movable)
    result.clashscore_after = _clashscore(work, options)
    if (result.clashscore_before is not None and result.clashscore_after is not None
            and result.clashscore_after > result.clashscore_before + 1e-6):
        work.set_sites_cart(before_sites)
        result.notes.append("regularisation raised the clashscore; the unregularised "
                            "added atoms were kept")
        result.clashscore_after = result.clashscore_before


def _finish(work, fixed, symmetry, restraint_objects, source, result):
    """The output model (original symmetry), with the final checks."""
    hierarchy = work.get_hierarchy().deep_copy()
    for atom in hierarchy.atoms():
        # cctbx processing leaves 'N' and '' here; files read back give ' N', '  '.
        atom.element = atom.element.strip().upper().rjust(2)
        atom.charge = atom.charge.strip().rjust(2)
    _check_fixed(hierarchy, fixed)
    missing = completeness.missing_hydrogens(work)
    if missing:
        label, names = missing[0]
        raise QRefineError("%s: qr.finalise could not add H %s to residue %s (%d residues "
                           "affected); check its restraints" % (source, " ".join(names), label,
                                                                len(missing)))
    result.model = mmtbx.model.manager(model_input=None, pdb_hierarchy=hierarchy,
                                       crystal_symmetry=symmetry,
                                       restraint_objects=restraint_objects, log=null_out())
    result.n_hydrogens = sum(1 for a in hierarchy.atoms() if a.element_is_hydrogen())
    result.total_charge = int(total_charge(result.model))


def _progress(reporter, text):
    if reporter is not None:
        reporter.progress(text)


def _library(model, restraint_objects):
    """The model's monomer library server with the restraints CIFs loaded."""
    srv = model.get_mon_lib_srv()
    for name, cif_object in restraint_objects or ():
        srv.process_cif_object(cif_object=cif_object, file_name=name)
    return srv


def _heavy_sites(hierarchy):
    return {atom_key(a): a.xyz for a in hierarchy.atoms() if not a.element_is_hydrogen()}


def _movable(hierarchy, fixed):
    return np.array([atom_key(a) not in fixed for a in hierarchy.atoms()], dtype=bool)


def _check_fixed(hierarchy, fixed):
    """Every input heavy atom is present with its coordinates untouched."""
    now = {atom_key(a): a.xyz for a in hierarchy.atoms()}
    for key, xyz in fixed.items():
        if key not in now:
            raise RuntimeError("finalise lost input atom %s" % (key,))
        if max(abs(a - b) for a, b in zip(now[key], xyz)) > 1e-6:
            raise RuntimeError("finalise moved input atom %s" % (key,))


def _round_sites(model, movable):
    """Added atoms at the precision of the written files (0.001 A), so the
    clashscores reported are those of the written model."""
    sites = model.get_sites_cart().as_numpy_array()
    sites[movable] = np.round(sites[movable], 3)
    model.set_sites_cart(flex.vec3_double(sites))


def _clashscore(model, options):
    if not options.clashscore:
        return None
    return clashscore(model)

