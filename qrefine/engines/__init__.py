"""Quantum-chemistry engines behind one seam: an ASE calculator.

Each engine lives in its own module and is imported only when asked for, so
a missing program never breaks the others.  An engine module provides:

``NAME``            the ``engine=`` name;
``METHODS``         method names it accepts (case-insensitive), first = default;
``availability()``  -> (bool, str): can it run here, and if not what to install;
``make_calculator(method=None, charge=0, multiplicity=1, workdir=None, **options)``
                    -> an ``ase.calculators.calculator.Calculator`` giving
                    ``energy`` (eV) and ``forces`` (eV/A) for ASE ``Atoms``.
``safer_settings(attempt)`` -> dict of options for retry ``attempt`` (1, 2, ...)
                    after a failed SCF, or None when there is nothing left to try.
``OPTIONS`` (optional) the option names a ``make_calculator`` that takes
                    ``**options`` understands.
``canonical_method(name)`` (optional) -> canonical method name, for engines
                    whose methods are open-ended (PySCF: any libxc functional).

Errors: a missing program or library raises :class:`EngineUnavailable`; a
calculation that ran and failed raises :class:`EngineFailed` (or ASE's
``CalculationFailed``/``SCFError``).
"""

import importlib

from qrefine.errors import QRefineError

# engine= name -> module, in the order `qr.refine --engines` lists them.
REGISTRY = {
    "xtb": "qrefine.engines.xtb_engine",
    "mopac": "qrefine.engines.mopac_engine",
    "pyscf": "qrefine.engines.pyscf_engine",
    "orca": "qrefine.engines.orca_engine",
    "terachem": "qrefine.engines.terachem_engine",
    "turbomole": "qrefine.engines.turbomole_engine",
    "gaussian": "qrefine.engines.gaussian_engine",
}


class EngineUnavailable(QRefineError):
    """The engine's program or library is not installed or not configured."""


class EngineFailed(RuntimeError):
    """The engine ran and failed (no SCF convergence, crash, unreadable output)."""


def engine_module(name):
    """The module of engine ``name``; a one-line error for an unknown name."""
    if name not in REGISTRY:
        raise QRefineError("unknown engine '%s'; available names: %s"
                           % (name, ", ".join(REGISTRY)))
    try:
        return importlib.import_module(REGISTRY[name])
    except ImportError as e:
        raise EngineUnavailable("engine %s cannot be loaded: %s" % (name, e))


def resolve_method(module, method):
    """Canonical method name for ``module`` (its default when ``method`` is None)."""
    if method is None:
        return module.METHODS[0]
    # Engines that accept open-ended method names (any libxc functional, say)
    # provide canonical_method(); it raises QRefineError for a bad name.
    if hasattr(module, "canonical_method"):
        return module.canonical_method(method)
    for m in module.METHODS:
        if m.lower() == method.lower():
            return m
    raise QRefineError("engine %s has no method '%s'; choose one of: %s"
                       % (module.NAME, method, ", ".join(module.METHODS)))


def list_engines():
    """[(name, available, note)] for every registered engine."""
    rows = []
    for name in REGISTRY:
        try:
            ok, note = engine_module(name).availability()
        except QRefineError as e:
            ok, note = False, str(e)
        rows.append((name, ok, note))
    return rows
