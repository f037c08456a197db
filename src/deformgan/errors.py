"""The errors a user sees: one line naming the file, row or argument and what was expected.

The command line prints them as ``error: <message>`` and exits with status 2 (:class:`InputError`: bad
input) or 1 (:class:`RunFailed`: a run that cannot go on, e.g. a full disk or a diverged loss), never with
a traceback.
"""

from __future__ import annotations


class DeformganError(Exception):
    """Base of the one-line errors deformgan raises for users."""


class InputError(DeformganError, ValueError):
    """Bad user input: the message is one line naming the file/row/argument and what was expected."""


class RunFailed(DeformganError, RuntimeError):
    """A run stopped by something other than its input (disk full, non-finite loss); the message says what
    was kept (e.g. which checkpoint is intact)."""


class Interrupted(DeformganError):
    """A run stopped by Ctrl-C or SIGTERM after saving what it had (the message says where)."""
