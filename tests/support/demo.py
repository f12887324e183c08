"""Show orascp's main job against a real local registry: push, mount across repos, export.

Run it with ``bash .ci/run demo`` (which installs what it needs first) or, once set up,
``.venv/bin/python -m tests.support.demo``. Everything happens on 127.0.0.1 and in a temporary
directory; the registry is stopped at the end and the exported layout is left for you to look at.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import artifacts
from tests.support.registry import Registry


def _orascp() -> list[str]:
    found = shutil.which("orascp", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "orascp"]


def _run(*args: str) -> None:
    print(f"\n$ orascp {shlex.join(args)}", flush=True)
    subprocess.run([*_orascp(), *args], check=True)


def main() -> None:
    """Run the demo."""
    work = Path(tempfile.mkdtemp(prefix="orascp-demo-"))
    # The registry lives only as long as the demo: keep its blob locations out of the user's
    # own cache (orascp's subprocesses inherit this).
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    sample = work / "sample-layout"
    exported = work / "exported-layout"
    artifact = artifacts.sample_image("demo", layers=3, size=2 * 1024 * 1024)
    artifacts.write_layout(sample, artifact, "v1")
    with Registry(work, name="registry") as registry:
        host = registry.host
        print(f"Started docker-registry on {host} (storage in {registry.storage})")
        print(f"Wrote a sample image (3 layers of 2 MiB) to the OCI layout {sample}")

        _run("cp", "--from-oci-layout", f"{sample}:v1", f"{host}/team-a/app:v1")
        mark = registry.mark()
        _run("cp", f"{host}/team-a/app:v1", f"{host}/team-b/app:v1,latest")
        counts = registry.counts(mark)
        moved = counts["blob GET"] + counts["upload PUT"]
        print(
            f"\nThe registry's access log for that copy: {counts['mount POST 201']} mount POSTs"
            f" answered 201, {moved} blob downloads or uploads."
        )
        _run("cp", f"{host}/team-b/app:latest", "--to-oci-layout", f"{exported}:v1")
        _run("cp", f"{host}/team-a/app:v1", f"{host}/team-b/app:v1")
    print(f"\nThe exported OCI layout is in {exported}")


if __name__ == "__main__":
    main()
