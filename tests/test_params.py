"""Parameter parsing: known keys, nearest-key suggestions, parameter files."""

import pytest

from qrefine.config import phil as params
from qrefine.errors import QRefineError


def test_short_and_full_keys():
    p, files = params.parse(["m.pdb", "d.mtz", "resolution=3.8", "macro_cycles=2",
                             "output.prefix=run", "labels=FOBS,SIGFOBS", "restraints=cctbx"])
    assert files == ["m.pdb", "d.mtz"]
    assert p.resolution == 3.8
    assert p.refine.macro_cycles == 2
    assert p.output.prefix == "run"
    assert p.reflections.labels == "FOBS,SIGFOBS"


@pytest.mark.parametrize("arg, hint", [
    ("resolutoin=3", "resolution"),
    ("output.prefx=a", "output.prefix"),
    ("restrains=qm", "restraints"),
])
def test_unknown_key_suggests_nearest(arg, hint):
    with pytest.raises(QRefineError) as e:
        params.parse([arg])
    assert "did you mean '%s'" % hint in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_values_are_one_line_errors():
    for arg in ("mode=foo", "nproc=abc"):
        with pytest.raises(QRefineError) as e:
            params.parse([arg])
        assert "\n" not in str(e.value)


def test_params_file_then_override(tmp_path):
    f = tmp_path / "run.eff"
    f.write_text("refine { macro_cycles = 7 }\nresolution = 2.5\n")
    p, files = params.parse([str(f), "resolution=3.0"])
    assert files == []
    assert p.refine.macro_cycles == 7 and p.resolution == 3.0


def test_params_file_with_unknown_key(tmp_path):
    f = tmp_path / "bad.eff"
    f.write_text("refine { macro_cycle = 7 }\n")
    with pytest.raises(QRefineError) as e:
        params.parse([str(f)])
    assert "refine.macro_cycles" in str(e.value)


def test_round_trip_as_phil(tmp_path):
    p, _ = params.parse(["data_weight=2.5", "mode=opt"])
    f = tmp_path / "out.eff"
    f.write_text(params.as_phil_string(p))
    q, _ = params.parse([str(f)])
    assert q.data_weight == 2.5 and q.mode == "opt"
    d = params.as_dict(q)
    assert d["data_weight"] == 2.5 and d["refine.macro_cycles"] is None


def test_missing_params_file_is_named(tmp_path):
    """A params file that is not there is said so, not counted as a third
    input file ("too many input files")."""
    missing = str(tmp_path / "nothere.eff")
    with pytest.raises(QRefineError) as e:
        params.parse(["model.pdb", "data.mtz", missing])
    assert missing in str(e.value) and "does not exist" in str(e.value)
    assert "too many" not in str(e.value)


# --- the frozen options object --------------------------------------------------

def test_parsed_options_are_frozen():
    import pickle
    from qrefine.config.options import FrozenOptionError, Options
    p, files = params.parse(["m.pdb", "nproc=2", "restraints_cif=a.cif",
                             "restraints_cif=b.cif", "weights.trials=1,2"])
    assert isinstance(p, Options) and files == ["m.pdb"]
    assert p.nproc == 2 and p.weights.trials == (1.0, 2.0)
    assert p.restraints_cif == ("a.cif", "b.cif")  # multiple values: a tuple
    with pytest.raises(FrozenOptionError, match="option nproc is read-only"):
        p.nproc = 4
    with pytest.raises(FrozenOptionError, match="option weights.trials is read-only"):
        p.weights.trials = None
    # Worker processes get options by pickling.
    q = pickle.loads(pickle.dumps(p))
    assert q.nproc == 2 and q.weights.grid_factor == p.weights.grid_factor
    # The summary's parameters come from the frozen object as they did from PHIL.
    flat = params.as_dict(p)
    assert flat["nproc"] == 2 and flat["restraints_cif"] == ["a.cif", "b.cif"]


def test_every_file_independent_check_runs_before_any_file_is_read(tmp_path):
    """qrefine.config.checks refuses bad combinations with paths that do not
    even exist: no file is opened to find them."""
    from qrefine.config.checks import check_refine
    missing = str(tmp_path / "nowhere.pdb")
    cases = [
        ([missing, str(tmp_path / "m.ccp4")], [], "resolution= is required"),
        ([missing], ["refine.max_step=0"], "refine.max_step must be > 0"),
        ([missing], ["refine.gradient_tolerance=-1"], "gradient_tolerance must be > 0"),
        ([missing], ["restraints=qm", "ramachandran_restraints=true", "qm.ramachandran_scale=0"],
         "ramachandran_scale must be > 0"),
        ([missing], ["restraints=qm", "qm.low_level=GFN2-xTB"], "only GFN-FF is supported"),
        ([missing], ["restraints=qm", "engine=xtb", "method=PM7"], "engine xtb has no method"),
        ([missing], ["restraints=qm", "engine=xtb", "qm.basis=6-31G"],
         "engine xtb does not use qm.basis"),
        ([missing], ["parallel.scheduler=tcp://h:1"], "only used with parallel.backend=dask"),
        ([missing, str(tmp_path / "d.xyz")], [], "cannot tell whether"),
        ([missing], ["fragments.correction_refresh=-1"], "correction_refresh must be >= 0"),
        ([missing], ["weights.max_r_free_rise=-0.01"], "max_r_free_rise must be >= 0"),
        ([missing], ["weights.part_atoms=-1"], "part_atoms must be >= 0"),
        ([missing], ["qm.clash_restraint=-5"], "clash_restraint must be >= 0"),
        ([missing], ["qm.clash_restraint=50"], "only used with restraints=qm"),
        ([missing], ["refine.macro_cycles=0"], "refine.macro_cycles must be >= 1"),
        ([missing], ["refine.max_iterations=0"], "refine.max_iterations must be >= 1"),
        ([missing], ["weights.trial_macro_cycles=0"], "trial_macro_cycles must be >= 1"),
    ]
    for files, settings, message in cases:
        p, _ = params.parse(settings)
        with pytest.raises(QRefineError, match=message):
            check_refine(p, files)
    p, _ = params.parse(["restraints=qm", "engine=xtb", "method=GFN2-xTB"])
    assert check_refine(p, [missing, "m.mtz"]) == (missing, "m.mtz", "reflections")


def test_refinement_lengths_default_by_restraints_data_and_size():
    """refine.max_iterations, refine.macro_cycles and
    weights.trial_macro_cycles: None takes 100 / 5 / 2, or 60 / 2 / 1 for
    QM restraints with a map on more than 2000 atoms; a given value always
    wins."""
    from qrefine.refine.protocol import lengths
    qm = ["restraints=qm", "engine=xtb", "method=GFN-FF"]
    for settings, data_kind, n_atoms, wanted in [
            ([], "map", 5000, (100, 5, 2)), ([], "reflections", 5000, (100, 5, 2)),
            (qm, "map", 2001, (60, 2, 1)), (qm, "map", 2000, (100, 5, 2)),
            (qm, "reflections", 5000, (100, 5, 2)), (qm, None, 5000, (100, 5, 2)),
            (qm + ["refine.max_iterations=30"], "map", 5000, (30, 2, 1)),
            (qm + ["refine.macro_cycles=4", "weights.trial_macro_cycles=3"], "map", 5000,
             (60, 4, 3)),
            (["refine.macro_cycles=1"], None, 100, (100, 1, 2))]:
        p, _ = params.parse(settings)
        got = lengths(p, data_kind, n_atoms)
        assert (got.max_iterations, got.macro_cycles, got.trial_macro_cycles) == wanted, \
            (settings, data_kind, n_atoms)
