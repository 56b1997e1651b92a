"""validate(model) -> ValidationResult.

Everything is recomputed from the model's current coordinates on each call
(callers update them with ``model.set_sites_cart`` between calls).  Only
static reference data (the Rama-Z table, a monomer-library server) is cached.

MolProbity pieces used (all inside cctbx-base, no external programs):
ramalyze, rotalyze, cbetadev, rama_z, and for the clashscore the probe2-based
``mmtbx.validation.clashscore2`` machinery, run on the model's own H atoms
(never reduce2, which would need the PDB chemical components).
"""

import contextlib
import os
import threading
import weakref

from iotbx.data_manager import DataManager
import iotbx.pdb
import libtbx
from libtbx import easy_pickle
import libtbx.load_env  # noqa: F401  (creates libtbx.env)
from libtbx.utils import Sorry, null_out
import mmtbx.model
from mmtbx.rotamer import rotamer_eval
from mmtbx.validation import cbetadev, rama_z
from mmtbx.validation.clashscore2 import probe_clashscore_manager
from mmtbx.validation.ramalyze import ramalyze
from mmtbx.validation.rotalyze import rotalyze
import numpy as np
from scipy.spatial import cKDTree
from scitbx.array_family import flex

from qrefine.errors import QRefineError
from qrefine.model import cdl
from qrefine.validation.hbonds import count_backbone_hbonds
from qrefine.validation.result import ValidationResult

DATA_KEYS = ("cc_mask", "fsc_avg", "r_work", "r_free")


# What a weight trial's validation leaves out: no gate watches them (see
# qrefine.weights.search.MONITORED and the bond/angle limits).
NOT_GATING = {"rama_z": False, "hbonds": False}


def validate(model, data_statistics=None, clashscore=True, rama_z=True, hbonds=True):
    """Validate an ``mmtbx.model.manager`` (processed, with restraints).

    ``data_statistics``: optional dict with any of ``cc_mask``, ``fsc_avg``, ``r_work``,
    ``r_free``, copied into the result.  ``clashscore=False`` skips the
    clashscore, the slowest part (seconds; everything else is well under one).
    ``rama_z=False`` and ``hbonds=False`` skip those (0.2-0.4 s on 3j63_A),
    as weight trials do (``**NOT_GATING``).
    """
    result = ValidationResult()
    notes = result.notes
    _copy_data_statistics(data_statistics, result)
    hierarchy = model.get_hierarchy()

    result.bond_rmsd, result.angle_rmsd = _geometry_rmsd(model, notes)
    _ramachandran(hierarchy, result)
    if rama_z:
        _rama_z(model, result)
    else:
        notes.append("Rama-Z: not computed (rama_z=False)")
    _rotamer_outliers(hierarchy, result)

    cb = _call(cbetadev.cbetadev, pdb_hierarchy=hierarchy, outliers_only=True,
               out=null_out(), quiet=True)
    if cb.stats.n_results:  # cbetadev leaves n_total at 0
        result.cbeta_deviations = int(cb.n_outliers)
    else:
        notes.append("C-beta deviations: no residues with a C-beta")

    if not hbonds:
        notes.append("hbonds: not computed (hbonds=False)")
    elif model.get_hd_selection().count(True):
        result.hbonds = count_backbone_hbonds(hierarchy)
    else:
        notes.append("hbonds: model has no hydrogens; run qr.finalise")

    if clashscore:
        result.clashscore = _clashscore(model, notes)
    else:
        notes.append("clashscore: not computed (clashscore=False)")
    return result


def _copy_data_statistics(data_statistics, result):
    for key, value in (data_statistics or {}).items():
        if key not in DATA_KEYS:
            # A caller's typo, not a user error.
            raise ValueError("unknown data statistic %r (known: %s)"
                             % (key, ", ".join(DATA_KEYS)))
        setattr(result, key, None if value is None else float(value))


def _call(function, **kwargs):
    """Run a MolProbity analysis; its Sorry (missing rotamer/Ramachandran
    tables, in practice) becomes a QRefineError."""
    try:
        return function(**kwargs)
    except Sorry as e:
        raise QRefineError("%s failed: %s; is the chemistry data installed (qr.setup)?"
                           % (function.__name__, str(e).strip().splitlines()[0]))


