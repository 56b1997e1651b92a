"""Find and register the cctbx chemistry data (monomer library, Top8000
Ramachandran/rotamer contours, Rama-Z table).

The PyPI ``cctbx-base`` wheel ships none of it.  mmtbx looks for it with
``libtbx.env.find_in_repositories("chem_data/...")``, so once we know where a
``chem_data`` directory is we register its parent as an extra libtbx
repository (MANIFEST §1, option B).  No environment variable of the user is
changed.

Search order (first hit wins):

1. the ``chem_data=`` parameter, then ``$QREFINE_CHEM_DATA``;
2. an existing ``$MMTBX_CCP4_MONOMER_LIB`` / ``$CLIBD_MON`` whose parent holds
   the rest of the data, or a Phenix installation (``$PHENIX``);
3. the user data directory (where ``qr.setup`` installs a copy).
"""

import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

import libtbx
import libtbx.load_env  # noqa: F401  (creates libtbx.env)
import libtbx.path

from qrefine.errors import QRefineError

ENV_VAR = "QREFINE_CHEM_DATA"

# What must exist below a chem_data directory, and what each piece is for.
REQUIRED = {
    os.path.join("mon_lib", "list", "mon_lib_list.cif"): "monomer library",
    os.path.join("mon_lib", "ener_lib.cif"): "monomer library energy types",
    os.path.join("rotarama_data", "rotarama.dlite"): "Top8000 rotamer/Ramachandran data",
    os.path.join("rama_z", "top8000_rama_z_dict.pkl"): "Rama-Z reference table",
}

HOW_TO_GET = ("install it with 'qr.setup chem_data=<directory|archive|URL>' or point "
              "chem_data= or $%s at a directory holding mon_lib/, geostd/, "
              "rotarama_data/ and rama_z/" % ENV_VAR)


def user_data_dir():
    """Per-user data directory (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    elif os.name == "nt":
        base = os.environ.get("LOCALAPPDATA", os.path.expanduser("~"))
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "qrefine")


def missing_parts(path):
    """Descriptions of the required pieces absent below ``path``."""
    return [what for rel, what in REQUIRED.items()
            if not os.path.exists(os.path.join(path, rel))]


def _candidates(explicit):
    """Yield (source description, directory) in search order."""
    if explicit:
        yield "chem_data=", explicit
    if os.environ.get(ENV_VAR):
        yield "$" + ENV_VAR, os.environ[ENV_VAR]
    for var in ("MMTBX_CCP4_MONOMER_LIB", "CLIBD_MON"):
        if os.environ.get(var):
            # These point at mon_lib itself; the rest of chem_data sits beside it.
            yield "$" + var, os.path.dirname(os.path.abspath(os.environ[var]))
    if os.environ.get("PHENIX"):
        yield "$PHENIX", os.path.join(os.environ["PHENIX"], "modules", "chem_data")
    yield "user data directory", os.path.join(user_data_dir(), "chem_data")


def locate(explicit=None):
    """Return the absolute path of a complete chem_data directory.

    An explicitly named directory (parameter or $QREFINE_CHEM_DATA) that is
    incomplete is an error rather than silently skipped: the user asked for it.
    """
    for source, path in _candidates(explicit):
        path = os.path.abspath(os.path.expanduser(path))
        missing = missing_parts(path) if os.path.isdir(path) else list(REQUIRED.values())
        if not missing:
            return path
        if source in ("chem_data=", "$" + ENV_VAR):
            if not os.path.isdir(path):
                raise QRefineError("chemistry data directory %s (from %s) does not exist; %s"
                                   % (path, source, HOW_TO_GET))
            raise QRefineError("chemistry data in %s (from %s) lacks the %s; %s"
                               % (path, source, ", ".join(missing), HOW_TO_GET))
    raise QRefineError("cctbx chemistry data (monomer library, rotamer/Ramachandran "
                       "and Rama-Z tables) not found; " + HOW_TO_GET)


_activated = None


def activate(explicit=None):
    """Make mmtbx find the chemistry data; return the chem_data path.

    Safe to call more than once; the first successful call wins for the
    lifetime of the process, as libtbx caches what it has found.
    """
    global _activated
    if _activated is not None:
        return _activated
    path = locate(explicit)
    if os.path.basename(path) == "chem_data":
        root = os.path.dirname(path)
    else:
        # mmtbx asks for "chem_data/<part>", so give it a root where a
        # directory of that name leads to the data.
        root = tempfile.mkdtemp(prefix="qrefine_chem_root_")
        os.symlink(path, os.path.join(root, "chem_data"))
    known = {abs(r) for r in libtbx.env.repository_paths}
    if root not in known:
        libtbx.env.repository_paths.insert(0, libtbx.path.absolute_path(root))
    _activated = path
    return path


def install(source, destination=None):
    """Install a copy of chem_data from a directory, an archive or a URL.

    Returns the installed path.  The copy is made into a temporary sibling and
    renamed into place, so an interrupted install leaves nothing half-done.
    """
    destination = destination or os.path.join(user_data_dir(), "chem_data")
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".chem_data_", dir=os.path.dirname(destination))
    try:
        if source.startswith(("http://", "https://", "ftp://")):
            archive = os.path.join(staging, os.path.basename(source) or "chem_data.tar.gz")
            try:
                urllib.request.urlretrieve(source, archive)
            except OSError as e:
                raise QRefineError("could not download %s: %s" % (source, e))
            source = archive
        if os.path.isdir(source):
            root = source
        elif os.path.isfile(source):
            unpacked = os.path.join(staging, "unpacked")
            _unpack(source, unpacked)
            root = _find_chem_root(unpacked)
            if root is None:
                raise QRefineError("archive %s holds no directory with mon_lib/, "
                                   "rotarama_data/ and rama_z/" % source)
        else:
            raise QRefineError("chem_data source %s is neither a directory, an archive "
                               "nor a URL" % source)
        missing = missing_parts(root)
        if missing:
            raise QRefineError("%s lacks the %s; nothing was installed"
                               % (source, ", ".join(missing)))
        copy = os.path.join(staging, "chem_data")
        shutil.copytree(root, copy, symlinks=False)
        if os.path.exists(destination):
            old = destination + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(destination, old)
            os.rename(copy, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(copy, destination)
        return destination
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive, target):
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(target, filter="data")
    else:
        raise QRefineError("%s is not a zip or tar archive" % archive)


def _find_chem_root(top):
    for dirpath, dirnames, _ in os.walk(top):
        if not missing_parts(dirpath):
            return dirpath
    return None
