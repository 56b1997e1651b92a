"""Parameter parsing: known keys, nearest-key suggestions, parameter files."""

import pytest

from qrefine import params
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
    assert d["data_weight"] == 2.5 and d["refine.macro_cycles"] == 5


def test_missing_params_file_is_named(tmp_path):
    """A params file that is not there is said so, not counted as a third
    input file ("too many input files")."""
    missing = str(tmp_path / "nothere.eff")
    with pytest.raises(QRefineError) as e:
        params.parse(["model.pdb", "data.mtz", missing])
    assert missing in str(e.value) and "does not exist" in str(e.value)
    assert "too many" not in str(e.value)
