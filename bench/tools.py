"""Command lines of the tools compared: orascp, skopeo and the curl floors."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.artifacts import Artifact
from bench.measure import Outcome, run_shell_timed

SKOPEO = "/usr/bin/skopeo"
CURL_PARALLEL = 4

_UPLOAD_SCRIPT = """\
#!/bin/sh
# usage: upload.sh HOST REPO DIGEST FILE -- POST an upload, then PUT the whole file into it.
set -eu
loc=$(curl -sS -f -X POST -o /dev/null -D - "http://$1/v2/$2/blobs/uploads/" \\
      | tr -d '\\r' | sed -n 's/^[Ll]ocation: *//p')
[ -n "$loc" ] || { echo "upload POST for $3 gave no Location" >&2; exit 1; }
case $loc in http*) ;; *) loc="http://$1$loc" ;; esac
case $loc in *\\?*) sep='&' ;; *) sep='?' ;; esac
curl -sS -f -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \\
     --data-binary "@$4" -o /dev/null "$loc${sep}digest=$3"
"""


def find_orascp() -> list[str]:
    """Return the command that runs orascp: the venv's console script, else ``python -m``."""
    found = shutil.which("orascp", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "orascp"]


def interpreter_of(command: list[str]) -> str:
    """Return the Python interpreter that runs ``command`` (a console script's shebang)."""
    if len(command) > 1:
        return command[0]
    try:
        with open(command[0], "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    return sys.executable


def first_line(argv: list[str]) -> str:
    """Return the first line a command prints (``--version``), or why it could not run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


@dataclass(frozen=True)
class Orascp:
    """Build orascp command lines."""

    command: tuple[str, ...]
    extra: tuple[str, ...] = ()

    def cp(
        self,
        src: str,
        dst: str,
        *,
        blob_cache: Path | None,
        from_layout: bool = False,
        to_layout: bool = False,
    ) -> list[str]:
        """Return ``orascp cp`` from ``src`` to ``dst``, with the layout flags asked for.

        ``blob_cache`` is the blob-location cache file to use, ``None`` for ``--no-blob-cache``.
        It has no default on purpose: the user's own cache (the default path) is never used,
        and every caller says which cache its runs see.
        """
        flags = [*self.extra]
        if blob_cache is None:
            flags.append("--no-blob-cache")
        else:
            flags += ["--blob-cache", str(blob_cache)]
        if from_layout:
            flags.append("--from-oci-layout")
        if to_layout:
            flags.append("--to-oci-layout")
        return [*self.command, "cp", *flags, src, dst]


def skopeo_copy(src: str, dst: str) -> list[str]:
    """Return ``skopeo copy`` from ``src`` to ``dst`` (transport-prefixed), plain HTTP allowed."""
    flags = []
    if src.startswith("docker://"):
        flags.append("--src-tls-verify=false")
    if dst.startswith("docker://"):
        flags.append("--dest-tls-verify=false")
    return [SKOPEO, "--insecure-policy", "copy", *flags, src, dst]


def skopeo_cache_files() -> list[Path]:
    """Return the paths of skopeo's blob-info cache for this user (they may not exist)."""
    if os.geteuid() == 0:
        base = Path("/var/lib/containers/cache")
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        base = Path(data) / "containers" / "cache"
    return [base / "blob-info-cache-v1.boltdb", base / "blob-info-cache-v1.sqlite"]


def clear_skopeo_cache() -> None:
    """Delete skopeo's blob-info cache so the next skopeo run starts cold."""
    for path in skopeo_cache_files():
        path.unlink(missing_ok=True)


class SkopeoCacheGuard:
    """Move the user's skopeo blob-info cache aside for the benchmark and put it back after.

    Cold runs delete the cache; whatever was there before the benchmark is restored at the end,
    and the cache directory is removed again if the benchmark's skopeo runs created it.
    """

    def __init__(self, stash: Path) -> None:
        self._stash = stash
        self._moved: list[tuple[Path, Path]] = []
        self._created: list[Path] = []

    def __enter__(self) -> SkopeoCacheGuard:
        self._stash.mkdir(parents=True, exist_ok=True)
        for path in skopeo_cache_files():
            if path.exists():
                kept = self._stash / path.name
                shutil.move(path, kept)
                self._moved.append((path, kept))
        cache_dir = skopeo_cache_files()[0].parent
        self._created = [d for d in (cache_dir, cache_dir.parent) if not d.exists()]
        return self

    def __exit__(self, *exc: object) -> None:
        clear_skopeo_cache()
        for path, kept in self._moved:
            shutil.move(kept, path)
        for directory in self._created:  # innermost first
            with contextlib.suppress(OSError):
                directory.rmdir()


class CurlFloors:
    """Run the curl floors: the least HTTP work each scenario needs, with no client logic."""

    def __init__(self, workdir: Path, timeout: float) -> None:
        self._script = workdir / "upload.sh"
        self._script.write_text(_UPLOAD_SCRIPT)
        self._timeout = timeout

    def mount(self, host: str, src_repo: str, dst_repo: str, artifact: Artifact) -> Outcome:
        """POST one cross-repository mount per blob, sequentially in one curl process."""
        urls = [
            f"http://{host}/v2/{dst_repo}/blobs/uploads/?mount={b.digest}&from={src_repo}"
            for b in artifact.blobs
        ]
        args = " ".join(f"-o /dev/null '{u}'" for u in urls)
        script = f"curl -sS -X POST -w '%{{http_code}}\\n' {args}"
        outcome = run_shell_timed(script, timeout=self._timeout)
        codes = outcome.stdout.split()
        if outcome.ok and codes != ["201"] * len(urls):
            return _failed(outcome, f"mount answers {codes}, expected 201 for each blob")
        return outcome

    def upload(self, host: str, dst_repo: str, artifact: Artifact) -> Outcome:
        """POST+PUT every blob from its local file, ``CURL_PARALLEL`` at a time."""
        lines = "".join(f"{b.digest} {b.path}\n" for b in artifact.blobs)
        script = f"xargs -P {CURL_PARALLEL} -n 2 sh {self._script} {host} {dst_repo}"
        return run_shell_timed(script, timeout=self._timeout, stdin=lines)

    def download(self, host: str, src_repo: str, artifact: Artifact) -> Outcome:
        """GET every blob to /dev/null, ``CURL_PARALLEL`` at a time."""
        lines = "".join(f"http://{host}/v2/{src_repo}/blobs/{b.digest}\n" for b in artifact.blobs)
        script = f"xargs -P {CURL_PARALLEL} -n 1 curl -sS -f -o /dev/null"
        return run_shell_timed(script, timeout=self._timeout, stdin=lines)


def _failed(outcome: Outcome, why: str) -> Outcome:
    """Return ``outcome`` marked as failed with ``why`` as its error text."""
    return Outcome(
        argv=outcome.argv,
        wall=outcome.wall,
        maxrss_kib=outcome.maxrss_kib,
        returncode=outcome.returncode or 1,
        timed_out=outcome.timed_out,
        stdout=outcome.stdout,
        stderr_tail=why,
    )
