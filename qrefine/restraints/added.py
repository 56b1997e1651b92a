"""A term added to a QM restraint source, which it otherwise leaves alone.

The clash wall (:mod:`qrefine.restraints.clash`) and the Ramachandran term
(:mod:`qrefine.restraints.ramachandran`) both wrap the QM source the
factory built: the minimiser, the weight search and the log keep talking
to the QM source through this wrapper, and only value and gradient gain
the term.
"""

import abc

import numpy as np

from qrefine.restraints.base import RestraintSource


class AddedTerm(RestraintSource):
    """``inner`` (a restraint source) plus :meth:`term`; everything but the
    value, the gradient and the log line is ``inner``'s."""

    def __init__(self, inner):
        self.inner = inner

    @abc.abstractmethod
    def term(self, sites_cart):
        """(value, gradient (N, 3)) of the added term alone, kcal/mol."""

    @abc.abstractmethod
    def describe_term(self):
        """What the term is, for the log line after the inner source's."""

    # -- the RestraintSource seam: the inner source's, plus the term --------
    @property
    def method(self):
        return self.inner.method

    @property
    def is_dual_level(self):
        return self.inner.is_dual_level

    @property
    def primary(self):
        return self.inner.primary

    def __getattr__(self, name):
        # what a particular source offers besides the seam (recentre, charge...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def describe(self):
        return "%s, with %s" % (self.inner.describe(), self.describe_term())

    def start_cycle(self, sites_cart):
        self.inner.start_cycle(sites_cart)

    def timing(self):
        return self.inner.timing()

    def summary(self):
        return self.inner.summary()

    def symmetry_summary(self):
        return self.inner.symmetry_summary()

    def close(self):
        self.inner.close()

    def value_and_gradient(self, sites_cart):
        value, gradient = self.inner.value_and_gradient(sites_cart)
        extra, extra_gradient = self.term(sites_cart)
        return value + extra, np.asarray(gradient) + extra_gradient
