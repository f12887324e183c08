"""Run a real CNCF distribution registry (Debian's ``docker-registry``) on a loopback port."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

REGISTRY_BINARY = os.environ.get("ORASCP_REGISTRY_BINARY", "/usr/bin/docker-registry")
# How long a fresh registry may take to answer /v2/ (it starts in well under a second).
STARTUP_DEADLINE = 15.0

_ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


@dataclass(frozen=True)
class Request:
    """One line of the registry's access log."""

    method: str
    path: str
    status: int

    @property
    def kind(self) -> str:
        """Classify the request the way the benchmark counts them."""
        p = self.path.split("?", 1)[0]
        query = self.path.partition("?")[2]
        if "/blobs/uploads/" in p:
            if self.method == "POST":
                if "mount=" in query:
                    return f"mount POST {self.status}"
                return "upload POST"
            return f"upload {self.method}"
        if "/blobs/" in p:
            return f"blob {self.method}"
        if "/manifests/" in p:
            return f"manifest {self.method}"
        return f"other {self.method}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    """Start, inspect and stop one ``docker-registry serve`` process with temporary storage."""

    def __init__(self, workdir: Path, *, name: str = "registry") -> None:
        self.workdir = Path(workdir) / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.access_log = self.workdir / "access.log"
        self.app_log = self.workdir / "app.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """Return ``127.0.0.1:<port>``, the registry part of references."""
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: orascp-test-secret\n"
        )

    def start(self) -> Registry:
        """Start the registry on a free port and wait until it answers."""
        if shutil.which(REGISTRY_BINARY) is None:
            raise RuntimeError(
                f"{REGISTRY_BINARY} is missing: install Debian's docker-registry package"
            )
        for _attempt in range(3):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config())
            with open(self.access_log, "ab") as out, open(self.app_log, "ab") as err:
                self.process = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(config)], stdout=out, stderr=err
                )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start; see {self.app_log}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.02)  # readiness poll, bounded by the deadline above
        return False

    def stop(self) -> None:
        """Stop the registry process."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _barrier(self) -> None:
        """Wait until every request answered so far is in the access log.

        The registry logs a request just after answering it; a marker request, once logged,
        shows that the lines of the requests answered before it are there too.
        """
        marker = f"/v2/?barrier={time.monotonic_ns()}"
        httpx.get(f"http://{self.host}{marker}", timeout=5.0)
        deadline = time.monotonic() + 5.0
        while marker not in self.access_log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not log a request within 5 s")
            time.sleep(0.005)  # event poll, bounded by the deadline

    def requests(self) -> list[Request]:
        """Return every request in the access log so far (probes and markers excluded)."""
        self._barrier()
        out = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            m = _ACCESS_RE.search(line)
            if (
                m
                and not m.group("path").startswith(("/v2/?", "/v2/ "))
                and m.group("path") != "/v2/"
            ):
                out.append(Request(m.group("method"), m.group("path"), int(m.group("status"))))
        return out

    def mark(self) -> int:
        """Return the number of requests logged so far, to count only what follows."""
        return len(self.requests())

    def counts(self, since: int = 0) -> Counter[str]:
        """Count requests by kind since a :meth:`mark`."""
        return Counter(r.kind for r in self.requests()[since:])

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
