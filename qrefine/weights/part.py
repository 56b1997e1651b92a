"""Weight trials on part of a large model (seed 000, section 2.1).

A map is local: an atom's fit depends on the density around it, not on the
rest of the model, so the data weight that balances fit and geometry in one
compact part of a model balances them in the whole (both terms are sums over
atoms, and the weight is their ratio).  phenix.real_space_refine and Q|R
search the weight on a fraction of the model for that reason.  Here the
trials refine only the atoms of a compact part, every other atom held
still, and the restraints are computed for what the part needs:

- library restraints: the whole model's (they cost milliseconds);
- QM restraints: only the fragments holding the part's residues (the part
  as one fragment when the model is otherwise computed whole, the part's
  clusters when it is computed on fragments).  That is what makes the
  trials cheap: a QM gradient's cost grows faster than the atom count.

The final refinement is of the whole model, from the chosen trial's sites.

The part: whole residues around the residue nearest the model's centre of
mass, nearest first, until ``n_atoms`` atoms: a ball, which as one QM
fragment has the fewest buffer atoms per part atom.
"""

from dataclasses import dataclass

import numpy as np


# A part pays only on a model several times its size: its QM fragment is
# the part and every residue within fragments.buffer (8 A) of it.  On
# 5fn5_C (3787 atoms) a 1002-atom ball took 1884 buffer atoms, a fragment
# of 2894 atoms whose GFN-FF gradient (growing as N^2) cost over half the
# whole model's, and the first trial took 988 s; on 1oed (10,260 atoms)
# the same fragment is 28 % of the model.
PART_FRACTION = 4


def wanted(n_atoms, part_atoms):
    """Whether trials use a part (``weights.part_atoms``): a model of more
    than PART_FRACTION times that many atoms."""
    return part_atoms > 0 and n_atoms > PART_FRACTION * part_atoms


def residue_atoms(hierarchy):
    """Atom indices of each residue group of the first model, in the order
    of :func:`qrefine.fragments.graph.model_residues`."""
    first = hierarchy.models()[0]
    return [np.array(sorted(rg.atoms().extract_i_seq()), dtype=int)
            for chain in first.chains() for rg in chain.residue_groups()]


def part_residues(residues, sites_cart, n_atoms):
    """Indices into ``residues`` (atom index arrays) of a compact part of at
    least ``n_atoms`` atoms, ascending."""
    sites = np.asarray(sites_cart, dtype=float)
    centres = np.array([sites[atoms].mean(axis=0) for atoms in residues])
    middle = sites.mean(axis=0)
    seed = int(np.argmin(((centres - middle) ** 2).sum(axis=1)))
    order = np.argsort(((centres - centres[seed]) ** 2).sum(axis=1), kind="stable")
    sizes = np.array([len(residues[i]) for i in order])
    count = min(len(order), int(np.searchsorted(np.cumsum(sizes), n_atoms) + 1))
    return np.sort(order[:count])


def part_mask(residues, chosen, n_atoms_model):
    """Boolean mask over the model's atoms: True for the atoms of ``chosen``."""
    mask = np.zeros(n_atoms_model, dtype=bool)
    for i in chosen:
        mask[residues[i]] = True
    return mask


@dataclass
class TrialPart:
    """What the weight trials move: ``mask`` (atoms), ``residues`` (their
    indices), and the restraint source for them (None: the whole model's)."""
    mask: np.ndarray
    residues: np.ndarray
    restraints: object = None

    def close(self):
        if self.restraints is not None:
            self.restraints.close()


class HeldStill:
    """A restraint or data term whose gradient is zero outside ``moving``.

    L-BFGS then never moves the other atoms: its first direction is minus
    the gradient, and every later one is built from steps and gradient
    changes that are zero there too.  The value is the term's own (the
    frozen atoms add a constant).  Everything else (``update``,
    ``statistics``, ``kind``, ``start_cycle``, ...) is the term's.
    """

    def __init__(self, term, moving):
        self._term = term
        self._moving = np.asarray(moving, dtype=bool)[:, None]

    def value_and_gradient(self, sites_cart):
        value, grad = self._term.value_and_gradient(sites_cart)
        return value, np.where(self._moving, grad, 0.0)

    def __getattr__(self, name):
        return getattr(self._term, name)
