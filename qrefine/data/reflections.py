"""Read X-ray reflections (MTZ or mmCIF) into amplitudes plus R-free flags.

``read_reflections`` returns a :class:`ReflectionData` ready for
``mmtbx.f_model.manager``: non-anomalous amplitudes in the asymmetric unit,
merged, without systematic absences, on the model's crystal symmetry, and a
boolean R-free array (True = test set) on exactly the same indices.

Choices (each one recorded in ``notes`` when it changes the data):

* amplitudes are preferred over intensities when a file has both; intensities
  are converted with French-Wilson (as phenix.refine does);
* without a usable R-free array (none, or one single flag value as in
  3dtj.mtz) new flags are generated, 10 % capped at 2000 reflections like
  Phenix, with a fixed seed so reruns agree.  A missing test set is common for
  old depositions, and refusing to run would only push users to make flags
  by hand; the note says R-free is then not an unbiased statistic;
* reflections without an R-free flag are dropped, not guessed.
"""

from dataclasses import dataclass, field
import random
from typing import List, Optional

from cctbx import french_wilson
from cctbx.array_family import flex
from iotbx import reflection_file_reader, reflection_file_utils
from libtbx.utils import null_out

from qrefine.errors import QRefineError
from qrefine.model.io import check_readable

# Beyond these the model and the data describe different crystals.  Within
# them the data are put on the model's cell (coordinates are Cartesian in it).
CELL_LENGTH_TOLERANCE = 0.02   # relative
CELL_ANGLE_TOLERANCE = 2.0     # degrees

FREE_FRACTION = 0.1
MAX_FREE = 2000
FLAG_SEED = 7112


@dataclass
class ReflectionData:
    f_obs: object                  # cctbx.miller.array, real amplitudes
    r_free_flags: object           # cctbx.miller.array, bool, True = test set
    source_labels: str
    r_free_source_label: Optional[str]   # None when the flags were generated
    notes: List[str] = field(default_factory=list)
    path: str = ""


def read_reflections(path, crystal_symmetry, labels=None, r_free_label=None):
    """Read ``path`` and pick the observations and R-free flags.

    ``labels`` names the data ("FOBS,SIGFOBS", "FOBS", "IOBS", or an mmCIF
    item such as "F_meas_au"); ``r_free_label`` names the flags.  Without
    them the best amplitude (else intensity) array and flag array are chosen.
    ``crystal_symmetry`` is the model's; it fills in what the file lacks.
    """
    check_readable(path, "reflection")
    arrays, strip_block = _read_arrays(path, crystal_symmetry)
    notes = []
    data = _select_data(path, arrays, labels, strip_block)
    source_labels = _display(data, strip_block)
    symmetry = _working_symmetry(path, data, crystal_symmetry, notes)
    f_obs = _as_amplitudes(path, data, symmetry, source_labels, notes)
    flags, flag_label = _select_flags(path, arrays, r_free_label, strip_block, notes)
    f_obs, r_free = _match_flags(path, f_obs, flags, flag_label, symmetry, notes)
    if r_free.data().count(False) == 0:
        raise QRefineError("reflection file %s: every reflection is flagged as test set "
                           "in %s; choose another r_free_label" % (path, flag_label))
    return ReflectionData(f_obs=f_obs, r_free_flags=r_free, source_labels=source_labels,
                          r_free_source_label=flag_label, notes=notes, path=path)


