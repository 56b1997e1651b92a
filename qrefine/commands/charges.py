"""qr.charges: the total charge of a model, the residues that carry one and
the electron count checked against a spin multiplicity."""

from dataclasses import dataclass

from qrefine.model import charges
from qrefine.model.io import read_model


@dataclass(frozen=True)
class ChargeReport:
    model_path: str
    residues: tuple        # ResidueCharge per residue
    total_charge: int
    electrons: int
    multiplicity: int

    @property
    def charged(self):
        return [r for r in self.residues if r.charge]

    @property
    def assumed(self):
        """Residues with a note and no charge (their state was assumed)."""
        return [r for r in self.residues if r.note and not r.charge]


def run(model_path, restraint_cifs=(), ligand_charges=None, multiplicity=None):
    """The charge report of ``model_path``; an electron count that does not
    fit ``multiplicity`` (default: closed shell) is a one-line error."""
    # No restraints are built, so the monomer library is not needed.
    model = read_model(model_path, restraint_cifs=list(restraint_cifs), make_restraints=False)
    rows = charges.residue_charges(model, ligand_charges)
    total = sum(r.charge for r in rows)
    n_electrons = charges.electron_count(model, total)
    return ChargeReport(model_path=model_path, residues=tuple(rows), total_charge=total,
                        electrons=n_electrons,
                        multiplicity=charges.check_multiplicity(n_electrons, multiplicity))
