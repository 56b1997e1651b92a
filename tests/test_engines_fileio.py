"""ORCA, TeraChem, Turbomole and Gaussian engines, tested at their file boundary.

None of these programs runs here.  The tests check (1) the input files each
engine writes, parsed back, (2) the readers on hand-written outputs in each
program's format (tests/engine_outputs/, see its README.txt), and (3) whole
calculations through the ASE calculator with a fake program: a small Python
script put on PATH (or in the program's environment variable) that checks
its input and answers with those outputs, or fails.
"""

import gc
import json
import os
import shutil
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from ase.units import Bohr, Hartree

from qrefine.engines import (EngineFailed, EngineUnavailable, engine_module,
                             list_engines)
from qrefine.errors import QRefineError

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUTS = os.path.join(HERE, "engine_outputs")

ENGINES = ("orca", "terachem", "turbomole", "gaussian")

# The S22 water dimer (Angstrom); the outputs in engine_outputs/ are for it.
WATER_DIMER = [("O", (-1.551007, -0.114520, 0.000000)),
               ("H", (-1.934259, 0.762503, 0.000000)),
               ("H", (-0.599677, 0.040712, 0.000000)),
               ("O", (1.350625, 0.111469, 0.000000)),
               ("H", (1.680398, -0.373741, -0.758561)),
               ("H", (1.680398, -0.373741, 0.758561))]

# The made-up results written in every output file.
ENERGY_HARTREE = -152.0123456789
GRADIENT = np.array([[0.01000, -0.02000, 0.00000],
                     [-0.00300, 0.00400, 0.00000],
                     [-0.00700, 0.01600, 0.00000],
                     [0.00150, -0.00250, 0.00000],
                     [-0.00075, 0.00125, -0.00500],
                     [-0.00075, 0.00125, 0.00500]])   # Hartree/Bohr
EXPECTED_ENERGY = ENERGY_HARTREE * Hartree       # eV
EXPECTED_FORCES = -GRADIENT * Hartree / Bohr     # eV/A: forces = -gradient


def water_dimer():
    return Atoms([s for s, _ in WATER_DIMER], positions=[p for _, p in WATER_DIMER])


# -- fake programs ------------------------------------------------------------

FAKE_PROGRAM = '''\
#!{python}
"""Fake {name} for the qrefine tests: checks its input, answers with a
hand-written output from {outputs}, or fails when $FAKE_QM_MODE says so."""
import json, os, shutil, sys

OUT = {outputs!r}
name = os.path.basename(sys.argv[0])
mode = os.environ.get("FAKE_QM_MODE", "ok")
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open("calls.jsonl", "a") as log:
    log.write(json.dumps({{"program": name, "argv": sys.argv, "cwd": os.getcwd(),
                          "stdin": stdin, "files": sorted(os.listdir(".")),
                          "env": {{k: os.environ.get(k) for k in
                                  ("TeraChem", "LD_LIBRARY_PATH", "GAUSS_EXEDIR",
                                   "GAUSS_SCRDIR", "PARA_ARCH", "PARNODES")}}}}) + "\\n")

def copy(src, dst=None):
    text = open(os.path.join(OUT, src)).read()
    if dst is None:
        sys.stdout.write(text)
    else:
        open(dst, "w").write(text)

if name == "orca":
    assert sys.argv[1] == "orca.inp" and os.path.isfile("orca.inp")
    if mode == "crash":
        sys.stderr.write("fake orca: orca_scf returned a segmentation fault\\n")
        sys.exit(3)
    copy("orca_scf_failed.out" if mode == "bad" else "orca.out")
    if mode == "ok":
        copy("orca.engrad", "orca.engrad")
elif name in ("g16", "g09"):
    assert "force" in stdin.split()
    if mode == "crash":
        copy("gaussian_scf_failed.log")
        sys.exit(1)
    copy("gaussian_scf_failed.log" if mode == "bad" else "gaussian.log")
elif name == "terachem":
    assert sys.argv[1] == "tc.in" and os.path.isfile("tc.xyz")
    if mode == "crash":
        sys.stderr.write("fake terachem: no CUDA-capable device is detected\\n")
        sys.exit(1)
    copy("terachem_die.out" if mode == "bad" else "terachem.out")
elif name == "define":
    assert os.path.isfile("coord") and not os.path.exists("control")
    open("control", "w").write("$title\\n$coord    file=coord\\n$symmetry c1\\n$end\\n")
    sys.stderr.write("define ended normally\\n")
elif name in ("ridft", "dscf"):
    assert os.path.isfile("control") and not os.path.exists("gradient")
    if mode == "crash":
        sys.stderr.write("{{}} ended abnormally\\n".format(name))
        sys.exit(13)
    if mode == "bad":
        open("dscf_problem", "w").write("SCF did not converge\\n")
    open("energy", "w").write("$energy      SCF               SCFKIN            SCFPOT\\n"
                              "     1   -152.0123456789   151.0   -303.0\\n$end\\n")
    sys.stderr.write("{{}} ended normally\\n".format(name))
elif name in ("rdgrad", "grad"):
    # the gradient file of the fixture, with the coordinates of ./coord
    coord = [ln for ln in open("coord") if ln.strip() and not ln.startswith("$")]
    grad = open(os.path.join(OUT, "turbomole_gradient")).read().splitlines()
    grad[2:2 + len(coord)] = [ln.rstrip() for ln in coord]
    open("gradient", "w").write("\\n".join(grad) + "\\n")
    sys.stderr.write("{{}} ended normally\\n".format(name))
else:
    sys.exit("fake program: unknown name %s" % name)
'''