def _read_arrays(path, crystal_symmetry):
    try:
        rf = reflection_file_reader.any_reflection_file(file_name=path)
        file_type = rf.file_type()
    except Exception as e:  # binary garbage raises UnicodeDecodeError, others vary
        raise QRefineError("reflection file %s cannot be read (%s); give an MTZ or "
                           "mmCIF reflection file" % (path, type(e).__name__))
    if file_type is None:
        raise QRefineError("%s is not a reflection file cctbx can read; give an MTZ or "
                           "mmCIF reflection file" % path)
    try:
        # force_symmetry=False: the file's own symmetry wins where it has one,
        # the model's only fills the gaps (mmCIF files often lack it).
        arrays = rf.as_miller_arrays(crystal_symmetry=crystal_symmetry,
                                     force_symmetry=False, merge_equivalents=False)
    except Exception as e:
        raise QRefineError("reflection file %s is corrupt or unsupported: %s"
                           % (path, _first_line(e)))
    arrays = [a for a in arrays if a.size() > 0]
    if not arrays:
        raise QRefineError("reflection file %s contains no reflection data" % path)
    # iotbx prefixes mmCIF labels with the data block name.  With one block it
    # is noise in messages; with several it is what tells the arrays apart.
    blocks = {(a.info().labels or [""])[0] for a in arrays}
    return arrays, file_type == "cif" and len(blocks) == 1


# --- choosing the observations -----------------------------------------------

def _select_data(path, arrays, labels, strip_block):
    if labels:
        array = _match_label(path, arrays, labels, strip_block, "labels")
        if not (array.is_xray_amplitude_array() or array.is_xray_intensity_array()):
            raise QRefineError("reflection file %s: %s is not an amplitude or intensity "
                               "array; available: %s"
                               % (path, labels, _available(arrays, strip_block)))
        return array
    ranked = sorted((_data_rank(a), i) for i, a in enumerate(arrays) if _is_obs(a))
    if not ranked:
        raise QRefineError("reflection file %s has no amplitude or intensity array; "
                           "available: %s" % (path, _available(arrays, strip_block)))
    best = [arrays[i] for rank, i in ranked if rank == ranked[0][0]]
    if len(best) > 1:
        raise QRefineError("reflection file %s has several equally suitable data arrays "
                           "(%s); choose one with labels="
                           % (path, "; ".join(_display(a, strip_block) for a in best)))
    return best[0]


def _is_obs(array):
    return (array.is_real_array()
            and (array.is_xray_amplitude_array() or array.is_xray_intensity_array())
            and not array.data().all_eq(0))


def _data_rank(array):
    """Sort key, best first.  (iotbx's prefer_amplitudes scores tie F with I.)"""
    labels = [l.lower() for l in (array.info().labels or [])]
    # phenix.refine output: F-obs-filtered is derived (outliers removed) from the
    # original F-obs/I-obs in the same file, which is the one to refine against.
    derived = any("filtered" in l for l in labels)
    # Amplitudes first: when a file has both, F is what the depositor refined
    # against and needs no French-Wilson guesswork.
    return (derived, not array.is_xray_amplitude_array(),
            not (array.sigmas() is not None and array.sigmas_are_sensible()))


def _match_label(path, arrays, wanted, strip_block, option):
    """Array whose labels include every comma-separated name in ``wanted``."""
    names = [_norm(n) for n in wanted.replace(" ", ",").split(",") if n.strip()]
    hits = []
    for a in arrays:
        own = [_norm(n) for n in _labels(a, strip_block)]
        if all(n in own or n in _norm_all(a) for n in names):
            # exact first-column hit ranks above a partial one (FOBS vs SIGFOBS)
            hits.append((own[0] == names[0], len(own) == len(names), a))
    if not hits:
        raise QRefineError("reflection file %s has no array with %s=%s; available: %s"
                           % (path, option, wanted, _available(arrays, strip_block)))
    hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
    if len(hits) > 1 and hits[0][:2] == hits[1][:2]:
        raise QRefineError("reflection file %s: %s=%s is ambiguous (%s); give more labels"
                           % (path, option, wanted,
                              "; ".join(_display(h[2], strip_block) for h in hits)))
    return hits[0][2]


def _labels(array, strip_block):
    labels = list(array.info().labels or [])
    return labels[1:] if strip_block and len(labels) > 1 else labels


def _norm_all(array):
    return [_norm(n) for n in array.info().labels or []]


def _norm(name):
    name = name.strip().lower()
    return name[len("_refln."):] if name.startswith("_refln.") else name


def _display(array, strip_block):
    return ",".join(_labels(array, strip_block))


def _available(arrays, strip_block):
    return "; ".join(_display(a, strip_block) for a in arrays)


