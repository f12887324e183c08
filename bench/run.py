"""Benchmark orascp against skopeo and curl floors on two local docker-registry processes.

Run from the repository root::

    python bench/run.py [--quick] [--sizes 1MiB 100MiB 1GiB] [--runs N] [--json PATH]

See bench/README.md for what is measured and how to read the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _main() -> int:
    """Put the repository root on ``sys.path`` (instead of bench/) and run the harness."""
    sys.path[0] = str(REPO_ROOT)
    from bench.harness import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
