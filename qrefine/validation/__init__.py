"""Model validation: geometry, MolProbity metrics, backbone H-bonds.

``validate(model, data_statistics=None, clashscore=True)`` returns one
:class:`ValidationResult`.
"""

from qrefine.validation.result import ValidationResult
from qrefine.validation.validator import validate

__all__ = ["validate", "ValidationResult"]
