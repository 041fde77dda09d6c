"""Errors a user can act on.

The command line turns every :class:`IgikitError` into one line on stderr and exit code 2; library
users catch them like any exception. Messages name the file (where there is one) and the problem.
"""

from __future__ import annotations

from pathlib import Path


class IgikitError(Exception):
    """Base class of every error igikit raises on purpose."""


class InputError(IgikitError, ValueError):
    """An input (file, array, option) is missing, malformed or inconsistent.

    Parameters
    ----------
    message
        What is wrong, in words a user can act on.
    path
        The file the problem is in, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.problem = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class GeometryError(InputError):
    """Two images (or an image and a mask) do not share the geometry an operation needs."""


class SafetyError(IgikitError):
    """A safety condition was violated in a way that must stop the workflow."""