# --- symmetry and conversion ----------------------------------------------------

def _working_symmetry(path, data, model_symmetry, notes):
    """The model's symmetry, after checking the file does not contradict it."""
    file_cs = data.crystal_symmetry()
    model_ok = _complete(model_symmetry)
    if not model_ok:
        if not _complete(file_cs):
            raise QRefineError("neither reflection file %s nor the model defines a unit "
                               "cell and space group; add CRYST1 to the model" % path)
        notes.append("crystal symmetry taken from the reflection file")
        return file_cs
    if not _complete(file_cs):
        return model_symmetry
    if file_cs.space_group() != model_symmetry.space_group():
        raise QRefineError("reflection file %s is in space group %s but the model in %s; "
                           "use data and model of the same crystal form"
                           % (path, file_cs.space_group_info(),
                              model_symmetry.space_group_info()))
    if not file_cs.unit_cell().is_similar_to(model_symmetry.unit_cell(),
                                             CELL_LENGTH_TOLERANCE, CELL_ANGLE_TOLERANCE):
        raise QRefineError("unit cell of reflection file %s (%s) differs from the model's "
                           "(%s); use data and model of the same crystal"
                           % (path, _cell(file_cs), _cell(model_symmetry)))
    if not file_cs.unit_cell().is_similar_to(model_symmetry.unit_cell(), 1e-3, 0.1):
        notes.append("unit cell of the data (%s) replaced by the model's (%s)"
                     % (_cell(file_cs), _cell(model_symmetry)))
    return model_symmetry


def _complete(cs):
    return (cs is not None and cs.unit_cell() is not None
            and cs.space_group_info() is not None)


def _cell(cs):
    return " ".join("%.2f" % p for p in cs.unit_cell().parameters())


def _on_symmetry(array, symmetry):
    """Unique, in-ASU, non-anomalous copy of ``array`` on ``symmetry``."""
    info = array.info()
    array = array.customized_copy(crystal_symmetry=symmetry).map_to_asu()
    if array.anomalous_flag():
        array = array.as_non_anomalous_array()
    array = array.eliminate_sys_absent(integral_only=True)
    return array.set_info(info)


def _as_amplitudes(path, data, symmetry, label, notes):
    is_intensity = data.is_xray_intensity_array()
    was_anomalous = data.anomalous_flag()
    data = _on_symmetry(data, symmetry)
    if data.sigmas() is not None and not data.sigmas_are_sensible():
        data = data.customized_copy(sigmas=None)   # e.g. all-zero SIG columns
    if not data.is_unique_set_under_symmetry():
        data = data.merge_equivalents().array()
        notes.append("symmetry-equivalent or Friedel-related %s merged" % label)
    elif was_anomalous:
        notes.append("Friedel mates of %s merged" % label)
    if is_intensity:
        data = _french_wilson(path, data, label, notes)
    else:
        # F = 0 is mostly an unmeasured reflection written as zero; cctbx's ML
        # target also gives such reflections a gradient but a constant value
        # (35 % gradient error on 1aie, which has 78 of them).
        bad = data.data() <= 0
        if bad.count(True):
            data = data.select(~bad)
            notes.append("%d zero or negative amplitudes in %s dropped"
                         % (bad.count(True), label))
    data.set_observation_type_xray_amplitude()
    if data.size() == 0:
        raise QRefineError("reflection file %s: no usable reflections in %s" % (path, label))
    return data


def _french_wilson(path, i_obs, label, notes):
    if i_obs.sigmas() is None:
        # French-Wilson needs sigmas; sqrt(max(I,0)) is the usual fallback.
        f = i_obs.select(i_obs.data() > 0).f_sq_as_f()
        notes.append("intensities %s converted to amplitudes by sqrt(I) (no sigmas, "
                     "so French-Wilson was not possible); I <= 0 dropped" % label)
        return f
    try:
        f = french_wilson.french_wilson_scale(miller_array=i_obs, log=null_out())
    except Exception as e:  # cctbx raises Sorry/RuntimeError on odd data
        raise QRefineError("reflection file %s: French-Wilson conversion of %s failed (%s); "
                           "supply amplitudes with labels=" % (path, label, _first_line(e)))
    if f is None or f.size() == 0:
        raise QRefineError("reflection file %s: French-Wilson conversion of %s left no "
                           "reflections" % (path, label))
    notes.append("intensities %s converted to amplitudes by French-Wilson" % label)
    return f