def make_fake(directory, name):
    """Write the fake program ``name`` into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(FAKE_PROGRAM.format(python=sys.executable, name=name, outputs=OUTPUTS))
    path.chmod(0o755)
    return str(path)


def calls(workdir):
    """The fake programs' records of their runs in ``workdir``."""
    path = os.path.join(str(workdir), "calls.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as fd:
        return [json.loads(line) for line in fd]


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No engine program anywhere: PATH is one empty directory (returned)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    for var in ("ASE_ORCA_COMMAND", "TeraChem", "TURBODIR", "GAUSS_EXEDIR",
                "GAUSS_SCRDIR", "g16root", "g09root", "PARA_ARCH", "PARNODES",
                "FAKE_QM_MODE"):
        monkeypatch.delenv(var, raising=False)
    return bindir


@pytest.fixture
def fake_orca(bare_env):
    (bare_env / "orca_scf").write_text("")   # ORCA's modules sit beside orca
    return make_fake(bare_env, "orca")


@pytest.fixture
def fake_gaussian(bare_env):
    return make_fake(bare_env, "g16")


@pytest.fixture
def fake_terachem(bare_env, tmp_path, monkeypatch):
    """A TeraChem 'installation' tmp/terachem/{bin,lib} named by $TeraChem."""
    root = tmp_path / "terachem"
    (root / "lib").mkdir(parents=True)
    path = make_fake(root / "bin", "terachem")
    monkeypatch.setenv("TeraChem", str(root))
    return path


@pytest.fixture
def fake_turbomole(bare_env, tmp_path, monkeypatch):
    for name in ("define", "ridft", "rdgrad", "dscf", "grad"):
        make_fake(bare_env, name)
    monkeypatch.setenv("TURBODIR", str(tmp_path / "turbomole"))
    return bare_env


FAKES = {"orca": "fake_orca", "terachem": "fake_terachem",
         "turbomole": "fake_turbomole", "gaussian": "fake_gaussian"}


# -- the engine seam ------------------------------------------------------------

@pytest.mark.parametrize("name", ENGINES)
def test_module_follows_the_engine_seam(name):
    module = engine_module(name)
    assert module.NAME == name
    assert module.METHODS and len(set(m.lower() for m in module.METHODS)) == len(module.METHODS)
    assert callable(module.availability) and callable(module.make_calculator)
    assert module.safer_settings(1) and module.safer_settings(2)
    assert module.safer_settings(3) is None


def test_default_methods():
    assert engine_module("orca").METHODS[0] == "HF-D3"
    assert engine_module("terachem").METHODS[0] == "HF-D3"
    assert engine_module("gaussian").METHODS[0] == "HF-D3"
    assert engine_module("turbomole").METHODS[0] == "RI-BP86"


# -- availability ---------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("orca", ["ASE_ORCA_COMMAND", "PATH"]),
    ("terachem", ["$TeraChem", "PATH"]),
    ("turbomole", ["TURBODIR", "ridft", "PATH"]),
    ("gaussian", ["g16", "PATH"]),
])
def test_unavailable_without_program(bare_env, name, words):
    module = engine_module(name)
    ok, hint = module.availability()
    assert ok is False
    assert "\n" not in hint
    for word in words:
        assert word in hint
    with pytest.raises(EngineUnavailable) as e:
        module.make_calculator()
    assert "\n" not in str(e.value)
    rows = {row[0]: row for row in list_engines()}
    assert rows[name][1] is False


