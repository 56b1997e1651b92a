"""The frozen options object: what crosses from a command line into the
library.

PHIL extracts are plain mutable objects; code that rewrites an option in the
middle of a run makes the summary's ``parameters`` lie (the older qr.refine
did this).  :func:`freeze` wraps an extract in a read-only view with the same
attribute paths (``options.qm.solvent``), so a library module can read any
option and change none.  Multiple-valued options read as tuples.
"""


class FrozenOptionError(AttributeError):
    """Library code tried to change an option after the command line was
    checked: a bug, not bad input."""


class Options:
    """Read-only view of a PHIL extract (a whole parameter set or one scope)."""

    __slots__ = ("_extract", "_path")

    def __init__(self, extract, path=""):
        object.__setattr__(self, "_extract", extract)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self._extract, name)
        if _is_scope(value):
            return Options(value, self._path + name + ".")
        if isinstance(value, list):
            return tuple(value)
        return value

    def __setattr__(self, name, value):
        raise FrozenOptionError("option %s%s is read-only once the command line is checked"
                                % (self._path, name))

    __delattr__ = __setattr__

    def __getstate__(self):
        return {"extract": self._extract, "path": self._path}

    def __setstate__(self, state):
        object.__setattr__(self, "_extract", state["extract"])
        object.__setattr__(self, "_path", state["path"])

    def __repr__(self):
        return "Options(%s)" % (self._path.rstrip(".") or "all")


def _is_scope(value):
    # libtbx.phil.scope_extract, without importing libtbx here.
    return type(value).__name__ == "scope_extract"


def freeze(params):
    """The frozen view of ``params`` (idempotent)."""
    return params if isinstance(params, Options) else Options(params)


def thaw(options):
    """The PHIL extract under ``options``, for libtbx's own formatting only."""
    return options._extract if isinstance(options, Options) else options