# --- R-free flags -----------------------------------------------------------------

def _select_flags(path, arrays, r_free_label, strip_block, notes):
    """(bool miller array or None, source label or None); None = generate."""
    if r_free_label:
        array = _match_label(path, arrays, r_free_label, strip_block, "r_free_label")
        value = reflection_file_utils.guess_r_free_flag_value(array)
        if value is None:
            raise QRefineError("reflection file %s: %s is not a usable R-free array (one "
                               "value, or too many/few test reflections); omit "
                               "r_free_label to generate new flags" % (path, r_free_label))
        return _as_bool(array, value), _display(array, strip_block)
    scores = reflection_file_utils.get_r_free_flags_scores(arrays, test_flag_value=None)
    best = max(range(len(arrays)), key=lambda i: scores.scores[i])
    if scores.scores[best] > 0:
        array = arrays[best]
        return _as_bool(array, scores.test_flag_values[best]), _display(array, strip_block)
    looks = [_display(a, strip_block) for a in arrays
             if reflection_file_utils.looks_like_r_free_flags_info(a.info())]
    if looks:
        notes.append("R-free array %s is unusable (a single flag value or an implausible "
                     "test-set size); new flags generated, so R-free is biased until "
                     "many cycles have passed" % looks[0])
    else:
        notes.append("no R-free flags in the file; new flags generated (%.0f%%), so "
                     "R-free is biased if the model was refined against these data "
                     "before" % (100 * FREE_FRACTION))
    return None, None


def _as_bool(array, test_flag_value):
    if array.is_string_array():   # mmCIF _refln.status: 'f' = free, 'o' = work
        array, test_flag_value = reflection_file_utils.cif_status_flags_as_int_r_free_flags(
            array, test_flag_value)
    if array.is_bool_array():
        return array.customized_copy(data=array.data() == bool(test_flag_value))
    return array.customized_copy(data=array.data() == test_flag_value)


def _match_flags(path, f_obs, flags, flag_label, symmetry, notes):
    if flags is None:
        return f_obs, _generate_flags(f_obs)
    flags = _on_symmetry(flags, symmetry)
    if not flags.is_unique_set_under_symmetry():
        flags = _merge_flags(path, flags, flag_label)
    n_before = f_obs.size()
    f_obs, flags = f_obs.common_sets(flags)
    if f_obs.size() < n_before:
        notes.append("%d reflections without an R-free flag dropped"
                     % (n_before - f_obs.size()))
    if f_obs.size() == 0:
        raise QRefineError("reflection file %s: no reflection has both data and an R-free "
                           "flag in %s" % (path, flag_label))
    return f_obs, flags


def _merge_flags(path, flags, flag_label):
    """Unique flags from an unmerged or Friedel-split array; mates must agree."""
    seen = {}
    for hkl, free in zip(flags.indices(), flags.data()):
        if seen.setdefault(hkl, free) != free:
            raise QRefineError("reflection file %s: R-free flags in %s disagree between "
                               "symmetry mates; supply merged flags" % (path, flag_label))
    indices = flex.miller_index(list(seen.keys()))
    return flags.customized_copy(indices=indices, data=flex.bool(list(seen.values())))


def _generate_flags(f_obs):
    # cctbx draws from Python's global random module: seed it for reproducible
    # flags and give the caller its generator state back afterwards.
    state = random.getstate()
    try:
        random.seed(FLAG_SEED)
        flags = f_obs.generate_r_free_flags(fraction=FREE_FRACTION, max_free=MAX_FREE,
                                            use_lattice_symmetry=True, format="cns")
    finally:
        random.setstate(state)
    return flags.common_set(f_obs)


def _first_line(error):
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
