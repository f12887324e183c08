"""Count a registry's requests by kind, incrementally, from its access log."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.registry import _ACCESS_RE, Registry, Request

MARKER = "bench-mark="
BARRIER_DEADLINE = 10.0


def kind_of(request: Request) -> str:
    """Classify a request as :class:`Request` does, calling the bare ``/v2/`` probe a ping."""
    if request.path.split("?", 1)[0] in ("/v2/", "/v2"):
        return f"ping {request.method}"
    return request.kind


class AccessLog:
    """Read one registry's access log from byte offsets, so counting stays cheap as it grows."""

    def __init__(self, registry: Registry) -> None:
        self._host = registry.host
        self._path: Path = registry.access_log
        self._seen = 0

    def _read(self, offset: int, limit: int = -1) -> bytes:
        """Return the log's bytes from ``offset`` on (at most ``limit`` of them if given)."""
        with open(self._path, "rb") as f:
            f.seek(offset)
            return f.read(limit)

    def _barrier(self) -> int:
        """Log a marker request and return the byte offset just after its line.

        The registry logs a request just after answering it, so once the marker is in the log,
        every request answered before the marker is in it too.
        """
        token = f"{MARKER}{time.monotonic_ns()}".encode()
        httpx.get(f"http://{self._host}/v2/?{token.decode()}", timeout=5.0)
        deadline = time.monotonic() + BARRIER_DEADLINE
        while True:
            data = self._read(self._seen)
            at = data.find(token)
            end = data.find(b"\n", at) if at >= 0 else -1
            if end >= 0:
                self._seen += end + 1
                return self._seen
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._host} did not log a request within {BARRIER_DEADLINE}s")
            time.sleep(0.005)  # event poll, bounded by the deadline

    def mark(self) -> int:
        """Return an offset such that :meth:`counts` counts only the requests that follow."""
        return self._barrier()

    def counts(self, since: int) -> dict[str, int]:
        """Count the requests logged since the ``since`` mark, by kind (markers left out)."""
        return self.read(since).kinds

    def read(self, since: int) -> Seen:
        """Return the requests logged since the ``since`` mark: kinds, and blobs uploaded."""
        until = self._barrier()
        text = self._read(since, until - since).decode(errors="replace")
        kinds: Counter[str] = Counter()
        uploaded: list[str] = []
        for line in text.splitlines():
            m = _ACCESS_RE.search(line)
            if m is None or MARKER in m.group("path"):
                continue
            request = Request(m.group("method"), m.group("path"), int(m.group("status")))
            kinds[kind_of(request)] += 1
            digest = committed_upload(request)
            if digest is not None:
                uploaded.append(digest)
        return Seen(dict(sorted(kinds.items())), uploaded)


@dataclass(frozen=True)
class Seen:
    """What a registry logged between two marks."""

    kinds: dict[str, int]
    # The digest of every blob an upload PUT committed (2xx), in log order. The access log has
    # no request-body size, but a committed upload carried exactly that blob's bytes (skopeo in
    # its PATCH, orascp in the PUT itself), so the bytes uploaded are the sum of their sizes.
    uploaded: list[str]


def committed_upload(request: Request) -> str | None:
    """Return the digest an upload PUT committed (``?digest=``), None for any other request."""
    if request.kind != "upload PUT" or not 200 <= request.status < 300:
        return None
    query = parse_qs(urlsplit(request.path).query)
    digests = query.get("digest", [])
    return digests[0] if digests else None