@pytest.mark.parametrize("name", ENGINES)
def test_available_with_fake_program(request, name):
    request.getfixturevalue(FAKES[name])
    ok, where = engine_module(name).availability()
    assert ok is True, where


def test_orca_command_variable_wins_and_is_made_absolute(bare_env, tmp_path, monkeypatch):
    path = make_fake(tmp_path / "orca6", "orca")
    monkeypatch.setenv("ASE_ORCA_COMMAND", path)
    assert engine_module("orca").availability() == (True, "ORCA: %s" % path)
    monkeypatch.setenv("PATH", str(tmp_path / "orca6"))
    monkeypatch.setenv("ASE_ORCA_COMMAND", "orca")
    calc = engine_module("orca").make_calculator(workdir=str(tmp_path / "job"))
    assert calc.argv == [path]   # full path: ORCA needs it for %pal runs
    monkeypatch.setenv("ASE_ORCA_COMMAND", str(tmp_path / "nowhere" / "orca"))
    ok, hint = engine_module("orca").availability()
    assert not ok and "ASE_ORCA_COMMAND" in hint


def test_orca_screen_reader_is_not_orca(bare_env):
    make_fake(bare_env, "orca")   # an 'orca' with no orca_* modules beside it
    ok, hint = engine_module("orca").availability()
    assert not ok and "screen reader" in hint and "ASE_ORCA_COMMAND" in hint
    with pytest.raises(EngineUnavailable):
        engine_module("orca").make_calculator()


@pytest.mark.parametrize("name, program", [("orca", "orca"), ("gaussian", "g16"),
                                           ("terachem", "terachem")])
def test_command_option_overrides_the_environment(bare_env, tmp_path, name, program):
    path = make_fake(tmp_path / "elsewhere", program)
    module = engine_module(name)
    assert module.availability()[0] is False
    atoms = water_dimer()
    atoms.calc = module.make_calculator(command=path, workdir=str(tmp_path / "job"))
    check_results(atoms.get_potential_energy(), atoms.get_forces())
    assert calls(tmp_path / "job")[0]["argv"][0] == path
    with pytest.raises(EngineUnavailable, match="is not a program"):
        module.make_calculator(command=str(tmp_path / "nowhere" / program))


def test_terachem_on_path_without_variable(bare_env):
    path = make_fake(bare_env, "terachem")
    ok, where = engine_module("terachem").availability()
    assert ok and path in where


def test_terachem_variable_without_program(bare_env, tmp_path, monkeypatch):
    monkeypatch.setenv("TeraChem", str(tmp_path / "empty"))
    ok, hint = engine_module("terachem").availability()
    assert not ok and "bin/terachem" in hint


def test_turbomole_needs_turbodir(bare_env):
    for name in ("define", "ridft", "rdgrad", "dscf", "grad"):
        make_fake(bare_env, name)
    ok, hint = engine_module("turbomole").availability()
    assert not ok and "TURBODIR" in hint and "ridft" not in hint


def test_gaussian_found_in_gauss_exedir(bare_env, tmp_path, monkeypatch):
    path = make_fake(tmp_path / "g09", "g09")
    monkeypatch.setenv("GAUSS_EXEDIR", str(tmp_path / "g09"))
    assert engine_module("gaussian").availability() == (True, "Gaussian: %s" % path)


# -- options and methods ------------------------------------------------------------

@pytest.mark.parametrize("name", ENGINES)
def test_unknown_method_and_option_are_one_line_errors(request, tmp_path, name):
    request.getfixturevalue(FAKES[name])
    module = engine_module(name)
    with pytest.raises(QRefineError, match="has no method 'MP2-F12'"):
        module.make_calculator(method="MP2-F12", workdir=str(tmp_path / "job"))
    with pytest.raises(QRefineError, match="unknown %s option" % name):
        module.make_calculator(workdir=str(tmp_path / "job"), colour="red")


