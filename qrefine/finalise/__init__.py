"""qr.finalise: make a model atom-complete for quantum refinement.

``finalise(model, FinaliseOptions(...))`` resolves altlocs, rebuilds truncated
side chains, caps or charges termini and chain breaks, adds every hydrogen
(with protonation states at neutral pH unless overridden) and regularises the
added atoms when they clash; input heavy atoms never move.
``missing_hydrogens(model)`` is the completeness check the QM path needs.
"""

from qrefine.finalise.completeness import missing_hydrogens
from qrefine.finalise.pipeline import finalise, select
from qrefine.finalise.result import FinaliseOptions, FinaliseResult
from qrefine.finalise.protonation import STATES

__all__ = ["finalise", "FinaliseOptions", "FinaliseResult", "missing_hydrogens", "select",
           "STATES"]
