"""The one exception type a user sees for bad input (files, rows, arguments)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message is one line naming the file/row/argument and what was expected."""