@pytest.mark.parametrize("name", ENGINES)
def test_method_names_are_case_insensitive(request, tmp_path, name):
    request.getfixturevalue(FAKES[name])
    module = engine_module(name)
    calc = module.make_calculator(method=module.METHODS[1].lower(),
                                  workdir=str(tmp_path / "job"))
    assert calc.method == module.METHODS[1]


@pytest.mark.parametrize("name", ENGINES)
def test_safer_settings_are_accepted_options(request, tmp_path, name):
    request.getfixturevalue(FAKES[name])
    module = engine_module(name)

    def written(workdir, **options):
        calc = module.make_calculator(workdir=str(tmp_path / workdir), **options)
        calc.write_input(water_dimer())
        return {f: open(os.path.join(tmp_path, workdir, f)).read()
                for f in sorted(os.listdir(tmp_path / workdir))}

    plain = written("plain")
    inputs = [written("try%d" % a, **module.safer_settings(a)) for a in (1, 2)]
    # each retry reaches the program: its input differs from the plain one
    # and from the retry before
    assert inputs[0] != plain and inputs[1] != inputs[0]


@pytest.mark.parametrize("name", ENGINES)
def test_impossible_spin_is_refused_before_running(request, tmp_path, name):
    request.getfixturevalue(FAKES[name])
    calc = engine_module(name).make_calculator(multiplicity=2, workdir=str(tmp_path / "job"))
    atoms = water_dimer()   # 20 electrons: no doublet
    atoms.calc = calc
    with pytest.raises(QRefineError, match="multiplicity 2 does not fit 20 electrons"):
        atoms.get_potential_energy()
    assert calls(tmp_path / "job") == []


# -- the inputs each engine writes ---------------------------------------------------

def parse_orca_input(path):
    """(simple-input words, %-block lines, charge, mult, symbols, positions)."""
    words, blocks, symbols, positions = [], [], [], []
    charge = mult = None
    in_geometry = False
    with open(path) as fd:
        for line in fd:
            s = line.strip()
            if in_geometry:
                if s == "*":
                    in_geometry = False
                    continue
                f = s.split()
                symbols.append(f[0])
                positions.append([float(x) for x in f[1:4]])
            elif s.startswith("!"):
                words += s[1:].split()
            elif s.startswith("%"):
                blocks.append(s)
            elif s.startswith("*"):
                f = s.lstrip("*").split()
                assert f[0].lower() == "xyz"   # Cartesian, Angstrom
                charge, mult = int(f[1]), int(f[2])
                in_geometry = True
    return words, blocks, charge, mult, symbols, np.array(positions)


@pytest.mark.parametrize("charge, multiplicity", [(0, 1), (1, 2)])
def test_orca_input(fake_orca, tmp_path, charge, multiplicity):
    calc = engine_module("orca").make_calculator(
        charge=charge, multiplicity=multiplicity, workdir=str(tmp_path / "job"),
        nprocs=4, memory_mb=1500)
    atoms = water_dimer()
    calc.write_input(atoms)
    words, blocks, q, mult, symbols, positions = parse_orca_input(calc.last_input)
    upper = [w.upper() for w in words]
    assert upper[:2] == ["HF", "D3ZERO"]          # HF-D3: D3 with zero damping
    assert "6-31G" in upper and "ENGRAD" in upper  # basis; energy + gradient job
    assert (q, mult) == (charge, multiplicity)
    assert symbols == atoms.get_chemical_symbols()
    np.testing.assert_allclose(positions, atoms.positions, atol=1e-9)   # Angstrom
    assert "%pal nprocs 4 end" in blocks and "%maxcore 1500" in blocks


def test_orca_composite_method_has_no_basis(fake_orca, tmp_path):
    calc = engine_module("orca").make_calculator(method="r2scan-3c",
                                                 workdir=str(tmp_path / "job"))
    calc.write_input(water_dimer())
    words = parse_orca_input(calc.last_input)[0]
    assert words[:2] == ["r2SCAN-3c", "EnGrad"]
    retry = engine_module("orca").make_calculator(workdir=str(tmp_path / "retry"),
                                                  **engine_module("orca").safer_settings(1))
    retry.write_input(water_dimer())
    words, blocks = parse_orca_input(retry.last_input)[:2]
    assert "SlowConv" in words and "%scf maxiter 500 end" in blocks


