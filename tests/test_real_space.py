"""Cryo-EM map input (qrefine.data.maps) and the real-space target."""

import os

import mrcfile
import numpy as np
import pytest

from qrefine.errors import QRefineError

EM = ("cryo_em", "3j63_A")


@pytest.fixture(scope="module")
def em(structures):
    """3j63_A model (restraints not needed here) and its boxed map."""
    from qrefine.data.maps import read_map
    from qrefine.model.io import read_model
    d = os.path.join(structures, *EM)
    model = read_model(os.path.join(d, "3j63_A_box_complete.pdb"), make_restraints=False)
    map_path = os.path.join(d, "3j63_A_box.ccp4")
    return model, read_map(map_path), map_path


@pytest.fixture(scope="module")
def target(em):
    from qrefine.data.real_space import RealSpaceTarget
    model, md, _ = em
    return RealSpaceTarget(model, md, resolution=3.6)


def sites(model):
    return np.array(model.get_sites_cart())


def flex_sites(x):
    from scitbx.array_family import flex
    return flex.vec3_double([tuple(r) for r in x])


def central_differences(target, x, atoms, h):
    fd = np.zeros((len(atoms), 3))
    for a, i in enumerate(atoms):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[a, k] = (target.value_and_gradient(xp)[0]
                        - target.value_and_gradient(xm)[0]) / (2 * h)
    return fd


def test_gradient_matches_finite_differences(em, target):
    # Random 0.3 A displacements put the atoms anywhere relative to the grid,
    # so the check does not rely on atoms sitting inside grid cells: the cubic
    # B-spline is smooth across grid planes.  A sign, frame or cell-scale
    # error would be off by far more than the tolerance.
    model, _, _ = em
    rng = np.random.default_rng(7)
    x = sites(model) + rng.uniform(-0.3, 0.3, size=(model.get_number_of_atoms(), 3))
    value, grad = target.value_and_gradient(x)
    assert grad.shape == x.shape and np.isfinite(value)
    atoms = rng.choice(np.flatnonzero(target.use_atom), 6, replace=False)
    fd = central_differences(target, x, atoms, h=1e-3)
    assert np.abs(fd).max() > 0.1  # the atoms do feel the map
    np.testing.assert_allclose(grad[atoms], fd, rtol=1e-4, atol=1e-5)


def test_hydrogens_have_no_map_term(em, target):
    model, _, _ = em
    x = sites(model)
    h = np.flatnonzero(~target.use_atom)
    assert len(h) > 500  # 3j63_A box_complete carries all H
    value, grad = target.value_and_gradient(x)
    assert np.all(grad[h] == 0.0)
    moved = x.copy()
    moved[h] += 0.5
    assert target.value_and_gradient(moved)[0] == value


def test_value_is_lower_for_the_fitted_model(em, target):
    model, _, _ = em
    x = sites(model)
    assert target.value_and_gradient(x)[0] < target.value_and_gradient(x + [1.5, 0, 0])[0]


def test_cc_mask_3j63(em, target):
    model, _, _ = em
    x = sites(model)
    cc = target.statistics(x)["cc_mask"]
    assert cc == pytest.approx(0.684, abs=0.01)  # MANIFEST 3.4, five_cc at 3.6 A
    assert target.statistics(x + [2.0, 0.0, 0.0])["cc_mask"] < cc - 0.2
    target.update(x)  # nothing to re-fit, must not fail


def test_model_outside_box_is_refused(em):
    from qrefine.data.maps import check_model_in_map
    from qrefine.data.real_space import RealSpaceTarget
    model, md, map_path = em
    check_model_in_map(model, md, map_path)  # the placed model is fine
    shifted = model.deep_copy()
    shifted.set_sites_cart(shifted.get_sites_cart() + (15.0, 0.0, 0.0))
    with pytest.raises(QRefineError, match="outside the box of map file %s"
                       % map_path.replace(".", r"\.")):
        check_model_in_map(shifted, md, map_path)
    with pytest.raises(QRefineError, match="3j63_A_box.ccp4"):
        RealSpaceTarget(shifted, md, 3.6)


