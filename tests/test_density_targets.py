"""Seed-004 density scores (qrefine.data.density) on the 3j63_A map: analytic
gradients against central differences, the spread density's mass, and the
deposited model scoring better than a perturbed one."""

import math
import os

import numpy as np
import pytest

from common import central_difference, refine_3j63
from qrefine.errors import QRefineError

SCORES = ("inner_product", "cc", "relative_entropy")


@pytest.fixture(scope="module")
def em(structures):
    from qrefine.data.maps import read_map
    from qrefine.model.io import read_model
    d = os.path.join(structures, "cryo_em", "3j63_A")
    model = read_model(os.path.join(d, "3j63_A_box_complete.pdb"), make_restraints=False)
    return model, read_map(os.path.join(d, "3j63_A_box.ccp4"))


def target(em, score):
    from qrefine.data.density import DensityTarget
    model, md = em
    return DensityTarget(model, md, resolution=3.8, score=score)


@pytest.mark.parametrize("score", SCORES)
def test_gradient_matches_finite_differences(em, score):
    model, _ = em
    t = target(em, score)
    rng = np.random.default_rng(11)
    x = np.array(model.get_sites_cart()) + rng.uniform(-0.3, 0.3, (t.n_atoms, 3))
    value, grad = t.value_and_gradient(x)
    heavy = np.nonzero(t.use_atom)[0]
    atoms = heavy[rng.choice(len(heavy), 6, replace=False)]
    fd = central_difference(lambda y: t.value_and_gradient(y)[0], x,
                            [(i, k) for i in atoms for k in range(3)]).reshape(-1, 3)
    scale = np.abs(fd).max()
    assert scale > 0
    assert np.abs(fd - grad[atoms]).max() < 1e-4 * scale + 1e-12, (fd, grad[atoms])
    hydrogens = np.nonzero(~t.use_atom)[0]
    assert np.all(grad[hydrogens] == 0.0)  # H are left out of the model density


def test_model_density_holds_one_gaussian_per_heavy_atom(em):
    """Each heavy atom adds (2 pi sigma^2)^(3/2) / voxel volume to the grid sum
    (less the 4-sigma tails, and atoms near the box edge)."""
    model, md = em
    t = target(em, "cc")
    rho_s = t.model_density(np.array(model.get_sites_cart()))
    voxel = md.crystal_symmetry.unit_cell().volume() / np.prod(rho_s.shape)
    per_atom = (2 * math.pi * t.gaussian.sigma ** 2) ** 1.5 / voxel
    ratio = rho_s.sum() / (t.use_atom.sum() * per_atom)
    assert 0.97 < ratio <= 1.001, ratio


@pytest.mark.parametrize("score", SCORES)
def test_the_deposited_model_scores_better_than_a_perturbed_one(em, score):
    model, _ = em
    t = target(em, score)
    x = np.array(model.get_sites_cart())
    moved = x + np.random.default_rng(2).normal(scale=0.8, size=x.shape)
    assert t.value_and_gradient(x)[0] < t.value_and_gradient(moved)[0]


def test_unknown_score_is_refused(em):
    from qrefine.data.density import DensityTarget
    model, md = em
    with pytest.raises(QRefineError) as e:
        DensityTarget(model, md, 3.8, score="kl")
    assert "relative_entropy" in str(e.value)


def test_qr_refine_runs_with_a_density_score(tmp_path, structures, test_data):
    code, s = refine_3j63(tmp_path, structures, test_data, "re", "map.target=relative_entropy",
                          "refine.macro_cycles=1", "refine.max_iterations=5",
                          "weights.search=false")
    assert code == 0
    assert s["parameters"]["map.target"] == "relative_entropy"
    assert any(n.startswith("map target: relative_entropy") for n in s["notes"])
    assert s["final"]["cc_mask"] > 0.5 and (tmp_path / "re_refined.cif").exists()
    assert s["macro_cycles"][0]["final_target"] < s["macro_cycles"][0]["start_target"]
