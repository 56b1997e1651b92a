"""Locating and installing the cctbx chemistry data."""

import os
import tarfile

import pytest

from qrefine.model import chem_data
from qrefine.errors import QRefineError


def make_fake_chem_data(root):
    for rel in chem_data.REQUIRED:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    return root


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("QREFINE_CHEM_DATA", "MMTBX_CCP4_MONOMER_LIB", "CLIBD_MON", "PHENIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_search_order(clean_env, monkeypatch):
    explicit = make_fake_chem_data(str(clean_env / "a" / "chem_data"))
    env = make_fake_chem_data(str(clean_env / "b" / "chem_data"))
    monlib = make_fake_chem_data(str(clean_env / "c" / "chem_data"))
    user = make_fake_chem_data(os.path.join(chem_data.user_data_dir(), "chem_data"))
    assert chem_data.locate() == user
    monkeypatch.setenv("MMTBX_CCP4_MONOMER_LIB", os.path.join(monlib, "mon_lib"))
    assert chem_data.locate() == monlib
    monkeypatch.setenv("QREFINE_CHEM_DATA", env)
    assert chem_data.locate() == env
    assert chem_data.locate(explicit) == explicit


def test_missing_data_is_one_line_with_the_fix(clean_env):
    with pytest.raises(QRefineError) as e:
        chem_data.locate()
    assert "qr.setup chem_data=" in str(e.value) and "\n" not in str(e.value)


def test_incomplete_explicit_directory_names_what_is_missing(clean_env):
    d = make_fake_chem_data(str(clean_env / "chem_data"))
    os.remove(os.path.join(d, "rama_z", "top8000_rama_z_dict.pkl"))
    with pytest.raises(QRefineError) as e:
        chem_data.locate(d)
    assert "Rama-Z" in str(e.value)


def test_install_from_directory_and_archive(clean_env):
    src = make_fake_chem_data(str(clean_env / "src" / "chem_data"))
    installed = chem_data.install(src)
    assert installed == os.path.join(chem_data.user_data_dir(), "chem_data")
    assert chem_data.locate() == installed
    archive = str(clean_env / "cd.tar.gz")
    with tarfile.open(archive, "w:gz") as t:
        t.add(src, arcname="pkg/chem_data")
    dest = str(clean_env / "elsewhere" / "chem_data")
    assert chem_data.install(archive, dest) == dest
    assert not chem_data.missing_parts(dest)


def test_install_refuses_incomplete_source(clean_env):
    src = str(clean_env / "empty")
    os.makedirs(src)
    with pytest.raises(QRefineError):
        chem_data.install(src)
    assert not os.path.exists(os.path.join(chem_data.user_data_dir(), "chem_data"))