@pytest.mark.parametrize("charge, multiplicity", [(0, 1), (1, 2)])
def test_gaussian_input(fake_gaussian, tmp_path, charge, multiplicity):
    calc = engine_module("gaussian").make_calculator(
        charge=charge, multiplicity=multiplicity, workdir=str(tmp_path / "job"), nprocs=4)
    atoms = water_dimer()
    atoms.pbc = True   # a crystal's fragment: no translation vectors may be written
    atoms.cell = [20, 20, 20]
    calc.write_input(atoms)
    back = read(calc.last_input, format="gaussian-in", attach_calculator=True)
    p = back.calc.parameters
    assert (p["method"], p["basis"]) == ("hf", "6-31g")
    assert p["empiricaldispersion"] == "gd3"       # -D3: zero damping
    assert "force" in p and "nosymm" in p         # gradient; keep our orientation
    assert p["scf"] == "maxcycle=128" and p["nprocshared"] == "4"
    assert (p["charge"], p["mult"]) == (charge, multiplicity)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-9)   # Angstrom
    assert "TV" not in open(calc.last_input).read()


def parse_terachem_input(path):
    keys = {}
    with open(path) as fd:
        for line in fd:
            f = line.split()
            if f and f[0] != "end" and not f[0].startswith("#"):
                assert f[0] not in keys, "keyword %s twice" % f[0]
                keys[f[0]] = " ".join(f[1:])
    return keys


@pytest.mark.parametrize("method, charge, multiplicity, tc_method, dispersion", [
    ("HF-D3", 0, 1, "rhf", "d3"),
    ("HF-D3", 1, 2, "uhf", "d3"),
    ("B3LYP", 0, 1, "b3lyp", "no"),
    ("B3LYP-D3", -1, 2, "ub3lyp", "d3"),
])
def test_terachem_input(fake_terachem, tmp_path, method, charge, multiplicity,
                        tc_method, dispersion):
    calc = engine_module("terachem").make_calculator(
        method=method, charge=charge, multiplicity=multiplicity,
        workdir=str(tmp_path / "job"), gpus=2)
    atoms = water_dimer()
    calc.write_input(atoms)
    keys = parse_terachem_input(calc.last_input)
    assert keys["run"] == "gradient"
    assert keys["method"] == tc_method and keys["basis"] == "6-31g"
    assert keys["dispersion"] == dispersion
    assert (int(keys["charge"]), int(keys["spinmult"])) == (charge, multiplicity)
    assert keys["units"] == "angstrom" and keys["scrdir"] == "scr" and keys["gpus"] == "2"
    xyz = read(os.path.join(calc.workdir, keys["coordinates"]), format="xyz")
    assert xyz.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(xyz.positions, atoms.positions, atol=1e-9)
    assert open(calc.last_input).read().rstrip().endswith("end")


def test_terachem_extra_keywords_replace_defaults(fake_terachem, tmp_path):
    module = engine_module("terachem")
    calc = module.make_calculator(workdir=str(tmp_path / "job"),
                                  keywords={"convthre": "1e-6"}, **module.safer_settings(2))
    calc.write_input(water_dimer())
    keys = parse_terachem_input(calc.last_input)
    assert keys["maxit"] == "1000" and keys["scf"] == "diis+a"
    assert keys["levelshift"] == "yes" and keys["convthre"] == "1e-6"


@pytest.mark.parametrize("method, charge, multiplicity", [
    ("RI-BP86", 0, 1), ("RI-BP86-D3", 1, 2), ("HF", -1, 2)])
