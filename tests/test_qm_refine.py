"""qr.refine with QM restraints, end to end on the 1us0 helix (GFN-FF: fast)."""

import json
import os

from qrefine.scripts.refine import main


def summary(out, prefix):
    with open(os.path.join(out, prefix + "_summary.json")) as f:
        return json.load(f)


def test_whole_model_xray_refinement(tmp_path, structures):
    d = os.path.join(structures, "xray/1us0_helix")
    out = str(tmp_path)
    assert main([os.path.join(d, "perturbed/1.5/0.pdb"), os.path.join(d, "data.mtz"),
                 "restraints=qm", "engine=xtb", "method=GFN-FF", "qm.clustering=false",
                 "weights.search=false", "refine.macro_cycles=2", "refine.max_iterations=60",
                 "output.prefix=qm", "output.dir=%s" % out]) == 0
    s = summary(out, "qm")
    assert s["final"]["r_work"] < s["start"]["r_work"] - 0.2
    assert s["start"]["hbonds"] is not None and s["final"]["hbonds"] is not None
    assert s["restraints"] == "xtb GFN-FF on the whole model (charge 0, multiplicity 1)"
    t = s["timings"]
    assert t["engine_calls"] > 10 and t["engine_s"] > 0
    assert t["engine_requests"] >= t["engine_calls"]   # repeated points come from the cache


def test_clustered_geometry_optimisation(tmp_path, structures):
    d = os.path.join(structures, "xray/1us0_helix")
    out = str(tmp_path)
    assert main([os.path.join(d, "perturbed/1.5/0.pdb"), "mode=opt", "restraints=qm",
                 "engine=xtb", "method=GFN-FF", "qm.clustering=true",
                 "fragments.max_cluster_residues=5", "fragments.buffer=4",
                 "refine.macro_cycles=1", "refine.max_iterations=40",
                 "output.prefix=frag", "output.dir=%s" % out]) == 0
    s = summary(out, "frag")
    cycle = s["macro_cycles"][0]
    assert cycle["final_target"] < cycle["start_target"] - 20   # kcal/mol along the path
    assert s["final"]["r_work"] is None and s["weight_search"] == []


def test_odd_electrons_need_a_multiplicity(tmp_path, structures, capsys):
    d = os.path.join(structures, "xray/1us0_helix")
    code = main([os.path.join(d, "perturbed/1.5/0.pdb"), "mode=opt", "restraints=qm",
                 "engine=xtb", "charge=1", "output.dir=%s" % tmp_path])
    err = capsys.readouterr().err
    assert code == 1 and "multiplicity" in err and len(err.strip().splitlines()) == 1
    assert not [f for f in os.listdir(tmp_path) if not f.startswith(".")]


def test_qm_options_reach_only_engines_that_take_them():
    import pytest
    from qrefine import engines
    from qrefine.config import phil as params
    from qrefine.errors import QRefineError
    from qrefine.config.checks import engine_options
    p, _ = params.parse(["qm.basis=6-31G*", "qm.solvent=methanol"])
    with pytest.raises(QRefineError):
        engine_options(engines.engine_module("pyscf"), p.qm)   # pyscf has no solvent
    p, _ = params.parse(["qm.basis=6-31G*", "qm.solvent=none"])
    assert engine_options(engines.engine_module("pyscf"), p.qm) == {"basis": "6-31G*"}
    with pytest.raises(QRefineError) as e:
        engine_options(engines.engine_module("xtb"), p.qm)
    assert "qm.basis" in str(e.value)
    p, _ = params.parse(["qm.solvent=none", "qm.electronic_temperature=1000"])
    assert engine_options(engines.engine_module("xtb"), p.qm) == {
        "solvent": None, "electronic_temperature": 1000.0}
    p, _ = params.parse([])
    assert engine_options(engines.engine_module("xtb"), p.qm) == {"solvent": "water"}
    p, _ = params.parse(["qm.density_fit=true", "qm.solvent=none"])
    assert engine_options(engines.engine_module("pyscf"), p.qm) == {"density_fit": True}
    with pytest.raises(QRefineError) as e:
        engine_options(engines.engine_module("mopac"), p.qm)
    assert "qm.density_fit" in str(e.value)


def test_openmp_engines_get_nproc_threads_unless_the_user_set_them(monkeypatch):
    import os
    from qrefine.config import phil as params
    from qrefine.commands.refine import limit_engine_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    p, _ = params.parse(["restraints=qm", "engine=xtb", "nproc=3"])
    limit_engine_threads(p)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    limit_engine_threads(p)
    assert os.environ["OMP_NUM_THREADS"] == "5"
    monkeypatch.delenv("OMP_NUM_THREADS")
    for args in (["restraints=cctbx"], ["restraints=qm", "engine=pyscf"]):
        limit_engine_threads(params.parse(args)[0])
        assert "OMP_NUM_THREADS" not in os.environ


def test_gfnff_on_a_distorted_start_is_warned(tmp_path, structures):
    """GFN-FF builds its bonds from the start geometry: a start whose bond
    RMSD is far above a refined model's gets a note saying so; the helix as
    deposited gets none."""
    import numpy as np
    import iotbx.pdb
    from scitbx.array_family import flex

    source = os.path.join(structures, "xray", "1us0_helix", "a87_99_h.pdb")
    pdb = iotbx.pdb.input(source)
    h = pdb.construct_hierarchy()
    rng = np.random.default_rng(0)
    xyz = np.array(h.atoms().extract_xyz()) + rng.normal(0.0, 0.2, (h.atoms_size(), 3))
    h.atoms().set_xyz(flex.vec3_double(xyz))
    distorted = str(tmp_path / "distorted.pdb")
    with open(distorted, "w") as f:
        f.write(h.as_pdb_string(crystal_symmetry=pdb.crystal_symmetry()))
    notes = {}
    for name, model in (("distorted", distorted), ("deposited", source)):
        assert main([model, "restraints=qm", "engine=xtb", "method=GFN-FF", "mode=opt",
                     "refine.macro_cycles=1", "refine.max_iterations=2",
                     "output.prefix=%s" % name, "output.dir=%s" % tmp_path]) == 0
        s = json.load(open(os.path.join(str(tmp_path), name + "_summary.json")))
        notes[name] = [n for n in s["notes"] if "GFN-FF takes its bonds" in n]
        if name == "distorted":
            assert s["start"]["bond_rmsd"] > 0.05
    assert len(notes["distorted"]) == 1 and "regularise the model first" in notes["distorted"][0]
    assert notes["deposited"] == []
