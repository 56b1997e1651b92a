"""Ramachandran changes between two models of the same protein (qr.comparama).

``compare_models(before, after)`` classifies every residue with phi/psi in
both models with MolProbity's ramalyze (Top8000 contours: favored >= 2 %,
allowed >= 0.05 % for general residues, 0.2 % for cis-Pro and 0.1 % for the
other categories) and returns a :class:`ComparamaResult`: the residues
whose region changed, the residues found in only one model, per-category
statistics and the Rama-Z scores of both models.  Residues are matched by
chain, residue number, insertion code and altloc.

This builds on ``mmtbx.validation.ramalyze`` (the classification that
``mmtbx.validation.comparama.rcompare`` also uses) rather than on rcompare
itself: rcompare matches residues by walking both result lists in order and
draws six separate pyplot figures, whereas qr.comparama needs an explicit
match that reports the unmatched residues and one figure
(``qrefine.validation.rama_plot``).  The arrow colours are those of
rcompare's defaults.

Nothing here prints or imports matplotlib.
"""

from collections import OrderedDict
import csv
from dataclasses import dataclass, field
import io
import os
from typing import Dict, List, Optional

from libtbx.utils import Sorry, null_out
from mmtbx.validation.ramalyze import ramalyze

from qrefine.errors import QRefineError
from qrefine.model.io import read_model
from qrefine.validation.validator import rama_z_scores

FAVORED, ALLOWED, OUTLIER = "favored", "allowed", "outlier"

# MolProbity's six residue categories, in the order of MolProbity's
# multi-chart, keyed by the mmtbx RAMA_* constants (ramalyze.res_types).
CATEGORY_LABELS = OrderedDict([
    (0, "General"), (5, "Ile/Val"), (4, "pre-Pro"),
    (1, "Gly"), (3, "trans-Pro"), (2, "cis-Pro")])
CATEGORIES = tuple(CATEGORY_LABELS.values())

# Kinds of region change: (key, colour, legend label).
LEFT_OUTLIER = "left_outlier"
BECAME_OUTLIER = "became_outlier"
FAVORED_TO_ALLOWED = "favored_to_allowed"
ALLOWED_TO_FAVORED = "allowed_to_favored"
CHANGE_KINDS = OrderedDict([
    (LEFT_OUTLIER, ("#4fd84f", "left the outlier region")),
    (BECAME_OUTLIER, ("#e8170f", "became an outlier")),
    (FAVORED_TO_ALLOWED, ("#ff9a00", "favored \u2192 allowed")),
    (ALLOWED_TO_FAVORED, ("#0b7a0b", "allowed \u2192 favored")),
])
ONLY_BEFORE, ONLY_AFTER = "only_in_before", "only_in_after"

_REGION_OF_RAMALYZE = {0: OUTLIER, 1: ALLOWED, 2: FAVORED}  # RAMALYZE_* constants


def change_kind(region_before, region_after):
    """The kind of change (a key of CHANGE_KINDS), or None if the region is the same."""
    if region_before == region_after:
        return None
    if region_before == OUTLIER:
        return LEFT_OUTLIER
    if region_after == OUTLIER:
        return BECAME_OUTLIER
    if region_before == FAVORED:
        return FAVORED_TO_ALLOWED
    return ALLOWED_TO_FAVORED


@dataclass(frozen=True)
class RamaResidue:
    """One residue's Ramachandran classification in one model."""

    chain_id: str
    resseq: str      # residue number as in the file, without padding
    icode: str       # insertion code, "" if none
    altloc: str      # "" if none
    resname: str
    category: str    # one of CATEGORIES
    region: str      # FAVORED, ALLOWED or OUTLIER
    phi: float
    psi: float
    score: float     # Top8000 density value at (phi, psi), in percent (ramalyze's score)

    @property
    def key(self):
        return (self.chain_id, self.resseq, self.icode, self.altloc)

    @property
    def label(self):
        """Short id for tables and plots, e.g. ``A 47 MET`` or ``A 47A B:MET``."""
        alt = (self.altloc + ":") if self.altloc else ""
        return "%s %s%s %s%s" % (self.chain_id, self.resseq, self.icode, alt, self.resname)