def test_turbomole_input(fake_turbomole, tmp_path, method, charge, multiplicity):
    calc = engine_module("turbomole").make_calculator(
        method=method, charge=charge, multiplicity=multiplicity,
        workdir=str(tmp_path / "job"))
    atoms = water_dimer()
    calc.write_input(atoms)
    coord = os.path.join(calc.workdir, "coord")
    back = read(coord, format="turbomole")
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-9)
    rows = [ln.split() for ln in open(coord) if not ln.startswith("$")]
    raw = np.array([[float(x) for x in r[:3]] for r in rows])
    np.testing.assert_allclose(raw, atoms.positions / Bohr, atol=1e-9)   # Bohr
    script = open(os.path.join(calc.workdir, "define.inp")).read().split("\n")
    assert "a coord" in script and "bb all def-SV(P)" in script
    eht = script.index("eht")
    assert script[eht + 2] == str(charge)          # eht, accept, charge
    if method.startswith("RI-"):
        assert "func b-p" in script
        assert script[script.index("ri") + 1] == "on"
    else:
        assert "dft" not in script and "ri" not in script
    if multiplicity == 1:
        assert script[eht + 3] == "y"              # closed-shell occupation accepted
    else:
        assert "n" in script[eht + 3:eht + 6]      # open shell: UHF orbitals


# -- reading the documented outputs ---------------------------------------------------

def copy_outputs(workdir, pairs):
    os.makedirs(workdir, exist_ok=True)
    for src, dst in pairs:
        with open(os.path.join(OUTPUTS, src)) as fd, open(os.path.join(workdir, dst), "w") as out:
            out.write(fd.read())


def check_results(energy, forces):
    assert energy == pytest.approx(EXPECTED_ENERGY, abs=1e-8)
    np.testing.assert_allclose(forces, EXPECTED_FORCES, atol=1e-9)
    # by hand: E = -152.0123 Eh = -4136.467 eV; dE/dx1 = +0.01 Eh/bohr = +0.514 eV/A
    assert energy == pytest.approx(-4136.4666, abs=1e-3)
    assert forces[0][0] == pytest.approx(-0.514221, abs=1e-6)


def test_read_orca_output(fake_orca, tmp_path):
    calc = engine_module("orca").make_calculator(workdir=str(tmp_path / "job"))
    copy_outputs(calc.workdir, [("orca.out", "orca.out"), ("orca.engrad", "orca.engrad")])
    check_results(*calc.read_output(water_dimer()))


def test_read_gaussian_log(fake_gaussian, tmp_path):
    calc = engine_module("gaussian").make_calculator(workdir=str(tmp_path / "job"))
    copy_outputs(calc.workdir, [("gaussian.log", "gaussian.log")])
    check_results(*calc.read_output(water_dimer()))   # the log holds forces, not gradients


def test_read_terachem_output(fake_terachem, tmp_path):
    from qrefine.engines.terachem_engine import parse_output
    with open(os.path.join(OUTPUTS, "terachem.out")) as fd:
        text = fd.read()
    energy, gradient = parse_output(text, 6)
    assert energy == ENERGY_HARTREE
    np.testing.assert_array_equal(gradient, GRADIENT)
    with pytest.raises(ValueError, match="6 rows for 5 atoms"):
        parse_output(text, 5)
    with pytest.raises(ValueError, match="FINAL ENERGY"):
        parse_output(text.replace("FINAL ENERGY", "LAST ENERGY"), 6)
    calc = engine_module("terachem").make_calculator(workdir=str(tmp_path / "job"))
    copy_outputs(calc.workdir, [("terachem.out", "tc.out")])
    check_results(*calc.read_output(water_dimer()))


def test_read_turbomole_gradient(fake_turbomole, tmp_path):
    calc = engine_module("turbomole").make_calculator(workdir=str(tmp_path / "job"))
    copy_outputs(calc.workdir, [("turbomole_gradient", "gradient")])
    check_results(*calc.read_output(water_dimer()))
    moved = water_dimer()
    moved.positions[0, 0] += 0.01
    with pytest.raises(EngineFailed, match="another geometry"):
        calc.read_output(moved)


# -- whole calculations with fake programs ---------------------------------------------

def test_orca_end_to_end(fake_orca, tmp_path):
    workdir = tmp_path / "job"
    calc = engine_module("orca").make_calculator(workdir=str(workdir))
    atoms = water_dimer()
    atoms.calc = calc
    check_results(atoms.get_potential_energy(), atoms.get_forces())
    (run,) = calls(workdir)
    assert run["argv"] == [fake_orca, "orca.inp"]      # full path to the binary
    assert run["cwd"] == str(workdir)
    assert calc.n_calls == 1
    atoms.get_forces()                                  # cached: no second run
    assert calc.n_calls == 1


