"""Provenance: what produced a result, for the log header and the summary.

A summary JSON read a year later must say which program versions, which
machine, which command line and which exact input files made it, so that a
result can be traced and reproduced.  Input files are named by content
(SHA-256), not only by path: a model edited in place is a different input.
``SCHEMA_VERSION`` numbers the layout of ``<prefix>_summary.json``; it goes
up whenever a key is renamed or removed (not when one is added), so that
scripts reading summaries can tell.
"""

import datetime
from importlib.metadata import PackageNotFoundError, version
import os
import platform
import socket

from qrefine import __version__
from qrefine.engines import engine_module
from qrefine.errors import QRefineError

SCHEMA_VERSION = 2  # 1: summaries before this key existed

# engine= name -> the PyPI distribution that provides it, where one does;
# the other engines are external programs (their command is in "note").
_ENGINE_PACKAGES = {"xtb": "xtb", "pyscf": "pyscf"}


def package_version(distribution):
    """The installed version of a PyPI distribution, or None."""
    try:
        return version(distribution)
    except PackageNotFoundError:  # e.g. cctbx from a Phenix build, not PyPI
        return None


def versions():
    """{component: version} of qrefine and the libraries results depend on."""
    return {"qrefine": __version__, "cctbx": package_version("cctbx-base"),
            "python": platform.python_version(), "numpy": package_version("numpy"),
            "ase": package_version("ase")}


def host():
    return {"name": socket.gethostname(), "cores": os.cpu_count() or 1,
            "platform": platform.platform()}


def engine(name, method):
    """The QM engine of a run: name, method, package version where it is a
    Python package, and the availability note (the program found)."""
    try:
        ok, note = engine_module(name).availability()
    except QRefineError as e:
        note = str(e)
    return {"name": name, "method": method,
            "version": package_version(_ENGINE_PACKAGES.get(name, name)), "note": note}


def input_files(digests):
    """{role: {"path", "sha256", "bytes"}} from {role: (path, sha256)}."""
    out = {}
    for role, (path, digest) in digests.items():
        if path is None:
            continue
        out[role] = {"path": os.path.abspath(path), "sha256": digest,
                     "bytes": os.path.getsize(path)}
    return out


def record(program, argv, digests, qm_engine=None, started=None):
    """The summary's "provenance" object.  ``digests``: {role: (path, sha256)}
    of the input files; ``qm_engine``: :func:`engine`'s dict or None."""
    return {"schema_version": SCHEMA_VERSION,
            "program": program,
            "command": " ".join([program] + list(argv)),
            "started": (started or datetime.datetime.now()).isoformat(timespec="seconds"),
            "versions": versions(),
            "host": host(),
            "engine": qm_engine,
            "inputs": input_files(digests)}
