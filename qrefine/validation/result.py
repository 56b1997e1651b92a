"""The typed outcome of one validation run, and its log table."""

import math
from dataclasses import dataclass, field
from typing import List, Optional

# JSON keys of ValidationResult.as_dict(), in order.
FIELDS = ("bond_rmsd", "angle_rmsd", "rama_favored", "rama_allowed", "rama_outliers",
          "rama_z_whole", "rama_z_helix", "rama_z_sheet", "rama_z_loop",
          "rotamer_outliers", "cbeta_deviations", "clashscore", "hbonds",
          "cc_mask", "fsc_avg", "r_work", "r_free", "notes")

_INT_FIELDS = ("cbeta_deviations", "hbonds")

# (field, label, format) for the log table.  Rows whose values are all None
# are dropped for the data metrics only: an X-ray run has no CC_mask and a
# cryo-EM run no R factors, whereas a missing model metric deserves a "n/a".
_ROWS = (
    ("bond_rmsd", "Bond RMSD (A, non-H)", "%.4f"),
    ("angle_rmsd", "Angle RMSD (deg, non-H)", "%.3f"),
    ("rama_favored", "Ramachandran favored (%)", "%.2f"),
    ("rama_allowed", "Ramachandran allowed (%)", "%.2f"),
    ("rama_outliers", "Ramachandran outliers (%)", "%.2f"),
    ("rama_z_whole", "Rama-Z whole", "%.2f"),
    ("rama_z_helix", "Rama-Z helix", "%.2f"),
    ("rama_z_sheet", "Rama-Z sheet", "%.2f"),
    ("rama_z_loop", "Rama-Z loop", "%.2f"),
    ("rotamer_outliers", "Rotamer outliers (%)", "%.2f"),
    ("cbeta_deviations", "C-beta deviations (>0.25 A)", "%d"),
    ("clashscore", "Clashscore", "%.2f"),
    ("hbonds", "Backbone H-bonds", "%d"),
    ("cc_mask", "CC_mask", "%.4f"),
    ("fsc_avg", "FSC average (model density)", "%.4f"),
    ("r_work", "R_work", "%.4f"),
    ("r_free", "R_free", "%.4f"),
)
_DATA_FIELDS = ("cc_mask", "fsc_avg", "r_work", "r_free")


@dataclass
class ValidationResult:
    """Model-quality metrics; None means "not computed" (``notes`` says why)."""

    bond_rmsd: Optional[float] = None
    angle_rmsd: Optional[float] = None
    rama_favored: Optional[float] = None
    rama_allowed: Optional[float] = None
    rama_outliers: Optional[float] = None
    rama_z_whole: Optional[float] = None
    rama_z_helix: Optional[float] = None
    rama_z_sheet: Optional[float] = None
    rama_z_loop: Optional[float] = None
    rotamer_outliers: Optional[float] = None
    cbeta_deviations: Optional[int] = None
    clashscore: Optional[float] = None
    hbonds: Optional[int] = None
    cc_mask: Optional[float] = None
    fsc_avg: Optional[float] = None
    r_work: Optional[float] = None
    r_free: Optional[float] = None
    notes: List[str] = field(default_factory=list)

    def as_dict(self):
        """Plain, JSON-serialisable dict with exactly the keys in FIELDS.

        Values are plain Python floats/ints (cctbx and numpy scalars are
        converted) and a non-finite float becomes None, since JSON has no NaN.
        """
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            if name == "notes":
                out[name] = [str(n) for n in value]
            else:
                out[name] = _plain(value, integer=name in _INT_FIELDS)
        return out

    def format_table(self, other=None):
        """Plain-text table for the log.

        With ``other`` the table has two columns, this result as "start" and
        ``other`` as "final".  Notes follow the table.
        """
        columns = [self] if other is None else [self, other]
        heads = ["value"] if other is None else ["start", "final"]
        label_w = max(len(label) for _, label, _ in _ROWS)
        col_w = 10
        lines = [" " * label_w + "".join(h.rjust(col_w) for h in heads)]
        for name, label, fmt in _ROWS:
            values = [getattr(c, name) for c in columns]
            if name in _DATA_FIELDS and all(v is None for v in values):
                continue
            cells = ["n/a" if v is None else fmt % v for v in values]
            lines.append(label.ljust(label_w) + "".join(c.rjust(col_w) for c in cells))
        notes = _merge_notes(self.notes, None if other is None else other.notes)
        if notes:
            lines.append("Notes:")
            lines.extend("  " + n for n in notes)
        return "\n".join(lines)


def _plain(value, integer=False):
    if value is None:
        return None
    if integer:
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _merge_notes(start, final):
    """Notes of one result, or of two with "start:"/"final:" prefixes where
    only one of them has the note."""
    if final is None:
        return list(start)
    merged = []
    for n in start:
        merged.append(n if n in final else "start: " + n)
    for n in final:
        if n not in start:
            merged.append("final: " + n)
    return merged