def test_a_stray_atom_outside_is_tolerated(em, target):
    from qrefine.data.real_space import RealSpaceTarget
    model, md, _ = em
    stray = model.deep_copy()
    x = sites(model)
    i = int(np.flatnonzero(target.use_atom)[0])
    x[i] = (-30.0, 80.0, 5.0)  # far outside: must not read wrapped density
    stray.set_sites_cart(flex_sites(x))
    t = RealSpaceTarget(stray, md, 3.6)
    value, grad = t.value_and_gradient(x)
    assert np.abs(grad[i]).max() < 1e-10  # flat solvent padding
    x2 = x.copy()
    x2[i] += 3.0
    assert t.value_and_gradient(x2)[0] == pytest.approx(value, abs=1e-12)


def test_non_p1_model_symmetry_is_refused(em):
    from cctbx import crystal
    from qrefine.data.maps import check_model_in_map
    model, md, map_path = em
    xtal = model.deep_copy()
    xtal.set_crystal_symmetry(crystal.symmetry((50, 60, 70, 90, 90, 90), "P 21 21 21"))
    with pytest.raises(QRefineError, match="crystal symmetry.*3j63_A_box.ccp4"):
        check_model_in_map(xtal, md, map_path)
    boxed = model.deep_copy()  # a P1 cell of its own (as without CRYST1) is fine
    boxed.set_crystal_symmetry(crystal.symmetry((80, 80, 80, 90, 90, 90), "P 1"))
    check_model_in_map(boxed, md, map_path)


def test_resolution_is_required(em):
    from qrefine.data.real_space import RealSpaceTarget
    model, md, _ = em
    with pytest.raises(QRefineError, match="resolution"):
        RealSpaceTarget(model, md, None)


@pytest.mark.parametrize("content, what", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"hello", "shorter than a CCP4/MRC header"),
    (b"\x17garbage" * 400, "is not a CCP4/MRC map"),
])
def test_bad_map_files(tmp_path, content, what):
    from qrefine.data.maps import read_map
    path = tmp_path / "x.ccp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(QRefineError, match=what) as err:
        read_map(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage, what", [
    ("truncate", "truncated or corrupt"),
    ("nan", "cannot be read as a CCP4/MRC map"),  # iotbx refuses NaN itself
])
def test_damaged_map_file(tmp_path, em, damage, what):
    from qrefine.data.maps import read_map
    _, _, map_path = em
    raw = bytearray(open(map_path, "rb").read())
    if damage == "truncate":
        raw = raw[:50000]
    else:
        raw[1024:1028] = np.float32("nan").tobytes()
    path = tmp_path / "damaged.ccp4"
    path.write_bytes(bytes(raw))
    with pytest.raises(QRefineError, match=what) as err:
        read_map(str(path))
    assert str(path) in str(err.value)


def write_map(path, rho_xyz, start=(0, 0, 0), cell=None, mxyz=None, voxel=None,
              origin=None):
    """Write a map in X-fastest order (mapc/mapr/maps = 1/2/3) with mrcfile."""
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.ascontiguousarray(rho_xyz.transpose(2, 1, 0), dtype=np.float32))
        h = m.header
        h.nxstart, h.nystart, h.nzstart = start
        h.mx, h.my, h.mz = mxyz or rho_xyz.shape
        h.cella = cell or tuple(np.array(rho_xyz.shape) * voxel)
        if origin is not None:
            h.origin = origin


