"""Where the benchmarks find ../shared/data, and how they read a model."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.abspath(os.environ.get("QREFINE_TEST_DATA",
                                      os.path.join(HERE, "..", "..", "shared", "data")))


def read_model(relative_path):
    """An mmtbx model (no restraints) of ``DATA/relative_path``, with the
    chemistry data of ../shared/data registered."""
    import qrefine  # noqa: F401  (loads cctbx first)
    from qrefine.model import chem_data
    from qrefine.model import io as model_io
    chem_data.activate(os.path.join(DATA, "chem_data"))
    return model_io.read_model(os.path.join(DATA, relative_path), make_restraints=False)
