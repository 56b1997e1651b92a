"""Model validation: geometry, MolProbity metrics, backbone H-bonds.

``validate(model, data_statistics=None, clashscore=True, rama_z=True,
hbonds=True)`` returns one :class:`ValidationResult`; ``validate(model,
**NOT_GATING)`` leaves out what no weight-search gate reads.
"""

from qrefine.validation.result import ValidationResult
from qrefine.validation.validator import NOT_GATING, clashscore, validate

__all__ = ["validate", "clashscore", "ValidationResult", "NOT_GATING"]