@pytest.mark.parametrize("how", ["nxstart", "mrc2014_origin"])
def test_origin_shift_keeps_model_frame(tmp_path, em, how):
    """A sub-box that starts at grid point s of the 3j63 cell, read with the
    model in its original frame, must give exactly the target of the same
    sub-box written at origin 0 with the model moved by -s voxels."""
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    model, md, _ = em
    rho = md.map_data.as_numpy_array()
    voxel = np.array(md.crystal_symmetry.unit_cell().parameters()[:3]) / rho.shape
    s = np.array([2, 3, 1])
    sub = rho[2:40, 3:37, 1:35]  # all atoms stay inside
    if how == "nxstart":
        write_map(tmp_path / "s.ccp4", sub, start=tuple(s),
                  cell=md.crystal_symmetry.unit_cell().parameters()[:3],
                  mxyz=rho.shape)
    else:
        write_map(tmp_path / "s.ccp4", sub, voxel=voxel, origin=tuple(s * voxel))
    write_map(tmp_path / "zero.ccp4", sub, voxel=voxel)
    shifted_map = read_map(str(tmp_path / "s.ccp4"))
    zero_map = read_map(str(tmp_path / "zero.ccp4"))
    assert np.allclose(shifted_map.shift_cart, -s * voxel, atol=1e-4)

    x = sites(model)
    moved = model.deep_copy()
    moved.set_sites_cart(moved.get_sites_cart() - tuple(s * voxel))
    t_shifted = RealSpaceTarget(model, shifted_map, 3.6)
    t_zero = RealSpaceTarget(moved, zero_map, 3.6)
    v1, g1 = t_shifted.value_and_gradient(x)
    v0, g0 = t_zero.value_and_gradient(x - s * voxel)
    # float32 voxel sizes in the header: agreement to ~1e-6 relative
    assert v1 == pytest.approx(v0, rel=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-4)
    assert (t_shifted.statistics(x)["cc_mask"]
            == pytest.approx(t_zero.statistics(x - s * voxel)["cc_mask"], abs=1e-4))


def test_non_orthogonal_cell_gradient(tmp_path):
    """Monoclinic map: the gradient must go through the fractionalisation
    matrix, not just divide by the cell edges."""
    from cctbx import crystal
    from qrefine.data.maps import read_map
    from qrefine.data.real_space import RealSpaceTarget
    from qrefine.model.io import read_model
    import iotbx.map_manager
    from scitbx.array_family import flex
    cs = crystal.symmetry((30.0, 32.0, 28.0, 90.0, 110.0, 90.0), "P 1")
    n = (30, 32, 28)
    uc = cs.unit_cell()
    rng = np.random.default_rng(3)
    centres = [uc.orthogonalize(tuple(f)) for f in rng.uniform(0.35, 0.65, (5, 3))]
    grid = np.stack(np.meshgrid(*[np.arange(k) / k for k in n], indexing="ij"), -1)
    cart = grid.reshape(-1, 3) @ np.array(uc.orthogonalization_matrix()).reshape(3, 3).T
    rho = sum(np.exp(-((cart - c) ** 2).sum(1) / 3.0) for c in centres).reshape(n)
    data = flex.double(rho.ravel())
    data.reshape(flex.grid(n))
    mm = iotbx.map_manager.map_manager(map_data=data, unit_cell_grid=n,
                                       unit_cell_crystal_symmetry=cs, wrapping=False)
    mm.write_map(str(tmp_path / "mono.ccp4"))
    md = read_map(str(tmp_path / "mono.ccp4"))
    atoms = [np.array(c) + rng.uniform(-0.8, 0.8, 3) for c in centres]
    pdb = ["CRYST1%9.3f%9.3f%9.3f%7.2f%7.2f%7.2f P 1" % uc.parameters()]
    for i, a in enumerate(atoms):
        pdb.append("ATOM  %5d  O   HOH A%4d    %8.3f%8.3f%8.3f  1.00 20.00           O"
                   % ((i + 1, i + 1) + tuple(a)))
    (tmp_path / "m.pdb").write_text("\n".join(pdb + ["END", ""]))
    model = read_model(str(tmp_path / "m.pdb"), make_restraints=False)
    t = RealSpaceTarget(model, md, 3.0)
    x = sites(model)
    _, grad = t.value_and_gradient(x)
    fd = central_differences(t, x, range(len(atoms)), h=1e-3)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-5)


def test_statistics_of_the_same_sites_are_computed_once(em, target, monkeypatch):
    """The last sites' statistics are kept (a trial's last cycle and its
    validation ask for the same); other sites, or the same moved and moved
    back, are computed; a caller changing the returned dict changes no later one."""
    x = sites(em[0])
    calls = []
    compute = target._statistics
    monkeypatch.setattr(target, "_statistics", lambda s: calls.append(1) or compute(s))
    target._last_statistics = None
    first = target.statistics(x)
    first["cc_mask"] = -1.0
    again = target.statistics(np.array(x, copy=True))
    assert len(calls) == 1 and again["cc_mask"] > 0
    moved = target.statistics(x + [0.5, 0.0, 0.0])
    assert len(calls) == 2 and moved["cc_mask"] < again["cc_mask"]
    assert target.statistics(x) == again and len(calls) == 3
