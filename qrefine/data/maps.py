"""Read a cryo-EM map (CCP4/MRC) and check that a model belongs in it.

Frames.  A map file may start anywhere in its unit cell (non-zero
NXSTART/NYSTART/NZSTART, or an MRC2014 ORIGIN).  cctbx's interpolation wants
the first grid point at (0, 0, 0), so :func:`read_map` shifts the map there
(``map_manager.shift_origin``) and keeps the Cartesian shift.  The model is
never moved: a site in the model's (the file's original) frame sits at
``site + shift_cart`` in the map's box frame, and a translation does not
change gradients.  Everything outside this module sees original-frame
coordinates only.
"""

import os
import struct
import warnings

import iotbx.map_manager
from libtbx.utils import null_out
import numpy as np

from qrefine.errors import QRefineError
from qrefine.model.io import check_readable

# A model with more than this fraction of its atoms outside the map box is in
# the wrong frame (or the box was cut too tight): refining it would fit
# wrapped-around or absent density.  A few atoms (a floppy terminus, H on the
# edge) are tolerated; they get no map term beyond the box edge.
MAX_OUTSIDE_FRACTION = 0.01

# Cell lengths (A) and angles (degrees) closer than this count as equal.
_CELL_TOLERANCE = 0.01

# Bytes per value for each MRC data mode (101 is 4-bit, packed per row).
_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}
_HEADER = 1024


class MapData:
    """A map with its origin shifted to (0, 0, 0), and where it came from.

    ``map_manager``: iotbx map_manager (origin (0, 0, 0), values as in the file);
    ``crystal_symmetry``: symmetry of the part present (P1 for a box);
    ``unit_cell_crystal_symmetry``: symmetry of the full cell in the file header;
    ``shift_cart``: add to original-frame sites to get box-frame sites.
    """

    def __init__(self, path, map_manager):
        self.path = path
        self.map_manager = map_manager
        self.shift_cart = np.array(map_manager.shift_cart(), dtype=float)

    @property
    def map_data(self):
        return self.map_manager.map_data()

    @property
    def crystal_symmetry(self):
        return self.map_manager.crystal_symmetry()

    @property
    def unit_cell_crystal_symmetry(self):
        return self.map_manager.unit_cell_crystal_symmetry()

    @property
    def n_real(self):
        return tuple(self.map_data.all())

    def box_frame(self, sites_cart):
        """Original-frame Cartesian sites (N, 3) -> box-frame Cartesian sites."""
        return np.asarray(sites_cart, dtype=float) + self.shift_cart

    def sites_frac(self, sites_cart):
        """Fractional coordinates of original-frame sites in the box (0..1 inside)."""
        frac = np.array(self.crystal_symmetry.unit_cell().fractionalization_matrix()
                        ).reshape(3, 3)
        return self.box_frame(sites_cart) @ frac.T

    def outside_box(self, sites_cart):
        """Boolean mask of sites outside the box (no map values there)."""
        f = self.sites_frac(sites_cart)
        return np.any((f < 0.0) | (f >= 1.0), axis=1)


def read_map(path):
    """Read a CCP4/MRC map; every problem a user can fix is a QRefineError."""
    check_readable(path, "map")
    _check_header(path)
    try:
        # mrcfile warns about odd headers; the reader decides what is fatal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm = iotbx.map_manager.map_manager(file_name=path, log=null_out())
    except Exception as e:  # Sorry, ValueError, struct/IO errors from mrcfile
        raise QRefineError("map file %s cannot be read as a CCP4/MRC map (%s); "
                           "supply an uncompressed, complete .map/.mrc/.ccp4 file"
                           % (path, _reason(e)))
    mm.shift_origin()
    n = tuple(mm.map_data().all())
    # Tricubic interpolation needs 4 points along each axis.
    if min(n) < 4:
        raise QRefineError("map file %s has a %dx%dx%d grid; at least 4 points per "
                           "axis are needed" % ((path,) + n))
    values = mm.map_data().as_numpy_array()
    if not np.all(np.isfinite(values)):
        raise QRefineError("map file %s contains non-finite values (NaN or Inf); "
                           "fix or regenerate the map" % path)
    if float(values.std()) == 0.0:
        raise QRefineError("map file %s has the same value at every grid point; "
                           "it holds no density" % path)
    return MapData(path, mm)


