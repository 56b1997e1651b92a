"""The one user-facing error type.

Every problem a user can fix (bad input, missing data, a setting that makes
no sense) is raised as :class:`QRefineError`.  The command-line glue prints
``str(error)`` as a single line and exits with status 1; nothing else in the
package prints or exits.
"""

import errno
import os


class QRefineError(Exception):
    """A problem the user can act on.  ``str()`` is always one line."""

    def __init__(self, message):
        # Fold accidental newlines so the message stays one line on a terminal.
        super().__init__(" ".join(str(message).split()))


def output_error(path, error, action="write"):
    """An OSError from writing ``path`` as one line: the file, the reason and
    what to do.  A full disk or a read-only directory is the environment, not
    a bug, so it ends as bad input (exit 1), not as an internal error."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free space or choose another output.dir="
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make %s writable or choose another output.dir=" % os.path.dirname(path)
    else:
        hint = "check the disk or choose another output.dir="
    return QRefineError("cannot %s %s: %s; %s" % (action, path, error.strerror or error, hint))
