"""The one user-facing error type.

Every problem a user can fix (bad input, missing data, a setting that makes
no sense) is raised as :class:`QRefineError`.  The command-line glue prints
``str(error)`` as a single line and exits with status 1; nothing else in the
package prints or exits.
"""


class QRefineError(Exception):
    """A problem the user can act on.  ``str()`` is always one line."""

    def __init__(self, message):
        # Fold accidental newlines so the message stays one line on a terminal.
        super().__init__(" ".join(str(message).split()))
