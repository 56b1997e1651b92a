"""cctbx geometry restraints as a RestraintSource: gradient vs finite differences."""

import os

import numpy as np

from common import central_difference
from qrefine.model.io import read_model
from qrefine.restraints.cctbx_geometry import CctbxGeometry


def test_cctbx_geometry_gradient_matches_finite_differences(structures):
    model = read_model(os.path.join(structures, "xray/1us0_helix/perturbed/1.5/0.pdb"))
    source = CctbxGeometry(model)
    x = model.get_sites_cart().as_numpy_array()
    value, grad = source.value_and_gradient(x)
    assert value > 0 and grad.shape == x.shape
    rng = np.random.default_rng(0)
    indices = [(int(i), int(k)) for i, k in zip(rng.integers(0, len(x), 12),
                                                rng.integers(0, 3, 12))]
    numeric = central_difference(lambda y: source.value_and_gradient(y)[0], x, indices,
                                 step=1e-5)
    analytic = np.array([grad[i, k] for i, k in indices])
    assert np.allclose(analytic, numeric, rtol=1e-4, atol=1e-3 * np.abs(grad).max())


def test_published_geometry_target_of_3j63(structures):
    # MANIFEST §3.1: 3j63_A_box_complete geometry target 3197.857 (all atoms).
    model = read_model(os.path.join(structures, "cryo_em/3j63_A/3j63_A_box_complete.pdb"))
    value, _ = CctbxGeometry(model).value_and_gradient(model.get_sites_cart().as_numpy_array())
    assert abs(value - 3197.857) < 0.01
