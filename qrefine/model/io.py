"""Read atomic models (PDB or mmCIF) into an ``mmtbx.model.manager``.

Everything a user can get wrong about a model file ends here as one
:class:`QRefineError` line that names the file (and residue, where known).
"""

import math
import os
import re

import iotbx.cif
import iotbx.pdb
from libtbx.utils import Sorry, null_out
import mmtbx.model
from mmtbx.monomer_library import server
import numpy as np

from qrefine.errors import QRefineError
from qrefine.outputs import coordinates_beyond_pdb


def check_readable(path, what):
    """Raise a one-line error unless ``path`` is a non-empty readable file."""
    if not os.path.exists(path):
        raise QRefineError("%s file %s does not exist" % (what, path))
    if not os.path.isfile(path):
        raise QRefineError("%s file %s is not a regular file" % (what, path))
    if os.path.getsize(path) == 0:
        raise QRefineError("%s file %s is empty" % (what, path))
    if not os.access(path, os.R_OK):
        raise QRefineError("%s file %s is not readable" % (what, path))


def read_restraint_cifs(paths):
    objects = []
    for p in paths or ():
        check_readable(p, "restraints CIF")
        try:
            objects.append((p, iotbx.cif.reader(file_path=p).model()))
        except Exception as e:  # iotbx.cif raises its own CifParserError and others
            raise QRefineError("restraints CIF %s cannot be parsed: %s" % (p, _first_line(e)))
    return objects


def read_model(path, restraint_cifs=(), use_neutron_distances=False,
               make_restraints=True, ramachandran_restraints=False):
    """Read and, by default, process a model with cctbx geometry restraints.

    ``make_restraints=False`` skips restraint generation (for validation of
    models whose ligands have no dictionary, for example).
    """
    check_readable(path, "model")
    try:
        pdb_inp = iotbx.pdb.input(file_name=path)
    except Exception as e:  # iotbx raises Sorry, RuntimeError or CifParserError
        raise QRefineError("model file %s cannot be read as PDB or mmCIF: %s"
                           % (path, _first_line(e)))
    if pdb_inp.atoms().size() == 0:
        raise QRefineError("model file %s contains no atoms" % path)
    xyz = pdb_inp.atoms().extract_xyz().as_double()
    if not all(math.isfinite(v) for v in xyz):
        bad = [a for a in pdb_inp.atoms() if not all(math.isfinite(c) for c in a.xyz)]
        raise QRefineError("model file %s has non-finite coordinates (first: %s); "
                           "fix or remove those atoms" % (path, bad[0].id_str().strip()))
    _check_pdb_range(path, pdb_inp.atoms())
    objects = read_restraint_cifs(restraint_cifs)
    try:
        model = mmtbx.model.manager(model_input=pdb_inp, restraint_objects=objects or None,
                                    log=null_out())
    except Sorry as e:
        raise QRefineError("model file %s: %s" % (path, _first_line(e)))
    if model.get_number_of_atoms() == 0:
        raise QRefineError("model file %s contains no atoms" % path)
    if make_restraints:
        process(model, path, use_neutron_distances, ramachandran_restraints)
    return model


def _check_pdb_range(path, atoms):
    """Refuse coordinates beyond PDB's 8.3f columns (-999.999 to 9999.999).

    mmtbx.model.manager copies a model through PDB text, so an mmCIF model
    with such coordinates would be cut to fewer decimals without a word
    (10000.1234 becomes 10000.12) or, from 1e7 on, fail with an internal
    error.  No real structure lies that far out: it is a broken file or a
    model placed far off the origin.  (A model that only ends up out of range
    is written as mmCIF only: qrefine.outputs.write_model.)
    """
    beyond = coordinates_beyond_pdb(atoms)
    if beyond:
        raise QRefineError("model file %s: coordinates beyond -999.999..9999.999 A, the range "
                           "of the PDB format that cctbx uses internally, in %s; fix those "
                           "coordinates or move the model nearer the origin" % (path, beyond))


def all_occupancies_zero(model):
    """True when no atom has an occupancy above 0 (nothing to fit to data)."""
    occ = model.get_hierarchy().atoms().extract_occ()
    return occ.size() > 0 and max(occ) <= 0


def process(model, path, use_neutron_distances=False, ramachandran_restraints=False):
    """Build cctbx geometry restraints; a residue without them is an error.

    ``ramachandran_restraints`` adds cctbx's Top8000-based (phi, psi)
    restraints, as phenix.real_space_refine does by default.
    """
    p = mmtbx.model.manager.get_default_pdb_interpretation_params()
    p.pdb_interpretation.use_neutron_distances = use_neutron_distances
    p.pdb_interpretation.ramachandran_plot_restraints.enabled = bool(ramachandran_restraints)
    # Keep going on a few long bonds: deposited models often have them, and the
    # minimiser repairs them.  Unknown residues stay fatal.
    p.pdb_interpretation.flip_symmetric_amino_acids = False
    try:
        model.process(make_restraints=True, pdb_interpretation_params=p)
    except Sorry as e:
        text = str(e)
        hint = _unknown_residue_hint(text, model)
        raise QRefineError("model file %s: %s" % (path, hint or _first_line(text)))
    except (RuntimeError, AssertionError) as e:
        raise QRefineError("model file %s: restraints could not be built: %s"
                           % (path, _first_line(e)))


def _unknown_residue_hint(text, model):
    """Name the residues without restraints, which the cctbx message buries."""
    if "unknown" not in text.lower() and "restraints" not in text.lower():
        return ""
    try:
        mon_lib = server.server()
        names = set()
        for rg in model.get_hierarchy().residue_groups():
            for ag in rg.atom_groups():
                if not ag.resname.strip():
                    # A record cut short (a truncated file) has no residue
                    # name, and the list below would name nothing.
                    return ("an atom record with no residue name (chain '%s', residue "
                            "'%s'): the file looks cut mid-line; re-export or repair it"
                            % (rg.parent().id, rg.resid().strip()))
                if mon_lib.get_comp_comp_id_direct(ag.resname.strip()) is None:
                    names.add("%s %s%s" % (ag.resname.strip(), rg.parent().id, rg.resid()))
        if names:
            return ("no restraints for residue(s) %s; supply restraints_cif=<ligand>.cif"
                    % ", ".join(sorted(names)[:5]))
    except Exception:  # the hint is best effort; the cctbx text follows anyway
        pass
    return ""


def _first_line(error):
    """The gist of a (possibly multi-line) cctbx error as one line.

    cctbx puts the location on the first line and the reason on the last
    (with the offending input line and a caret in between).
    """
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) == 1:
        return lines[0]
    # A counted problem ("...symbols: 5") says more than the advice after it.
    counted = [l for l in lines[1:] if re.search(r":\s*\d+\s*$", l)]
    return "%s %s" % (lines[0], counted[0] if counted else lines[-1])


def hydrogen_mask(model):
    """Boolean numpy mask of H/D atoms, in model order."""
    return np.array(model.get_hd_selection(), dtype=bool)
