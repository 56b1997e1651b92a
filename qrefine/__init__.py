"""qrefine: refinement of atomic models against cryo-EM maps and X-ray data
with library (cctbx) or quantum-chemical restraints."""

__version__ = "0.1.0"


def _load_cctbx_first():
    """Load cctbx's compiled core before scipy.linalg and matplotlib.

    The cctbx-base wheel bundles its own, newer libstdc++.  If scipy.linalg or
    matplotlib is already loaded, loading cctbx afterwards crashes
    the interpreter with a segmentation fault.  Importing cctbx here, first,
    makes every entry through qrefine safe; when it is already too late we
    stop with a clear message instead of crashing.
    """
    import sys
    # Modules seen to crash a later cctbx import (scipy 1.17, matplotlib 3.10).
    culprits = [m for m in ("scipy.linalg", "scipy.special", "scipy.spatial", "matplotlib")
                if m in sys.modules]
    if culprits and "scitbx.array_family.flex" not in sys.modules:
        raise ImportError(
            "import qrefine (or cctbx) before %s: loaded the other way round, "
            "the cctbx-base wheel crashes the interpreter" % ", ".join(culprits))
    import scitbx.array_family.flex  # noqa: F401


_load_cctbx_first()
