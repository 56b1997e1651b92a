"""qr.comparama: the Ramachandran change between two models, drawn and
tabulated."""

from dataclasses import dataclass
import os

from qrefine.errors import QRefineError
from qrefine.model import chem_data
from qrefine.outputs import write_atomic
from qrefine.validation import comparama, rama_plot


@dataclass(frozen=True)
class ComparamaRun:
    comparison: object     # qrefine.validation.comparama result
    report: str            # the text table
    written: tuple         # image, text report, csv


def output_files(after_path, inputs, prefix=None, directory=".", image_format="png"):
    """(image, table, csv) paths; refuses a prefix with a directory in it and
    any output that would overwrite an input."""
    prefix = prefix or os.path.splitext(os.path.basename(after_path))[0]
    if os.sep in prefix or prefix in (".", ".."):
        raise QRefineError("output.prefix=%s must be a plain name; use output.dir= for the "
                           "directory" % prefix)
    base = os.path.join(os.path.abspath(directory or "."), prefix + "_comparama")
    files = (base + "." + image_format, base + ".txt", base + ".csv")
    real_inputs = {os.path.realpath(p) for p in inputs}
    for p in files:
        if os.path.realpath(p) in real_inputs:
            raise QRefineError("output %s would overwrite an input file; choose another "
                               "output.prefix= or output.dir=" % p)
    return files


def run(before_path, after_path, params):
    """Compare the two models and write the plot, the text table and the CSV."""
    image, table, csv_path = output_files(after_path, [before_path, after_path],
                                          params.output.prefix, params.output.dir,
                                          params.format)
    chem_data.activate(params.chem_data)
    result = comparama.compare_files(before_path, after_path, rama_z=params.rama_z)
    directory = os.path.dirname(image)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise QRefineError("cannot create output directory %s: %s" % (directory, e.strerror))
    if not os.access(directory, os.W_OK):
        raise QRefineError("output directory %s is not writable" % directory)
    rama_plot.write_plot(result, image, format=params.format, labels=params.labels)
    report = result.format_table()
    write_atomic(table, report)
    write_atomic(csv_path, result.as_csv())
    return ComparamaRun(comparison=result, report=report, written=(image, table, csv_path))
