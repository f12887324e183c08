"""Carry the process environment the commands write to, so tests can swap it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

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