def _geometry_rmsd(model, notes):
    """Bond and angle RMSD over restraints between non-H atoms only, with
    the CDL restraints set for the model's current (phi, psi), as a fresh
    reading of the model would have them (:mod:`qrefine.model.cdl`)."""
    if not model.restraints_manager_available():
        notes.append("bond/angle RMSD: model has no geometry restraints")
        return None, None
    heavy = ~model.get_hd_selection()
    grm = model.get_restraints_manager().geometry
    if cdl.uses_cdl(model):
        cdl.refresh(grm, model.get_hierarchy())
    if heavy.count(False):
        grm = grm.select(heavy)
    energies = grm.energies_sites(sites_cart=model.get_sites_cart().select(heavy),
                                  compute_gradients=False)
    # *_deviations() return (min, max, rmsd, n)
    _, _, bond, n_bonds = energies.bond_deviations()
    _, _, angle, n_angles = energies.angle_deviations()
    if not n_bonds:
        notes.append("bond RMSD: no bonds between non-H atoms")
    if not n_angles:
        notes.append("angle RMSD: no angles between non-H atoms")
    return (float(bond) if n_bonds else None), (float(angle) if n_angles else None)


def _ramachandran(hierarchy, result):
    rama = _call(ramalyze, pdb_hierarchy=hierarchy, outliers_only=False)
    if not rama.n_total:
        result.notes.append("Ramachandran: no residues with phi/psi")
        return
    result.rama_favored = float(rama.percent_favored)
    result.rama_allowed = float(rama.percent_allowed)
    result.rama_outliers = float(rama.percent_outliers)


# --- static-data caches ------------------------------------------------------
# Two MolProbity tools reload static data on every call, which would dominate
# a validation run repeated after each weight-search trial:
# * rama_z.rama_z() unpickles its Top8000 table and converts it from Python 2
#   (about 1.2 s of its 1.3 s on 3j63);
# * rotalyze() builds a RotamerEval, which parses mon_lib_list.cif for a
#   monomer-library server it never uses here (about 0.4 s) and re-unpickles
#   the rotamer tables whenever no other RotamerEval is alive (they are only
#   weakly cached).  One RotamerEval is kept and reused; it is read-only.
# Neither tool lets us pass the data in, so while it runs the module
# attribute it looks up is swapped for one that returns the cached object.
# The lock keeps concurrent callers from seeing each other's swap.

_PATCH_LOCK = threading.Lock()
_CACHE = {}
_ROTAMER_EVAL = rotamer_eval.RotamerEval


@contextlib.contextmanager
def _swapped(module, name, value):
    with _PATCH_LOCK:
        original = getattr(module, name)
        setattr(module, name, value)
        try:
            yield
        finally:
            setattr(module, name, original)


class _CachedPickle(object):
    """Stands in for libtbx.easy_pickle in rama_z.__init__ (load and
    fix_py2_pickle are all it calls)."""

    def __init__(self, db):
        self._db = db

    def load(self, path):
        return self._db

    @staticmethod
    def fix_py2_pickle(obj):
        return obj


def _rama_z_db():
    if "rama_z" not in _CACHE:
        path = libtbx.env.find_in_repositories(
            relative_path="chem_data/rama_z/top8000_rama_z_dict.pkl", test=os.path.isfile)
        if path is None:
            raise QRefineError("Rama-Z reference table chem_data/rama_z/top8000_rama_z_dict.pkl "
                               "not found; install the chemistry data with qr.setup")
        _CACHE["rama_z"] = easy_pickle.fix_py2_pickle(easy_pickle.load(path))
    return _CACHE["rama_z"]


def rotamer_evaluator():
    """mmtbx's Top8000 rotamer evaluator, loaded once per process."""
    if "rotamer_eval" not in _CACHE:
        try:
            _CACHE["rotamer_eval"] = _ROTAMER_EVAL(data_version="8000")
        except Sorry as e:
            raise QRefineError("rotamer data could not be loaded (%s); install the chemistry "
                               "data with qr.setup" % str(e).strip().splitlines()[0])
    return _CACHE["rotamer_eval"]


def _rotamer_evaluator():
    evaluator = rotamer_evaluator()

    def factory(data_version="8000", **kwargs):
        assert data_version == "8000" and not kwargs, (data_version, kwargs)
        return evaluator
    return factory


