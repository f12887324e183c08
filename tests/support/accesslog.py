"""Read a test registry's access log in more detail than :class:`Registry` counts it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.support.registry import _ACCESS_RE, Registry, Request


def all_requests(registry: Registry) -> list[Request]:
    """Return every logged request, ``/v2/`` probes included (barrier markers excluded).

    :meth:`Registry.requests` leaves out ``GET /v2/``; a command that must make no request at
    all must not even probe the registry, so this keeps those lines.
    """
    registry.requests()  # waits until everything answered so far is logged
    out = []
    for line in registry.access_log.read_text(errors="replace").splitlines():
        m = _ACCESS_RE.search(line)
        if m and "barrier=" not in m.group("path"):
            out.append(Request(m.group("method"), m.group("path"), int(m.group("status"))))
    return out


def repository_of(request: Request) -> str | None:
    """Return the repository a ``/v2/<name>/(blobs|manifests|tags)/...`` request is about."""
    path = urlsplit(request.path).path
    if not path.startswith("/v2/"):
        return None
    parts = path[len("/v2/") :].split("/")
    for i, part in enumerate(parts):
        if part in ("blobs", "manifests", "tags") and i > 0:
            return "/".join(parts[:i])
    return None


def query(request: Request) -> dict[str, str]:
    """Return the request's query parameters, decoded (the last value of each)."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}


def touching(requests: list[Request], repository: str) -> list[Request]:
    """Return the requests about ``repository`` (its manifests, blobs, uploads or tags)."""
    return [r for r in requests if repository_of(r) == repository]


def uploads_of(requests: list[Request], digest: str) -> list[Request]:
    """Return the upload PUTs that completed ``digest`` (``PUT …/uploads/<id>?digest=…``)."""
    return [r for r in requests if r.kind == "upload PUT" and query(r).get("digest") == digest]


def mounts_of(requests: list[Request], digest: str) -> list[Request]:
    """Return the mount POSTs for ``digest``, whatever the answer."""
    return [
        r for r in requests if r.kind.startswith("mount POST") and query(r).get("mount") == digest
    ]
