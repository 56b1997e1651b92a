"""qr.finalise: make a model atom-complete for QM and write it."""

from dataclasses import dataclass
import os

from qrefine.finalise import FinaliseOptions, finalise, select
from qrefine.model import chem_data
from qrefine.model import io as model_io
from qrefine.outputs import write_model


@dataclass(frozen=True)
class FinaliseRun:
    result: object         # qrefine.finalise.result.FinaliseResult
    written: tuple         # the model files written
    notes: tuple           # notes from writing (e.g. mmCIF only)


def run(params, model_path, paths, reporter):
    """Read, select, finalise and write ``model_path``; ``reporter`` gets
    what was read and done."""
    model_io.check_readable(model_path, "model")
    chem = chem_data.activate(params.chem_data)
    model = model_io.read_model(model_path, restraint_cifs=params.restraints_cif,
                                make_restraints=False)
    reporter.info("model: %s (%d atoms, %d H); chemistry data: %s" % (
        model_path, model.get_number_of_atoms(), int(model_io.hydrogen_mask(model).sum()),
        chem))
    model = select(model, params.selection, model_path)
    if params.selection:
        reporter.info("selection %r: %d atoms" % (params.selection, model.get_number_of_atoms()))
    options = FinaliseOptions(
        protonation=tuple(params.finalise.protonation or ()),
        termini_charged=params.finalise.termini == "charged",
        breaks_charged=params.finalise.chain_breaks == "charged")
    result = finalise(model, options, source=model_path, reporter=reporter)
    for line in result.log_lines():
        reporter.info(line)
    notes = tuple(write_model(result.model, paths.pdb, paths.cif))
    written = (paths.cif,) + ((paths.pdb,) if os.path.exists(paths.pdb) and not notes else ())
    return FinaliseRun(result=result, written=written, notes=notes)