def _rotamer_outliers(hierarchy, result):
    factory = _rotamer_evaluator()
    with _swapped(rotamer_eval, "RotamerEval", factory):
        rota = _call(rotalyze, pdb_hierarchy=hierarchy, outliers_only=False)
    if rota.n_total:
        result.rotamer_outliers = float(rota.percent_outliers)
    else:
        result.notes.append("rotamer outliers: no residues with rotamers")


def rama_z_scores(model):
    """{whole, helix, sheet, loop: Rama-Z or None} of an mmtbx.model.manager,
    with the reference table cached across calls."""
    result = ValidationResult()
    _rama_z(model, result)
    return {p: getattr(result, "rama_z_" + p) for p in ("whole", "helix", "sheet", "loop")}


def _rama_z(model, result):
    with _swapped(rama_z, "easy_pickle", _CachedPickle(_rama_z_db())):
        rz = rama_z.rama_z(models=[model], log=null_out())
    res = rz.get_result()
    for part in ("whole", "helix", "sheet", "loop"):
        value = getattr(res, part).value
        setattr(result, "rama_z_" + part, None if value is None else float(value))
    missing = [p for p in ("whole", "helix", "sheet", "loop")
               if getattr(res, p).value is None]
    if missing:
        result.notes.append("Rama-Z %s: too few residues (%s)" % (
            "/".join(missing),
            ", ".join("%s %d" % (p, getattr(res, p).n) for p in missing)))


# --- clashscore -------------------------------------------------------------

def clashscore(model):
    """Clashscore alone (None without H), for callers that need no other metric."""
    return _clashscore(model, [])


def _clashscore(model, notes):
    """MolProbity clashscore (clashes >= 0.4 A per 1000 atoms) via probe2.

    Needs explicit H.  probe2 re-processes the model it is given (new
    restraints with its own interpretation parameters), so it gets a
    manager built from a copy of the hierarchy and never the caller's model
    (kept for the next call on the same model: :func:`_probe_model`).
    """

    if not model.get_hd_selection().count(True):
        notes.append("clashscore: model has no hydrogens; run qr.finalise")
        return None
    copy, occupancies, nuclear = _probe_model(model, notes)
    # fast + condensed: only the number, one probe2 pass instead of two;
    # same clashscore as the full run (45.96 on 3j63).
    manager = probe_clashscore_manager(
        fast=True, condensed_probe=True, nuclear=nuclear,
        largest_occupancy=max(occupancies) if len(occupancies) else 1.0)
    candidates = _clash_candidates(copy)
    if candidates is not None and not candidates.any():
        return 0.0  # no two atoms close enough to clash: probe2 would count none
    try:
        with _sources_limited_to(copy, candidates):
            manager.run_probe_clashscore(DataManager(), copy)
    except Sorry as e:
        _PROBE_MODELS.pop(model, None)
        notes.append("clashscore: probe2 failed: %s" % str(e).strip().splitlines()[0])
        return None
    # probe2 processed the copy (restraints, from the monomer library: 1.3 s
    # of its 4 s on 3j63_A); later calls on this model, a weight search's
    # trials, only move its atoms, so the topology is reused.
    copy.process = _already_processed
    return None if manager.clashscore is None else float(manager.clashscore)


# --- clash candidates: probe2's dots only where a clash is possible ------------
# probe2 puts dots on every source atom and scores each against its
# neighbours, in Python (about 2 s on 3j63_A's 1436 atoms, per call).  A dot
# of atom i lies on i's van der Waals sphere, so its overlap with atom j is
# at most r_i + r_j - d_ij, and a clash (overlap >= 0.4 A) needs
# d_ij <= r_i + r_j - 0.4.  probe2 ignores atoms up to three bonds apart
# (four with an H).  Atoms with no partner that close, other than those,
# can be the source of no clash dot and of no H-bond that would cancel one
# (an H-bond pair is that close too), so the count is the same when probe2
# takes only the others as sources (all atoms remain targets).  A weight
# trial's model has few such atoms, often none.  The radii are probe2's
# own (the processed copy's van der Waals radii, its 1.65 A carbonyl C and
# 1.05 A polar H, ionic radii), each raised by CLASH_MARGIN.

CLASH_OVERLAP = 0.4
CLASH_MARGIN = 0.2   # A added to every radius: the filter keeps more atoms, never fewer