def _check_header(path):
    """Refuse a file whose header cannot describe its contents.

    mrcfile trusts the header's extended-header length, so on a corrupt file
    it tries to read (and allocate) gigabytes before failing; a few numbers
    from the first 1024 bytes settle it at once.
    """
    size = os.path.getsize(path)
    if size < _HEADER:
        raise QRefineError("map file %s is %d bytes, shorter than a CCP4/MRC header; "
                           "supply a complete .map/.mrc/.ccp4 file" % (path, size))
    with open(path, "rb") as f:
        head = f.read(_HEADER)
    for order in "<>":  # either byte order is legal
        nx, ny, nz, mode = struct.unpack(order + "4i", head[:16])
        nsymbt = struct.unpack(order + "i", head[92:96])[0]
        if mode in _MODE_BYTES and min(nx, ny, nz) > 0 and nsymbt >= 0:
            break
    else:
        raise QRefineError("map file %s is not a CCP4/MRC map (its header has no valid "
                           "grid size and data mode); supply an uncompressed "
                           ".map/.mrc/.ccp4 file" % path)
    row = -(-nx // 2) if mode == 101 else nx * _MODE_BYTES[mode]
    need = _HEADER + nsymbt + int(row) * ny * nz
    if size < need:
        raise QRefineError("map file %s is truncated or corrupt: its header describes "
                           "%dx%dx%d values (%d bytes) but the file has %d bytes"
                           % (path, nx, ny, nz, need, size))


def check_model_in_map(model, map_data, path=None,
                       max_outside_fraction=MAX_OUTSIDE_FRACTION):
    """Raise QRefineError unless ``model`` can be refined against ``map_data``.

    Symmetry: the map term never uses the model's cell (sites are Cartesian,
    in the map's frame), so a P1 cell that differs from the map's is accepted:
    that covers models without CRYST1 and the 1x1x1 placeholder, which mmtbx
    replaces by a box around the model.  A non-P1 crystal cell that matches
    neither the map box nor the map's full cell is refused, because the
    restraints would then include symmetry mates that a map does not have.

    Placement: more than ``max_outside_fraction`` of all atoms (H included)
    outside the map box means the model is not in the map's frame.
    """
    path = path or map_data.path
    _check_symmetry(model, map_data, path)
    sites = np.array(model.get_sites_cart())
    outside = map_data.outside_box(sites)
    n_out, n = int(outside.sum()), len(sites)
    if n and n_out > max_outside_fraction * n:
        box = map_data.crystal_symmetry.unit_cell().parameters()[:3]
        lo = -map_data.shift_cart
        raise QRefineError(
            "%d of %d model atoms (%.1f%%) lie outside the box of map file %s "
            "(%.1f x %.1f x %.1f A starting at %.1f, %.1f, %.1f); place the model "
            "in the map's frame or box the map around the model (e.g. phenix.map_box)"
            % ((n_out, n, 100.0 * n_out / n, path) + tuple(box) + tuple(lo)))


def _check_symmetry(model, map_data, path):
    cs = model.crystal_symmetry()
    if cs is None or cs.unit_cell() is None or cs.space_group() is None:
        return
    for ref in (map_data.crystal_symmetry, map_data.unit_cell_crystal_symmetry):
        if ref is not None and cs.is_similar_symmetry(
                ref, absolute_angle_tolerance=_CELL_TOLERANCE,
                absolute_length_tolerance=_CELL_TOLERANCE):
            return
    if cs.space_group().order_z() == 1:
        return
    cell = map_data.crystal_symmetry.unit_cell().parameters()
    raise QRefineError(
        "model crystal symmetry (%s, cell %s) matches neither map file %s nor its "
        "unit cell; for cryo-EM set the model's CRYST1 to the map box "
        "(%.3f %.3f %.3f %.2f %.2f %.2f P 1) or remove it"
        % ((cs.space_group_info(), _fmt_cell(cs.unit_cell().parameters()), path)
           + tuple(cell)))


def _fmt_cell(p):
    return " ".join("%.2f" % v for v in p)


def _reason(error):
    """The useful line of a cctbx/mrcfile error (Sorry wraps it in a banner)."""
    lines = [l.strip().strip("'\"") for l in str(error).splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith("NOTE: WARNING message")]
    return lines[-1] if lines else type(error).__name__
