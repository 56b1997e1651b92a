"""Every command line the README and docs/ show must still be a valid one:
each ``key=value`` names a parameter of that command, and each literal value
is one the command accepts.  (The quick start is also run in full, by
test_refine_end_to_end.py::test_readme_quick_start.)  Placeholders
(``<dir>``, ``a|b``, ``...``) are checked for their key only."""

import glob
import os
import re
import shlex

import iotbx.phil
import pytest

from qrefine.config import phil
from qrefine.finalise.params import MASTER_PHIL_STR as FINALISE
from qrefine.scripts.charges import MASTER_PHIL_STR as CHARGES
from qrefine.scripts.comparama import MASTER_PHIL_STR as COMPARAMA
from qrefine.scripts.fragments import MASTER_PHIL_STR as FRAGMENTS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MASTERS = {"qr.refine": phil.MASTER_PHIL_STR, "qr.finalise": FINALISE,
           "qr.comparama": COMPARAMA, "qr.charges": CHARGES, "qr.fragments": FRAGMENTS,
           "qr.setup": "chem_data = None\n .type = path\ndestination = None\n .type = path\n"}
DOCUMENTS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def command_lines(text):
    """(command, [arguments]) for every qr.* command in a code block or in
    backticks, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for m in re.finditer(r"(?:^ {4}|`)(qr\.[a-z]+)((?: [^`\n]*)?)", text, re.M):
        words = shlex.split(m.group(2).replace("[", " ").replace("]", " "))
        found.append((m.group(1), words))
    return found


def examples():
    out = []
    for path in DOCUMENTS:
        if not os.path.exists(path):  # an installed copy without the sources
            continue
        for command, words in command_lines(open(path).read()):
            out.append(pytest.param(command, words, id="%s: %s %s" % (
                os.path.basename(path), command, " ".join(words))[:90]))
    return out


def _known(key, master):
    return bool(master.get(key).objects) or phil._leaf_matches(master, key)


@pytest.mark.parametrize("command,words", examples())
def test_documented_command_line_is_valid(command, words):
    assert command in MASTERS, "%s is not a qrefine command" % command
    master = iotbx.phil.parse(MASTERS[command])
    literal = []
    for word in words:
        if "=" not in word or word.startswith(("-", "$")) or word == "key=value":
            continue  # files, options, and the usage line's generic key=value
        key, value = word.split("=", 1)
        assert _known(key, master), "%s: unknown parameter %r" % (command, key)
        if value and not re.search(r"[<|]|\.\.\.", value):
            literal.append(word)
    if literal:
        phil.parse(literal, master_str=MASTERS[command], program=command)  # bad values raise


def test_the_extractor_finds_every_form():
    text = ("    qr.refine m.pdb resolution=3.8 \\\n        engine=xtb\n"
            "see `qr.charges model.pdb multiplicity=2` and `qr.setup --check`\n")
    assert command_lines(text) == [("qr.refine", ["m.pdb", "resolution=3.8", "engine=xtb"]),
                                   ("qr.charges", ["model.pdb", "multiplicity=2"]),
                                   ("qr.setup", ["--check"])]
    master = iotbx.phil.parse(MASTERS["qr.refine"])
    assert not _known("resolutoin", master) and _known("basis", master)