def _clash_candidates(copy):
    """Boolean mask of ``copy``'s atoms that could take part in a clash, or
    None when that cannot be told (the copy is not processed yet: probe2
    runs in full)."""
    info = _CANDIDATE_INFO.get(copy)
    if info is None:
        if not copy.restraints_manager_available():
            return None
        info = _candidate_info(copy)
        _CANDIDATE_INFO[copy] = info
    if info is False:
        return None
    radii, near_in_bonds, paths = info
    xyz = copy.get_sites_cart().as_numpy_array()
    # probe2 follows bonds only through atoms within r_a + r_n + 2 x probe
    # radius of the atom a: where an atom one or two bonds from a is further
    # than r_a + r_n (these radii are at most 0.25 A above probe2's), a torn
    # model, probe2 may score pairs up to three bonds apart, so a's bonded
    # pairs stay candidates.
    trusted = np.ones(len(xyz), dtype=bool)
    if len(paths):
        a, n = paths[:, 0], paths[:, 1]
        torn = np.sqrt(((xyz[a] - xyz[n]) ** 2).sum(axis=1)) > radii[a] + radii[n]
        trusted[a[torn]] = False
    reach = radii + CLASH_MARGIN
    pairs = cKDTree(xyz).query_pairs(2 * reach.max() - CLASH_OVERLAP, output_type="ndarray")
    mask = np.zeros(len(xyz), dtype=bool)
    if not len(pairs):
        return mask
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.sqrt(((xyz[i] - xyz[j]) ** 2).sum(axis=1))
    close = d <= reach[i] + reach[j] - CLASH_OVERLAP
    for a, b in zip(i[close].tolist(), j[close].tolist()):
        if b not in near_in_bonds[a] or not (trusted[a] and trusted[b]):
            mask[a] = mask[b] = True
    return mask


def _candidate_info(copy):
    """(probe2's radius of each atom, the atoms within three bonds of each,
    the (atom, atom one or two bonds away) pairs as an (n, 2) array) for a
    processed copy; False when an atom's radius is unknown."""
    atoms = copy.get_hierarchy().atoms()
    n = atoms.size()
    radii = np.zeros(n)
    try:
        for i, a in enumerate(atoms):
            r = copy.get_specific_vdw_radius(i, False)
            if a.element_is_ion():
                r = max(r, copy.get_specific_ion_radius(i))
            if a.element.strip().upper() == "C":
                r = max(r, 1.65)
            if a.element_is_hydrogen():
                r = max(r, 1.05)
            radii[i] = r
    except Exception:  # a radius the monomer library lacks: no filter
        return False
    if not (radii > 0).all():
        return False
    bonded = [set() for _ in range(n)]
    grm = copy.get_restraints_manager().geometry
    simple, asu = grm.get_all_bond_proxies(sites_cart=copy.get_sites_cart())
    for p in simple:
        a, b = p.i_seqs
        bonded[a].add(b)
        bonded[b].add(a)
    for p in asu:
        bonded[p.i_seq].add(p.j_seq)
        bonded[p.j_seq].add(p.i_seq)
    # within three bonds: probe2 never scores such a pair (it goes to four
    # bonds where an H is one end; three is the safe side of that)
    near, paths = [], []
    for i in range(n):
        shell, seen = {i}, {i}
        for depth in range(3):
            if depth == 2:  # the atoms probe2 must pass to reach a third-bond one
                paths.extend((i, k) for k in sorted(seen - {i}))
            shell = {k for s in shell for k in bonded[s]} - seen
            seen |= shell
        seen.discard(i)
        near.append(seen)
    return radii, near, np.array(paths, dtype=int).reshape(-1, 2)


@contextlib.contextmanager
def _sources_limited_to(copy, mask):
    """While probe2 runs on ``copy``, its source selection (clashscore2's
    "(occupancy > f) and not water") also requires ``mask``; other
    selections are left alone.  ``mask`` None: nothing changes."""
    if mask is None:
        yield
        return
    original = copy.selection
    keep = flex.bool(mask.tolist())

    def selection(string, *args, **kwargs):
        sel = original(string, *args, **kwargs)
        if "not water" in string and "occupancy" in string:
            sel = sel & keep
        return sel
    copy.selection = selection
    try:
        yield
    finally:
        del copy.selection


# copy -> _candidate_info(copy) (False: no filter)
_CANDIDATE_INFO = weakref.WeakKeyDictionary()