@pytest.mark.parametrize("mode, reason", [
    ("crash", "exited with status 3: fake orca: orca_scf returned a segmentation fault"),
    ("bad", "ORCA finished by error termination in SCF"),
])
def test_orca_failure(fake_orca, tmp_path, monkeypatch, mode, reason):
    monkeypatch.setenv("FAKE_QM_MODE", mode)
    workdir = tmp_path / "job"
    atoms = water_dimer()
    atoms.calc = engine_module("orca").make_calculator(workdir=str(workdir))
    with pytest.raises(EngineFailed) as e:
        atoms.get_forces()
    message = str(e.value)
    assert message.startswith("ORCA HF-D3 failed in %s: " % workdir)
    assert reason in message
    assert (workdir / "orca.inp").is_file()


def test_orca_never_reads_a_previous_gradient(fake_orca, tmp_path, monkeypatch):
    workdir = tmp_path / "job"
    calc = engine_module("orca").make_calculator(workdir=str(workdir))
    atoms = water_dimer()
    atoms.calc = calc
    atoms.get_forces()
    monkeypatch.setenv("FAKE_QM_MODE", "no_engrad")   # writes orca.out, no orca.engrad
    atoms.positions[0, 0] += 0.01
    with pytest.raises(EngineFailed, match="no gradient file orca.engrad"):
        atoms.get_forces()


def test_gaussian_end_to_end(fake_gaussian, tmp_path):
    workdir = tmp_path / "job"
    calc = engine_module("gaussian").make_calculator(workdir=str(workdir))
    atoms = water_dimer()
    atoms.calc = calc
    check_results(atoms.get_potential_energy(), atoms.get_forces())
    (run,) = calls(workdir)
    assert run["argv"] == [fake_gaussian]
    assert run["stdin"] == open(calc.last_input).read()   # input on stdin
    assert run["env"]["GAUSS_EXEDIR"] == os.path.dirname(fake_gaussian)
    assert run["env"]["GAUSS_SCRDIR"] == str(workdir)


@pytest.mark.parametrize("mode, reason", [
    ("crash", "g16 exited with status 1"),
    ("bad", "Error termination via Lnk1e"),
])
def test_gaussian_failure(fake_gaussian, tmp_path, monkeypatch, mode, reason):
    monkeypatch.setenv("FAKE_QM_MODE", mode)
    workdir = tmp_path / "job"
    atoms = water_dimer()
    atoms.calc = engine_module("gaussian").make_calculator(method="B3LYP-D3",
                                                           workdir=str(workdir))
    with pytest.raises(EngineFailed) as e:
        atoms.get_potential_energy()
    assert str(e.value).startswith("Gaussian B3LYP-D3 failed in %s: " % workdir)
    assert reason in str(e.value)
    if mode == "bad":
        assert "Convergence failure" in str(e.value)
    assert (workdir / "gaussian.com").is_file()


def test_terachem_end_to_end(fake_terachem, tmp_path):
    workdir = tmp_path / "job"
    calc = engine_module("terachem").make_calculator(workdir=str(workdir))
    atoms = water_dimer()
    atoms.calc = calc
    check_results(atoms.get_potential_energy(), atoms.get_forces())
    (run,) = calls(workdir)
    root = str(tmp_path / "terachem")
    assert run["argv"] == [fake_terachem, "tc.in"]
    assert run["env"]["TeraChem"] == root
    assert run["env"]["LD_LIBRARY_PATH"].split(os.pathsep)[0] == os.path.join(root, "lib")
    assert "tc.in" in run["files"] and "tc.xyz" in run["files"]


@pytest.mark.parametrize("mode, reason", [
    ("crash", "terachem exited with status 1: fake terachem: no CUDA-capable device"),
    ("bad", "DIE called at line 42"),
])
def test_terachem_failure(fake_terachem, tmp_path, monkeypatch, mode, reason):
    monkeypatch.setenv("FAKE_QM_MODE", mode)
    workdir = tmp_path / "job"
    atoms = water_dimer()
    atoms.calc = engine_module("terachem").make_calculator(workdir=str(workdir))
    with pytest.raises(EngineFailed) as e:
        atoms.get_forces()
    assert str(e.value).startswith("TeraChem HF-D3 failed in %s: " % workdir)
    assert reason in str(e.value)
    assert (workdir / "tc.in").is_file() and (workdir / "tc.xyz").is_file()


