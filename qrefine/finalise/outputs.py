"""Output names of qr.finalise: <prefix>_complete.pdb/.cif and <prefix>_finalise.log."""

import os

from qrefine.outputs import OutputPaths


class FinalisePaths(OutputPaths):
    def __init__(self, prefix, directory):
        self.prefix = prefix
        self.directory = os.path.abspath(directory)
        base = os.path.join(self.directory, prefix)
        self.pdb = base + "_complete.pdb"
        self.cif = base + "_complete.cif"
        self.log = base + "_finalise.log"

    def all(self):
        return [self.pdb, self.cif, self.log]