# model -> (probe2's processed copy, the atoms' signature): see _probe_model.
_PROBE_MODELS = weakref.WeakKeyDictionary()


def _already_processed(*args, **kwargs):
    """A processed copy's ``process``: probe2 calls it on every run."""


# Median C-H length (A) above which a model's H sit at nuclear positions:
# riding H of X-ray and cryo-EM refinement sit at the electron cloud (C-H
# 0.97, N-H 0.86), QM-optimised ones at the nuclei (GFN1-xTB 1.09, 1.01).
NUCLEAR_CH = 1.03


def h_at_nuclear_distances(model):
    """Whether the model's H sit at nuclear distances from their C atoms.

    MolProbity scores clashes with van der Waals radii that belong to where
    the H are: electron-cloud H (and radii) for X-ray and cryo-EM models,
    nuclear H (and the smaller nuclear radii) for neutron and QM models.
    Probing nuclear H with electron-cloud radii counts overlaps that are
    only the longer X-H bond: Q|R's TeraChem 3j63_A model scores 6.27 that
    way and 0.00 with nuclear radii (published: 0.7), the start model, whose
    H ride at 0.97 A, 45.96 with the right radii and 36.21 with the wrong."""
    atoms = model.get_hierarchy().atoms()
    elements = np.array([e.strip().upper() for e in atoms.extract_element()])
    is_h = np.isin(elements, ("H", "D"))
    if not is_h.any() or is_h.all():
        return False
    xyz = atoms.extract_xyz().as_numpy_array()
    heavy = np.flatnonzero(~is_h)
    distance, nearest = cKDTree(xyz[heavy]).query(xyz[is_h])
    on_carbon = (elements[heavy[nearest]] == "C") & (distance < 1.3)
    return bool(on_carbon.any() and np.median(distance[on_carbon]) > NUCLEAR_CH)


def _probe_model(model, notes):
    """(copy of ``model`` for probe2, occupancies, nuclear?).  The copy made
    for a model is kept while the model lives and gets the model's sites on
    later calls, so probe2's restraint processing runs once per model, not
    once per weight trial; atoms added or removed, or H that moved between
    electron-cloud and nuclear distances, make a new copy.

    nuclear: neutron distances asked for, or H at nuclear distances
    (:func:`h_at_nuclear_distances`)."""
    nuclear = bool(model.get_current_pdb_interpretation_params()
                   .pdb_interpretation.use_neutron_distances) or h_at_nuclear_distances(model)
    if nuclear:
        notes.append("clashscore: nuclear van der Waals radii (the H sit at nuclear "
                     "distances)")
    kept = _PROBE_MODELS.get(model)
    hierarchy = model.get_hierarchy()
    first = hierarchy.models()[0] if hierarchy.models_size() > 1 else hierarchy
    if hierarchy.models_size() > 1:
        notes.append("clashscore: computed for the first of %d models"
                     % hierarchy.models_size())
    atoms = first.atoms()
    # which atoms, not where: names, residues, elements and occupancies;
    # and the radii probe2 processed the copy with
    signature = hash((tuple(a.id_str() for a in atoms), tuple(atoms.extract_element()),
                      tuple(atoms.extract_occ()), nuclear))
    if kept is not None and kept[1] == signature:
        copy = kept[0]
        copy.set_sites_cart(atoms.extract_xyz())
        return copy, copy.get_hierarchy().atoms().extract_occ(), nuclear
    copy = _fresh_probe_model(model)
    _PROBE_MODELS[model] = (copy, signature)
    return copy, copy.get_hierarchy().atoms().extract_occ(), nuclear


def _fresh_probe_model(model):
    hierarchy = model.get_hierarchy()
    if hierarchy.models_size() > 1:
        root = iotbx.pdb.hierarchy.root()
        root.append_model(hierarchy.models()[0].detached_copy())
    else:
        root = hierarchy.deep_copy()
    copy = mmtbx.model.manager(
        model_input=None, pdb_hierarchy=root,
        crystal_symmetry=model.crystal_symmetry(),
        restraint_objects=model.get_restraint_objects(),
        monomer_parameters=model.get_monomer_parameters(),
        stop_for_unknowns=False, log=null_out())
    copy.add_crystal_symmetry_if_necessary()
    return copy
