"""Run a real CNCF distribution registry (Debian's ``docker-registry``) on a loopback port.

By default it speaks plain HTTP without authentication. The auth tests turn on TLS (``tls=``,
verified with ``ca=``), mutual TLS (``client_ca=``, with ``client_cert=`` for the fixture's own
probes), htpasswd Basic auth (``htpasswd=``, see :func:`write_htpasswd`) or Docker token auth
(``token=``, see ``tests.support.tokenserver``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

REGISTRY_BINARY = os.environ.get("ORASCP_REGISTRY_BINARY", "/usr/bin/docker-registry")
# How long a fresh registry may take to answer /v2/ (it starts in well under a second).
STARTUP_DEADLINE = 15.0
# Debian's apache2-utils: the registry's htpasswd backend accepts bcrypt entries only.
HTPASSWD_BINARY = os.environ.get("ORASCP_HTPASSWD_BINARY", "/usr/bin/htpasswd")
# The token settings a registry needs (``auth.token``); TokenServer.registry_config() gives them.
TOKEN_KEYS = ("realm", "service", "issuer", "rootcertbundle")

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


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """Write an htpasswd file with a bcrypt entry per user (``htpasswd -Bbn``); return ``path``."""
    if shutil.which(HTPASSWD_BINARY) is None:
        raise RuntimeError(f"{HTPASSWD_BINARY} is missing: install Debian's apache2-utils package")
    lines = []
    for user, password in users.items():
        # Cost 4, bcrypt's least: the registry checks the password on every request.
        out = subprocess.run(
            [HTPASSWD_BINARY, "-nbB", "-C", "4", user, password],
            capture_output=True,
            text=True,
            check=True,
        )
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml(value: object) -> str:
    """Quote a scalar for the registry's YAML config (a JSON string is a YAML string)."""
    return json.dumps(str(value))


class Registry:
    """Start, inspect and stop one ``docker-registry serve`` process with temporary storage.

    Options (all off by default: plain HTTP, no authentication):

    - ``tls=(certificate, key)``: serve HTTPS; ``ca`` is the CA file the fixture's own requests
      (readiness probe, log barrier) verify the certificate with.
    - ``client_ca``: require a client certificate signed by that CA (``http.tls.clientcas``);
      ``client_cert=(certificate, key)`` is what the fixture's own requests present.
    - ``htpasswd=(path, realm)``: Basic auth against a bcrypt htpasswd file.
    - ``token={"realm", "service", "issuer", "rootcertbundle"}``: Docker token auth.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "registry",
        tls: tuple[Path, Path] | None = None,
        ca: Path | None = None,
        client_ca: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
        htpasswd: tuple[Path, str] | None = None,
        token: Mapping[str, str | Path] | None = None,
    ) -> None:
        if htpasswd is not None and token is not None:
            raise ValueError("the registry takes one auth method: htpasswd or token")
        if token is not None and set(token) != set(TOKEN_KEYS):
            raise ValueError(f"token= needs exactly {', '.join(TOKEN_KEYS)}")
        if tls is None and (ca is not None or client_ca is not None or client_cert is not None):
            raise ValueError("ca, client_ca and client_cert need tls=")
        self.workdir = Path(workdir) / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.access_log = self.workdir / "access.log"
        self.app_log = self.workdir / "app.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.ca = ca
        self.client_ca = client_ca
        self.client_cert = client_cert
        self.htpasswd = htpasswd
        self.token = dict(token) if token is not None else None
        self._verify: ssl.SSLContext | bool = True
        if tls is not None:
            # Without a CA the fixture cannot verify its own registry; it checks liveness only.
            if ca is not None:
                self._verify = ssl.create_default_context(cafile=str(ca))
            else:
                self._verify = ssl.create_default_context()
                self._verify.check_hostname = False
                self._verify.verify_mode = ssl.CERT_NONE
            if client_cert is not None:
                self._verify.load_cert_chain(str(client_cert[0]), str(client_cert[1]))

    @property
    def host(self) -> str:
        """Return ``127.0.0.1:<port>``, the registry part of references."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """Return ``https`` when the registry serves TLS, else ``http``."""
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        """Return ``<scheme>://127.0.0.1:<port>``, the base of every API URL."""
        return f"{self.scheme}://{self.host}"

    @property
    def auth(self) -> bool:
        """Return whether the registry asks for credentials."""
        return self.htpasswd is not None or self.token is not None

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """Return the ``verify=`` for httpx that trusts this registry (and presents client_cert)."""
        return self._verify

    def _config(self) -> str:
        config = (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: orascp-test-secret\n"
        )
        if self.tls is not None:
            config += (
                f"  tls:\n    certificate: {_yaml(self.tls[0])}\n    key: {_yaml(self.tls[1])}\n"
            )
            if self.client_ca is not None:
                config += f"    clientcas:\n      - {_yaml(self.client_ca)}\n"
        if self.htpasswd is not None:
            path, realm = self.htpasswd
            config += f"auth:\n  htpasswd:\n    realm: {_yaml(realm)}\n    path: {_yaml(path)}\n"
        if self.token is not None:
            config += "auth:\n  token:\n" + "".join(
                f"    {key}: {_yaml(self.token[key])}\n" for key in TOKEN_KEYS
            )
        return config

    def _get(self, path: str, timeout: float) -> httpx.Response:
        """GET ``path`` on the registry the way the fixture's own probes do (no credentials)."""
        return httpx.get(f"{self.url}{path}", timeout=timeout, verify=self._verify)

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
                # With auth on, /v2/ answers 401 to a request without credentials: that is up.
                status = self._get("/v2/", timeout=1.0).status_code
                if status == 200 or (status == 401 and self.auth):
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
        shows that the lines of the requests answered before it are there too. With auth on, the
        marker is answered 401, and logged all the same.
        """
        marker = f"/v2/?barrier={time.monotonic_ns()}"
        self._get(marker, timeout=5.0)
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

    def counts(self, since: int = 0, *, successful: bool = False) -> Counter[str]:
        """Count requests by kind since a :meth:`mark`.

        With ``successful``, only requests answered below 400: behind auth, a request refused
        with 401 and sent again with credentials is logged twice.
        """
        return Counter(r.kind for r in self.requests()[since:] if not successful or r.status < 400)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
