"""Model validation: geometry, MolProbity metrics, backbone H-bonds.

``validate(model, data_statistics=None, clashscore=True)`` returns one
:class:`ValidationResult`.
"""

from qrefine.validation.result import ValidationResult
from qrefine.validation.validator import clashscore, validate

__all__ = ["validate", "clashscore", "ValidationResult"]