@pytest.mark.parametrize("method, programs, disp3", [
    ("RI-BP86", ["define", "ridft", "rdgrad"], False),
    ("RI-PBE-D3", ["define", "ridft", "rdgrad"], True),
    ("HF", ["define", "dscf", "grad"], False),
])
def test_turbomole_end_to_end(fake_turbomole, tmp_path, method, programs, disp3):
    workdir = tmp_path / "job"
    calc = engine_module("turbomole").make_calculator(method=method, workdir=str(workdir),
                                                      nprocs=2)
    atoms = water_dimer()
    atoms.calc = calc
    check_results(atoms.get_potential_energy(), atoms.get_forces())
    runs = calls(workdir)
    assert [r["program"] for r in runs] == programs
    assert runs[0]["stdin"] == open(workdir / "define.inp").read()
    assert runs[1]["env"]["PARA_ARCH"] == "SMP" and runs[1]["env"]["PARNODES"] == "2"
    control = open(workdir / "control").read().split("\n")
    assert ("$disp3" in control) is disp3
    if disp3:
        assert control.index("$disp3") < control.index("$end")
    # next geometry: coord rewritten, define not run again (previous orbitals kept)
    atoms.positions[0, 0] += 0.05
    atoms.get_forces()
    assert [r["program"] for r in calls(workdir)] == programs + programs[1:]
    np.testing.assert_allclose(read(str(workdir / "coord"), format="turbomole").positions,
                               atoms.positions, atol=1e-9)


@pytest.mark.parametrize("mode, reason", [
    ("crash", "ridft exited with status 13: ridft ended abnormally"),
    ("bad", "ridft: SCF did not converge"),
])
def test_turbomole_failure(fake_turbomole, tmp_path, monkeypatch, mode, reason):
    monkeypatch.setenv("FAKE_QM_MODE", mode)
    workdir = tmp_path / "job"
    atoms = water_dimer()
    atoms.calc = engine_module("turbomole").make_calculator(workdir=str(workdir))
    with pytest.raises(EngineFailed) as e:
        atoms.get_forces()
    assert str(e.value).startswith("Turbomole RI-BP86 failed in %s: " % workdir)
    assert reason in str(e.value)
    for name in ("coord", "define.inp", "control"):
        assert (workdir / name).is_file()
    assert [r["program"] for r in calls(workdir)] == ["define", "ridft"]


@pytest.mark.parametrize("name", ENGINES)
def test_temporary_workdir_removed_unless_failed(request, monkeypatch, name):
    request.getfixturevalue(FAKES[name])
    module = engine_module(name)
    atoms = water_dimer()
    atoms.calc = module.make_calculator()
    workdir = atoms.calc.workdir
    atoms.get_forces()
    assert os.path.isdir(workdir)
    atoms.calc = None
    gc.collect()
    assert not os.path.exists(workdir)

    monkeypatch.setenv("FAKE_QM_MODE", "crash")
    atoms.calc = module.make_calculator()
    workdir = atoms.calc.workdir
    with pytest.raises(EngineFailed):
        atoms.get_forces()
    atoms.calc = None
    gc.collect()
    assert os.path.isdir(workdir)       # kept for inspection
    shutil.rmtree(workdir)


def test_no_printing(fake_orca, fake_gaussian, tmp_path, capfd):
    for name in ("orca", "gaussian"):
        atoms = water_dimer()
        atoms.calc = engine_module(name).make_calculator(workdir=str(tmp_path / name))
        atoms.get_forces()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("name", ["xtb", "mopac", "pyscf"])
def test_every_engine_refuses_an_impossible_spin_alike(name, tmp_path):
    """The engines that run here share the one spin rule
    (qrefine/engines/electrons.py) with the file-boundary engines above: the
    same line, naming the engine, before any calculation."""
    module = engine_module(name)
    ok, note = module.availability()
    if not ok:
        pytest.skip(note)
    calc = module.make_calculator(multiplicity=2, workdir=str(tmp_path / "job"))
    atoms = water_dimer()
    atoms.calc = calc
    with pytest.raises(QRefineError, match=r"^(xtb|MOPAC|PySCF): multiplicity 2 does not fit "
                                           r"20 electrons: an even electron count needs an odd"):
        atoms.get_potential_energy()
