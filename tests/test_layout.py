"""The floor plan: no import cycles between qrefine's packages, and no
package reaching into another's private names.  Imports made inside
functions count as much as those at the top: a cycle hidden in a function
is still a cycle."""

import ast
import os

import qrefine

ROOT = os.path.dirname(qrefine.__file__)


def _modules():
    """{dotted module name: path} of every qrefine module."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _unit(name, modules):
    """The room a module belongs to: its package under qrefine
    (qrefine.fragments), or itself for a top-level module (qrefine.commands.refine)."""
    parts = name.split(".")
    unit = ".".join(parts[:2])
    return unit if unit in modules else None


def _imports(path):
    """[(imported module, imported names, line)] of qrefine imports in ``path``."""
    out = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            out.extend((a.name, (), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module, tuple(a.name for a in node.names), node.lineno))
    return [(m, names, line) for m, names, line in out if m.startswith("qrefine.")]


def _edges():
    modules = _modules()
    edges = {}
    for name, path in modules.items():
        here = _unit(name, modules)
        for target, names, line in _imports(path):
            # "from qrefine.x import y" may name a module y inside package x
            there = _unit(target, modules)
            if there and there != here:
                edges.setdefault(here, {}).setdefault(there, []).append(
                    "%s:%d" % (os.path.relpath(path, ROOT), line))
    return edges


def _cycle(edges):
    """One cycle of rooms as a list, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in edges.get(node, {}):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycles_between_packages():
    edges = _edges()
    cycle = _cycle(edges)
    where = ([" %s -> %s at %s" % (a, b, ", ".join(edges[a][b]))
              for a, b in zip(cycle, cycle[1:])] if cycle else [])
    assert cycle is None, "import cycle:\n" + "\n".join(where)
    # The seams point one way: the engines and fragments know nothing of
    # the restraint sources built on them.
    assert "qrefine.restraints" not in edges.get("qrefine.fragments", {})
    assert "qrefine.restraints" not in edges.get("qrefine.engines", {})


def test_no_private_names_across_packages():
    modules = _modules()
    crossings = []
    for name, path in modules.items():
        for target, names, line in _imports(path):
            if _unit(target, modules) == _unit(name, modules):
                continue
            crossings.extend("%s:%d imports %s from %s" % (os.path.relpath(path, ROOT), line, n,
                                                          target)
                             for n in names if n.startswith("_"))
    assert crossings == []


def test_the_check_sees_a_cycle():
    """The checker itself: a cycle of three rooms is found, a tree is not."""
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": [], "c": []}, "b": {"c": []}}) is None


def test_every_restraint_source_derives_from_the_seam():
    """The pipeline calls start_cycle/timing/summary/symmetry_summary/close
    on any source without probing: each source inherits the defaults."""
    from qrefine.restraints.base import RestraintSource
    from qrefine.restraints.cctbx_geometry import CctbxGeometry
    from qrefine.restraints.dual_level import DualLevelRestraints
    from qrefine.restraints.fragment_qm import FragmentQMRestraints
    from qrefine.restraints.qm import QMRestraints
    from qrefine.restraints.symmetry import SymmetryQMRestraints
    for cls in (CctbxGeometry, QMRestraints, FragmentQMRestraints, SymmetryQMRestraints,
                DualLevelRestraints):
        assert issubclass(cls, RestraintSource), cls
    assert DualLevelRestraints.is_dual_level and not QMRestraints.is_dual_level
    class Flat(RestraintSource):
        def value_and_gradient(self, sites_cart):
            return 0.0, 0 * sites_cart

    source = Flat()
    assert source.timing() == {} and source.summary() is None
    assert source.symmetry_summary() is None and source.primary is source


# Imports inside functions are allowed only for what may be missing or is
# loaded on purpose late: optional dependencies (dask, PySCF with its D3),
# an engine's own library (a broken xtb must not break the other engines),
# matplotlib (plots import it when drawn), and the two load-order guards.
LATE_IMPORTS_ALLOWED = ("matplotlib", "dask", "distributed", "pyscf", "dftd3", "xtb")
LOAD_ORDER_GUARDS = {
    # cctbx's compiled core before scipy/matplotlib (see qrefine/__init__.py)
    ("qrefine/__init__.py", "sys"), ("qrefine/__init__.py", "scitbx.array_family.flex"),
    # a Dask worker on another machine loads cctbx first too
    ("qrefine/restraints/dask_executor.py", "qrefine"),
}


def _late_imports(path):
    """[(module, line)] of imports made inside functions in ``path``."""
    out = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    out.extend((a.name, inner.lineno) for a in inner.names)
                elif isinstance(inner, ast.ImportFrom):
                    out.append((inner.module or "", inner.lineno))
    return sorted(set(out), key=lambda x: x[1])


def _hidden_imports(paths):
    hidden = []
    for path in paths:
        rel = os.path.relpath(path, os.path.dirname(ROOT))
        for module, line in _late_imports(path):
            if module.split(".")[0] in LATE_IMPORTS_ALLOWED or (rel, module) in LOAD_ORDER_GUARDS:
                continue
            hidden.append("%s:%d imports %s inside a function" % (rel, line, module))
    return hidden


def test_no_imports_hidden_in_functions():
    scripts = os.path.join(os.path.dirname(ROOT), "scripts")
    paths = list(_modules().values())
    if os.path.isdir(scripts):  # a source checkout (the installed copy is qrefine/scripts)
        paths += [os.path.join(scripts, f) for f in os.listdir(scripts) if f.endswith(".py")]
    assert _hidden_imports(paths) == []


def test_the_check_sees_a_hidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from qrefine import engines\n"
                      "    import matplotlib\n    return engines\n")
    assert _hidden_imports([str(module)]) == [
        "%s:4 imports qrefine inside a function"
        % os.path.relpath(str(module), os.path.dirname(ROOT))]
