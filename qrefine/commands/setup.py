"""qr.setup: install a copy of the cctbx chemistry data, or say where the
one in use is."""

from dataclasses import dataclass

from qrefine.errors import QRefineError
from qrefine.model import chem_data


@dataclass(frozen=True)
class SetupResult:
    path: str
    installed: bool        # False: only located (--check)


def run(source=None, destination=None, check=False):
    if check:
        return SetupResult(path=chem_data.locate(source), installed=False)
    if source is None:
        raise QRefineError("give the source: qr.setup chem_data=<directory|archive|URL>")
    return SetupResult(path=chem_data.install(source, destination), installed=True)
