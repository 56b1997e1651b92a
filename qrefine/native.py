"""Functions of the native libraries bundled in wheels (xtb's, numpy's and
scipy's OpenBLAS and OpenMP runtimes), found by file pattern and symbol
name, for setting their thread counts from Python."""

import ctypes
import glob
import os


def int_function(libs, pattern, symbols):
    """The first of ``symbols`` found in a library ``libs/pattern`` (a
    glob), as a ctypes function of one int returning nothing; None when
    there is none (another build of the wheel)."""
    for path in sorted(glob.glob(os.path.join(libs, pattern))):
        for symbol in symbols:
            try:
                fn = getattr(ctypes.CDLL(path), symbol)
            except (OSError, AttributeError):
                continue
            fn.argtypes = [ctypes.c_int]
            fn.restype = None
            return fn
    return None


def wheel_libs(module, name=None):
    """The ``<name>.libs`` folder auditwheel puts beside a package's folder
    (default: the module's top-level package name)."""
    package = os.path.dirname(os.path.dirname(module.__file__))
    return os.path.join(package, (name or module.__name__.split(".")[0]) + ".libs")
