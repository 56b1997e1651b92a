"""The restraint seam: one base class every restraint source derives from.

A source turns sites into a value and its gradient; everything else the
pipeline asks of it has a default here, so callers call instead of probing
attributes, and a new source overrides only what it has.
"""

import abc


class RestraintSource(abc.ABC):
    """Base of every restraint term (library, QM whole model, fragments,
    crystal environment, dual level)."""

    # QM method name, or None for library restraints.
    method = None
    # A dual-level source steps between QM calls (recentre()); see
    # qrefine.restraints.dual_level.
    is_dual_level = False

    @property
    def primary(self):
        """The source whose method and fragments the log reports: this one,
        or a dual level's QM source."""
        return self

    @abc.abstractmethod
    def value_and_gradient(self, sites_cart):
        """(value, gradient (N, 3)) at ``sites_cart`` (N, 3), model order."""

    def start_cycle(self, sites_cart):
        """Called at the start of each macro cycle; no per-cycle state by default."""

    def describe(self):
        """One line for the log: what this source computes."""
        return type(self).__name__

    def timing(self):
        """{name: number} for the summary's timings (engine calls, seconds)."""
        return {}

    def summary(self):
        """QM fragments: clusters and fragment sizes; None for other sources."""
        return None

    def symmetry_summary(self):
        """The crystal environment the source computes with, or None."""
        return None

    def close(self):
        """Release worker processes or files; nothing by default."""
