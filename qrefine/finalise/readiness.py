"""Is a model ready for QM restraints?  Checked before any restraint is
built, each refusal naming the residues and the command that fixes them
(qr.finalise)."""

from qrefine.errors import QRefineError
from qrefine.finalise.altlocs import residues_with_alternatives
from qrefine.finalise.completeness import missing_hydrogens


def require_qm_ready(model, path):
    """One conformer and every H the library expects, else one clear error."""
    require_single_conformer(model, path)
    require_hydrogens(model, path)


def require_single_conformer(model, path):
    """QM computes one molecule: refuse alternate conformations up front,
    naming them.  (The electron count would be of one conformer while the
    engine got both, so no multiplicity= could ever fit.)"""
    residues = ["%s %s%s" % (rg.atom_groups()[0].resname.strip(), rg.parent().id.strip(),
                             rg.resid().strip())
                for rg in residues_with_alternatives(model.get_hierarchy())]
    if residues:
        raise QRefineError("model %s has alternate conformations in %d residue(s) (%s%s); "
                           "QM restraints need one conformer: run qr.finalise %s first, "
                           "which keeps the most occupied one" % (
                               path, len(residues), ", ".join(residues[:3]),
                               ", ..." if len(residues) > 3 else "", path))


def require_hydrogens(model, path):
    """QM needs every H the monomer library expects (with the protonation
    states the model's own H imply): refuse a model that lacks any."""
    hd = model.get_hd_selection()
    if hd.count(True) == 0:
        raise QRefineError("model %s has no hydrogen atoms; QM restraints need a complete "
                           "model: run qr.finalise %s first" % (path, path))
    missing = missing_hydrogens(model)
    if missing:
        label, names = missing[0]
        raise QRefineError("model %s lacks hydrogens in %d residue(s), first %s (%s); QM "
                           "restraints need a complete model: run qr.finalise %s first" % (
                               path, len(missing), label, " ".join(names[:4]), path))