@dataclass(frozen=True)
class RamaChange:
    """A residue whose Ramachandran region differs between the two models."""

    before: RamaResidue
    after: RamaResidue
    kind: str        # a key of CHANGE_KINDS

    @property
    def colour(self):
        return CHANGE_KINDS[self.kind][0]


@dataclass
class CategoryStats:
    """Counts of one residue category in one model (altloc ''/A only, as ramalyze counts)."""

    category: str
    n: int = 0
    n_favored: int = 0
    n_allowed: int = 0
    n_outliers: int = 0

    @property
    def percent_favored(self):
        return 100.0 * self.n_favored / self.n if self.n else None

    @property
    def percent_allowed(self):
        return 100.0 * self.n_allowed / self.n if self.n else None

    @property
    def percent_outliers(self):
        return 100.0 * self.n_outliers / self.n if self.n else None

    def add(self, region):
        self.n += 1
        if region == FAVORED:
            self.n_favored += 1
        elif region == ALLOWED:
            self.n_allowed += 1
        else:
            self.n_outliers += 1


@dataclass
class ComparamaResult:
    """Everything qr.comparama reports; the plot is drawn from this alone."""

    before_name: str
    after_name: str
    before: List[RamaResidue]
    after: List[RamaResidue]
    moved: List[RamaChange]
    only_before: List[RamaResidue]
    only_after: List[RamaResidue]
    # "all" plus one entry per category, for each model
    stats_before: Dict[str, CategoryStats]
    stats_after: Dict[str, CategoryStats]
    # whole/helix/sheet/loop -> value (None: too few residues or not computed)
    rama_z_before: Dict[str, Optional[float]] = field(default_factory=dict)
    rama_z_after: Dict[str, Optional[float]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def counts(self):
        """{kind: number of moved residues} for every kind in CHANGE_KINDS."""
        out = OrderedDict((k, 0) for k in CHANGE_KINDS)
        for c in self.moved:
            out[c.kind] += 1
        return out

    def moved_in(self, category):
        """Moved residues drawn in a panel: those whose category in ``after`` is ``category``."""
        return [c for c in self.moved if c.after.category == category]

    def as_rows(self):
        """Table rows (dicts with the keys of CSV_COLUMNS): moved residues, then
        residues found in only one of the models."""
        rows = [_row(c.before, c.after, c.kind) for c in self.moved]
        rows += [_row(r, None, ONLY_BEFORE) for r in self.only_before]
        rows += [_row(None, r, ONLY_AFTER) for r in self.only_after]
        return rows

    def as_csv(self):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.as_rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return buf.getvalue()

    def format_table(self):
        """Plain-text report: overall statistics, counts, then the residue table."""
        lines = ["Ramachandran changes: %s -> %s" % (self.before_name, self.after_name), ""]
        lines.append("%-28s %9s %9s" % ("", "before", "after"))
        a, b = self.stats_before["all"], self.stats_after["all"]
        lines.append("%-28s %9d %9d" % ("residues with phi/psi", a.n, b.n))
        for label, attr in (("favored (%)", "percent_favored"),
                            ("allowed (%)", "percent_allowed"),
                            ("outliers (%)", "percent_outliers")):
            lines.append("%-28s %9s %9s" % (label, _fmt(getattr(a, attr)),
                                            _fmt(getattr(b, attr))))
        for part in ("whole", "helix", "sheet", "loop"):
            lines.append("%-28s %9s %9s" % ("Rama-Z " + part, _fmt(self.rama_z_before.get(part)),
                                            _fmt(self.rama_z_after.get(part))))
        lines.append("")
        lines.append("Moved residues: %d" % len(self.moved))
        for kind, n in self.counts().items():
            colour, label = CHANGE_KINDS[kind]
            lines.append("  %-26s %4d  (%s arrows)" % (label, n, _colour_name(kind)))
        lines.append("Residues with phi/psi in only one model: %d in before only, "
                     "%d in after only" % (len(self.only_before), len(self.only_after)))
        lines.append("")
        head = ("residue", "category", "before phi,psi", "region", "after phi,psi", "region",
                "change")
        fmt = "%-16s %-17s %-15s %-8s %-15s %-8s %s"
        lines.append(fmt % head)
        for row in self.as_rows():
            cat_b, cat_a = row["category_before"], row["category_after"]
            if cat_a and cat_b and cat_a != cat_b:
                category = "%s->%s" % (cat_b, cat_a)
            else:
                category = cat_a or cat_b
            lines.append(fmt % (
                row["residue"], category,
                _phipsi(row["phi_before"], row["psi_before"]), row["region_before"] or "-",
                _phipsi(row["phi_after"], row["psi_after"]), row["region_after"] or "-",
                row["change"]))
        if self.notes:
            lines.append("")
            lines.append("Notes:")
            lines.extend("  " + n for n in self.notes)
        return "\n".join(lines) + "\n"


CSV_COLUMNS = ("residue", "chain", "resseq", "icode", "altloc", "resname",
               "category_before", "category_after",
               "phi_before", "psi_before", "region_before", "score_before",
               "phi_after", "psi_after", "region_after", "score_after",
               "change", "colour")


def _row(before, after, kind):
    ref = after if after is not None else before
    row = OrderedDict(
        residue=ref.label, chain=ref.chain_id, resseq=ref.resseq, icode=ref.icode,
        altloc=ref.altloc, resname=ref.resname)
    for tag, r in (("before", before), ("after", after)):
        row["category_" + tag] = r.category if r else None
    for tag, r in (("before", before), ("after", after)):
        row["phi_" + tag] = round(r.phi, 1) if r else None
        row["psi_" + tag] = round(r.psi, 1) if r else None
        row["region_" + tag] = r.region if r else None
        row["score_" + tag] = round(r.score, 2) if r else None
    row["change"] = kind
    row["colour"] = CHANGE_KINDS[kind][0] if kind in CHANGE_KINDS else None
    return row


def _colour_name(kind):
    return {LEFT_OUTLIER: "light green", BECAME_OUTLIER: "red",
            FAVORED_TO_ALLOWED: "orange", ALLOWED_TO_FAVORED: "green"}[kind]


def _fmt(value, fmt="%.2f"):
    return "n/a" if value is None else fmt % value


def _phipsi(phi, psi):
    return "-" if phi is None else "%.1f,%.1f" % (phi, psi)


# --- computing ---------------------------------------------------------------

def ramachandran_residues(hierarchy, name="model", notes=None):
    """Classify every residue with phi/psi in the first model of ``hierarchy``.

    Returns a list of :class:`RamaResidue` in file order.  ``notes`` (a list)
    receives remarks (extra models ignored, duplicate residue ids).
    """
    notes = notes if notes is not None else []
    try:
        rama = ramalyze(pdb_hierarchy=hierarchy, outliers_only=False, out=null_out(),
                        quiet=True)
    except Sorry as e:
        raise QRefineError("Ramachandran analysis of %s failed: %s; is the chemistry data "
                           "installed (qr.setup)?" % (name, str(e).strip().splitlines()[0]))
    models = [m.id for m in hierarchy.models()]
    if len(models) > 1:
        notes.append("%s has %d models; only the first (MODEL %s) is compared"
                     % (name, len(models), models[0].strip() or "1"))
    out, seen = [], set()
    for r in rama.results:
        if r.model_id != models[0]:
            continue
        residue = RamaResidue(
            chain_id=r.chain_id.strip(), resseq=r.resseq.strip(), icode=r.icode.strip(),
            altloc=r.altloc.strip(), resname=r.resname.strip(),
            category=CATEGORY_LABELS[r.res_type],
            region=_REGION_OF_RAMALYZE[r.rama_type],
            phi=float(r.phi), psi=float(r.psi), score=float(r.score))
        if residue.key in seen:
            notes.append("%s: residue %s appears more than once; the first is used"
                         % (name, residue.label))
            continue
        seen.add(residue.key)
        out.append(residue)
    return out


def category_stats(residues):
    """{"all": ..., category: ...} CategoryStats, counting altloc '' or A only
    (as ramalyze does for its percentages)."""
    stats = OrderedDict([("all", CategoryStats("all"))])
    for c in CATEGORIES:
        stats[c] = CategoryStats(c)
    counted = set()
    for r in residues:
        if r.altloc not in ("", "A"):
            continue
        k = r.key[:3]
        if k in counted:
            continue
        counted.add(k)
        stats["all"].add(r.region)
        stats[r.category].add(r.region)
    return stats


def match_residues(before, after):
    """(moved, only_before, only_after) for two lists of RamaResidue.

    Residues are matched by (chain, resseq, icode, altloc); ``moved`` keeps
    the order of ``after``.
    """
    by_key = {r.key: r for r in before}
    after_keys = {r.key for r in after}
    moved = []
    only_after = []
    for a in after:
        b = by_key.get(a.key)
        if b is None:
            only_after.append(a)
            continue
        kind = change_kind(b.region, a.region)
        if kind is not None:
            moved.append(RamaChange(before=b, after=a, kind=kind))
    only_before = [b for b in before if b.key not in after_keys]
    return moved, only_before, only_after


def compare_models(before, after, before_name="before", after_name="after", rama_z=True):
    """Compare two ``mmtbx.model.manager`` objects (restraints not needed).

    ``rama_z=False`` skips the Rama-Z scores (about a second per model).
    """
    notes = []
    res_before = ramachandran_residues(before.get_hierarchy(), before_name, notes)
    res_after = ramachandran_residues(after.get_hierarchy(), after_name, notes)
    for name, residues in ((before_name, res_before), (after_name, res_after)):
        if not residues:
            raise QRefineError("%s has no protein residues with phi/psi (it needs N, CA and C "
                               "of consecutive residues)" % name)
    moved, only_before, only_after = match_residues(res_before, res_after)
    if len(only_before) == len(res_before):
        raise QRefineError("%s and %s share no residues (matched by chain, residue number, "
                           "insertion code and altloc)" % (before_name, after_name))
    result = ComparamaResult(
        before_name=before_name, after_name=after_name,
        before=res_before, after=res_after, moved=moved,
        only_before=only_before, only_after=only_after,
        stats_before=category_stats(res_before), stats_after=category_stats(res_after),
        notes=notes)
    if rama_z:
        result.rama_z_before = rama_z_scores(before)
        result.rama_z_after = rama_z_scores(after)
    else:
        notes.append("Rama-Z not computed (rama_z=False)")
    return result


def compare_files(before_path, after_path, rama_z=True):
    """Read two model files (PDB or mmCIF) and compare them."""
    before = read_model(before_path, make_restraints=False)
    after = read_model(after_path, make_restraints=False)
    return compare_models(before, after, os.path.basename(before_path),
                          os.path.basename(after_path), rama_z=rama_z)


__all__ = ["compare_files", "compare_models", "ramachandran_residues", "match_residues",
           "category_stats", "rama_z_scores", "change_kind", "ComparamaResult",
           "RamaResidue", "RamaChange", "CategoryStats", "CATEGORIES", "CHANGE_KINDS",
           "CSV_COLUMNS", "FAVORED", "ALLOWED", "OUTLIER", "LEFT_OUTLIER",
           "BECAME_OUTLIER", "FAVORED_TO_ALLOWED", "ALLOWED_TO_FAVORED",
           "ONLY_BEFORE", "ONLY_AFTER"]
