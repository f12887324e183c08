"""Carry the process environment the commands write to, so tests can swap it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NoReturn, TextIO

from orascp.errors import ExitStatus, InvalidReferenceError, OrascpError, UsageError

__all__ = ["Environment"]


@dataclass(slots=True)
class Environment:
    """Hold the standard streams and what is known about them."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def error(self, message: str, hint: str | None = None) -> None:
        """Print an error as one ``Error:`` line and, where useful, one ``Hint:`` line."""
        self.stderr.write(f"Error: {message}\n")
        if hint:
            self.stderr.write(f"Hint: {hint}\n")
        self.stderr.flush()

    def warn(self, message: str) -> None:
        """Print a one-line warning on stderr."""
        self.stderr.write(f"Warning: {message}\n")
        self.stderr.flush()

    def fail(self, exc: OrascpError, context: str = "") -> NoReturn:
        """Print ``exc`` and exit: 2 for usage and reference errors, 1 for the rest.

        ``context`` prefixes the message of runtime errors (e.g. ``login to HOST failed: ``).
        """
        if isinstance(exc, InvalidReferenceError | UsageError):
            self.error(str(exc), exc.hint)
            sys.exit(ExitStatus.USAGE)
        self.error(f"{context}{exc}", exc.hint)
        sys.exit(ExitStatus.ERROR)
