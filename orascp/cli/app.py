"""Start the ``orascp`` command line and turn errors into exit codes.

``orascp --version`` is answered before typer, rich or httpx is imported: scripts call it often and
it should cost no more than starting Python.
"""

from __future__ import annotations

import sys

__all__ = ["main", "print_version"]


def print_version() -> None:
    """Print ``orascp <version>`` on stdout."""
    from orascp import __version__

    sys.stdout.write(f"orascp {__version__}\n")


def main() -> None:
    """Run the command line and exit with its status."""
    if sys.argv[1:] == ["--version"]:
        print_version()
        sys.exit(0)
    from orascp.cli.root import app

    app()
