"""Output names of qr.finalise: <prefix>_complete.pdb/.cif and <prefix>_finalise.log."""

from qrefine.outputs import OutputPaths


class FinalisePaths(OutputPaths):
    def _name_files(self, base):
        self.pdb = base + "_complete.pdb"
        self.cif = base + "_complete.cif"
        self.log = base + "_finalise.log"

    def all(self):
        return [self.pdb, self.cif, self.log]
