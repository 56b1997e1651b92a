"""What qr.finalise was asked to do, and what it did (with its log lines)."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class FinaliseOptions:
    protonation: tuple = ()        # 'HIS A 57 = HIE' overrides
    termini_charged: bool = True   # chain ends: NH3+/COO- (else NH2/COOH)
    breaks_charged: bool = False   # chain breaks: neutral NH2/COOH (else charged)
    clashscore: bool = True        # compute probe2 clashscores (seconds)


@dataclass
class FinaliseResult:
    model: object                          # mmtbx.model.manager, atom-complete
    hydrogens_removed: int = 0             # H of the input, replaced
    altlocs: list = field(default_factory=list)      # altlocs.AltlocChoice
    sidechains: list = field(default_factory=list)   # sidechains.SidechainCompletion
    termini: list = field(default_factory=list)      # termini.Terminus
    protonation: list = field(default_factory=list)  # protonation.Assignment
    n_hydrogens: int = 0                   # H in the result
    n_water_hydrogens: int = 0
    rotors_optimised: int = 0
    clashing_added_atoms: int = 0          # before regularisation
    regularisation: Optional[object] = None  # regularise.Regularisation
    clashscore_before: Optional[float] = None
    clashscore_after: Optional[float] = None
    total_charge: Optional[int] = None
    notes: list = field(default_factory=list)

    def log_lines(self):
        lines = []
        if self.hydrogens_removed:
            lines.append("removed %d H of the input (all H are rebuilt)" % self.hydrogens_removed)
        if self.altlocs:
            lines.append("altlocs resolved (%d residues; most occupied conformer kept, "
                         "occupancy set to 1):" % len(self.altlocs))
            lines.extend("  " + a.describe() for a in self.altlocs)
        else:
            lines.append("altlocs: none")
        if self.sidechains:
            lines.append("side chains completed (%d):" % len(self.sidechains))
            lines.extend("  " + s.describe() for s in self.sidechains)
        else:
            lines.append("side chains: all complete")
        lines.append("termini and chain breaks (%d):" % len(self.termini))
        lines.extend("  " + t.describe() for t in self.termini)
        changed = [p for p in self.protonation if p.reason != "default"
                   or p.state in ("HIE", "HID", "HIP", "CYX", "CYM")]
        counts = {}
        for p in self.protonation:
            counts[p.state] = counts.get(p.state, 0) + 1
        lines.append("protonation states: %s" % (", ".join(
            "%s %d" % (k, v) for k, v in sorted(counts.items())) or "no titratable residues"))
        lines.extend("  " + p.describe() for p in changed)
        lines.append("H added: %d (including %d on waters); %d rotatable groups optimised "
                     "(reduce2)" % (self.n_hydrogens, self.n_water_hydrogens,
                                    self.rotors_optimised))
        if self.regularisation is not None:
            r = self.regularisation
            lines.append("regularised %d added atoms (%d clashing): geometry target %.1f -> "
                         "%.1f in %d iterations" % (r.n_movable, self.clashing_added_atoms,
                                                    r.start_target, r.final_target, r.iterations))
            lines.append("clashscore before/after regularisation: %s -> %s"
                         % (_fmt(self.clashscore_before), _fmt(self.clashscore_after)))
        else:
            lines.append("no added atom clashes; no regularisation needed; clashscore %s"
                         % _fmt(self.clashscore_after))
        if self.total_charge is None:
            lines.append("total charge: not computed (qrefine.model.charges is not available)")
        else:
            lines.append("total charge: %+d" % self.total_charge)
        lines.extend("note: " + n for n in self.notes)
        return lines


def _fmt(value):
    return "n/a" if value is None else "%.2f" % value
