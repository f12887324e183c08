"""A fault-injecting HTTP/1.1 proxy in front of a real registry, for the fault tests.

orascp is pointed at ``FaultProxy.host`` (``127.0.0.1:<port>``) instead of the registry; every
request is forwarded unchanged (``Host`` included, so the upload ``Location`` the registry builds
points back at the proxy), except those a :class:`Rule` matches, whose answer is tampered with:

- :class:`Respond`: answer with a status (503, 429 with ``Retry-After``, 404…) and a
  distribution-style error body instead of forwarding (a request body is read and dropped),
  optionally after a delay;
- :class:`Delay`: forward the request, then hold the registry's answer back for a while (the
  registry has acted on the request; the client is still waiting for its answer);
- :class:`Reset`: forward the response head and ``after`` bytes of its body, then reset the
  connection (RST); ``after=None`` resets before any byte of the response;
- :class:`Truncate`: forward the head and ``after`` bytes of the body, then close (FIN): the
  body is short of its ``Content-Length``;
- :class:`Drip`: forward the head and ``after`` bytes, then one byte every ``interval`` seconds;
- :class:`Corrupt`: flip every bit of the body byte at ``offset`` (same length);
- :class:`Resize`: drop the last ``-delta`` bytes or append ``delta`` bytes, with a
  ``Content-Length`` that agrees (a well-framed body of the wrong size);
- :class:`ResetUpload`: forward the request head and ``after`` bytes of the *request* body to the
  registry, then reset both connections (a streamed upload dropped half-way).

A rule applies to the first ``times`` requests it matches (every one when ``times`` is None) and
lets the later ones through; :attr:`Rule.count` counts every matching request, faulted or not,
which is how tests show that a request was retried, or was not.

Framing is parsed in both directions (``Content-Length``, ``chunked``, or until close for a
response without either; no body for ``HEAD``, 1xx, 204 and 304), so keep-alive connections work
as they do against the registry itself. Each request is forwarded on a fresh upstream connection;
request bodies (uploads) are streamed through as they arrive.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from tests.support.registry import Registry

__all__ = [
    "Corrupt",
    "Delay",
    "Drip",
    "Entry",
    "FaultProxy",
    "Reset",
    "ResetUpload",
    "Resize",
    "Respond",
    "Rule",
    "Truncate",
    "assert_layout_sound",
    "assert_registry_sound",
    "assert_uploads_cancelled",
    "open_uploads",
    "upload_session",
]

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_ERROR_CODES = {
    400: "BLOB_UPLOAD_INVALID",
    404: "MANIFEST_UNKNOWN",
    408: "UNAVAILABLE",
    429: "TOOMANYREQUESTS",
}


# -- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """Answer with ``status`` (and ``headers``) instead of forwarding the request."""

    status: int
    # A value may be a function, called for each answer (an HTTP date relative to now, say).
    headers: tuple[tuple[str, str | Callable[[], str]], ...] = ()
    code: str | None = None  # the distribution error code in the body; guessed from the status
    delay: float = 0.0  # seconds to wait before answering

    def body(self) -> bytes:
        code = self.code or _ERROR_CODES.get(self.status, "UNAVAILABLE")
        message = f"injected by the fault proxy: {self.status}"
        return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


@dataclass(frozen=True)
class Delay:
    """Forward the request, then wait ``seconds`` before passing the answer on."""

    seconds: float


@dataclass(frozen=True)
class Reset:
    """Reset the connection after the response head and ``after`` body bytes (None: before)."""

    after: int | None = 0


@dataclass(frozen=True)
class Truncate:
    """Close the connection (cleanly) after the response head and ``after`` body bytes."""

    after: int


@dataclass(frozen=True)
class Drip:
    """Send the head and ``after`` bytes at once, then one byte every ``interval`` seconds."""

    interval: float
    after: int = 0


@dataclass(frozen=True)
class Corrupt:
    """Invert the response body byte at ``offset`` (the length stays the same)."""

    offset: int


@dataclass(frozen=True)
class Resize:
    """Drop the last ``-delta`` body bytes or append ``delta`` bytes; fix ``Content-Length``."""

    delta: int


@dataclass(frozen=True)
class ResetUpload:
    """Forward the request head and ``after`` bytes of its body, then reset both connections."""

    after: int


Action = Respond | Delay | Reset | Truncate | Drip | Corrupt | Resize | ResetUpload


@dataclass
class Rule:
    """Tamper with requests whose method and path (without the query) match."""

    method: str | None
    path: re.Pattern[str]
    action: Action
    times: int | None = None
    query: re.Pattern[str] | None = None
    count: int = 0  # matching requests seen (faulted or passed through)
    faulted: int = 0  # requests the action was applied to
    dripping: int = 0  # Drip: responses that reached their slow phase

    def matches(self, method: str, target: str) -> bool:
        path, _, query = target.partition("?")
        return (
            (self.method is None or self.method == method)
            and bool(self.path.search(path))
            and (self.query is None or bool(self.query.search(query)))
        )

    def take(self) -> bool:
        """Count a match; return whether the action applies to it."""
        self.count += 1
        if self.times is None or self.faulted < self.times:
            self.faulted += 1
            return True
        return False


@dataclass
class Entry:
    """One request the proxy received, and what became of it."""

    method: str
    target: str
    started: float
    action: str = "pass"  # the action's class name when a rule applied
    status: int | None = None  # the status the client was sent, if a head was sent
    body_sent: int = 0  # response body bytes forwarded to the client so far
    done: bool = False

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class _Abort(Exception):
    """Stop serving this client connection (it was reset, closed, or the peer went away)."""


@dataclass
class _Head:
    first: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        out: set[str] = set()
        for key, value in self.headers:
            if key.lower() == name.lower():
                out |= {t.strip().lower() for t in value.split(",")}
        return out

    def encode(self) -> bytes:
        lines = [self.first, *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def replace(self, name: str, value: str | None) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))


def _read_head(stream: io.BufferedReader) -> _Head | None:
    """Read a request or response head; None at a clean end of stream before any byte."""
    lines: list[str] = []
    size = 0
    while True:
        line = stream.readline(MAX_HEAD)
        if not line:
            if lines:
                raise _Abort("connection closed inside a message head")
            return None
        size += len(line)
        if size > MAX_HEAD:
            raise _Abort("message head too large")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            if not lines:
                continue  # tolerate stray CRLF between messages
            break
        lines.append(text)
    head = _Head(lines[0])
    for text in lines[1:]:
        name, _, value = text.partition(":")
        head.headers.append((name.strip(), value.strip()))
    return head


def _body_chunks(stream: io.BufferedReader, head: _Head, *, until_close: bool) -> Iterator[bytes]:
    """Yield the decoded body of a message framed as ``head`` says."""
    if "chunked" in head.tokens("transfer-encoding"):
        while True:
            line = stream.readline(MAX_HEAD)
            if not line:
                raise _Abort("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = stream.readline(MAX_HEAD)
                    if trailer in (b"\r\n", b"\n", b""):
                        return
            remaining = size
            while remaining:
                data = stream.read(min(READ_SIZE, remaining))
                if not data:
                    raise _Abort("connection closed inside a chunk")
                remaining -= len(data)
                yield data
            stream.readline(MAX_HEAD)  # the CRLF after the chunk
        return
    length = head.get("content-length")
    if length is not None:
        remaining = int(length)
        while remaining:
            data = stream.read1(min(READ_SIZE, remaining))
            if not data:
                raise _Abort("connection closed inside a body")
            remaining -= len(data)
            yield data
        return
    if until_close:
        while True:
            data = stream.read1(READ_SIZE)
            if not data:
                return
            yield data


def _hard_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _soft_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forward 127.0.0.1:<port> to a registry, injecting the faults its rules describe."""

    def __init__(self, upstream: Registry | str) -> None:
        host = upstream.host if isinstance(upstream, Registry) else upstream
        name, _, port = host.rpartition(":")
        if name != "127.0.0.1":
            raise ValueError("the fault proxy forwards to 127.0.0.1 only")
        self.upstream = (name, int(port))
        self.rules: list[Rule] = []
        self.entries: list[Entry] = []
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0

    # -- configuration --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Return ``127.0.0.1:<port>``, the registry part of references through the proxy."""
        return f"127.0.0.1:{self.port}"

    def add(
        self,
        method: str | None,
        path: str,
        action: Action,
        *,
        times: int | None = None,
        query: str | None = None,
    ) -> Rule:
        """Add a rule; ``path`` and ``query`` are regular expressions searched in those parts.

        Rules are tried in the order they were added; the first that matches a request owns it.
        """
        rule = Rule(method, re.compile(path), action, times, re.compile(query) if query else None)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule (requests are forwarded untouched from now on)."""
        with self._lock:
            self.rules.clear()

    # -- observation ----------------------------------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[Entry]:
        """Return the requests received so far, optionally those matching method and path."""
        pattern = re.compile(path) if path is not None else None
        with self._lock:
            return [
                e
                for e in self.entries
                if (method is None or e.method == method)
                and (pattern is None or pattern.search(e.path))
            ]

    def mark(self) -> int:
        """Return the number of requests received so far (to look only at what follows)."""
        with self._lock:
            return len(self.entries)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds (checked on every proxy event); fail at ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._lock.wait(min(left, 0.1))

    def _notify(self) -> None:
        with self._lock:
            self._lock.notify_all()

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            self._lock.notify_all()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="faultproxy-conn", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        reader = cast(io.BufferedReader, client.makefile("rb", buffering=READ_SIZE))
        try:
            while not self._stopping.is_set():
                head = _read_head(reader)
                if head is None:
                    break
                if not self._exchange(client, reader, head):
                    break
            _soft_close(client)
        except (_Abort, OSError, ValueError):
            _hard_close(client)
        finally:
            reader.close()
            self._untrack(client)

    def _match(self, method: str, target: str) -> tuple[Rule | None, bool]:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    return rule, rule.take()
        return None, False

    def _exchange(self, client: socket.socket, reader: io.BufferedReader, head: _Head) -> bool:
        """Serve one request; return whether the client connection may carry another."""
        method, target, _version = head.first.split(" ", 2)
        entry = Entry(method, target, time.monotonic())
        with self._lock:
            self.entries.append(entry)
            self._lock.notify_all()
        rule, applies = self._match(method, target)
        action = rule.action if rule is not None and applies else None
        if action is not None:
            entry.action = type(action).__name__
        keep_alive = "close" not in head.tokens("connection")
        try:
            if isinstance(action, Respond):
                for _ in _body_chunks(reader, head, until_close=False):
                    pass  # drop the request body; the client is still owed an answer
                if action.delay and self._stopping.wait(action.delay):
                    raise _Abort("proxy stopping")
                body = action.body()
                reply = _Head(f"HTTP/1.1 {action.status} {_REASONS.get(action.status, 'Error')}")
                reply.headers = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Docker-Distribution-Api-Version", "registry/2.0"),
                    *((k, v if isinstance(v, str) else v()) for k, v in action.headers),
                ]
                if not keep_alive:
                    reply.headers.append(("Connection", "close"))
                client.sendall(reply.encode() + (b"" if method == "HEAD" else body))
                entry.status = action.status
                return keep_alive
            upstream = socket.create_connection(self.upstream, timeout=None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(upstream)
            try:
                return self._forward(client, reader, head, upstream, entry, rule, action)
            finally:
                self._untrack(upstream)
                with contextlib.suppress(OSError):
                    upstream.close()
        finally:
            entry.done = True
            self._notify()

    def _forward(
        self,
        client: socket.socket,
        reader: io.BufferedReader,
        head: _Head,
        upstream: socket.socket,
        entry: Entry,
        rule: Rule | None,
        action: Action | None,
    ) -> bool:
        upstream.sendall(head.encode())
        sent = 0
        for data in _body_chunks(reader, head, until_close=False):
            if isinstance(action, ResetUpload) and sent + len(data) >= action.after:
                upstream.sendall(data[: action.after - sent])
                _hard_close(upstream)
                _hard_close(client)
                raise _Abort("upload reset by the fault proxy")
            if "chunked" in head.tokens("transfer-encoding"):
                upstream.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                upstream.sendall(data)
            sent += len(data)
        if "chunked" in head.tokens("transfer-encoding"):
            upstream.sendall(b"0\r\n\r\n")

        up_reader = cast(io.BufferedReader, upstream.makefile("rb", buffering=READ_SIZE))
        try:
            while True:
                response = _read_head(up_reader)
                if response is None:
                    raise _Abort("the registry closed the connection without answering")
                status = int(response.first.split(" ", 2)[1])
                if status >= 200 or status == 101:
                    break
                client.sendall(response.encode())  # 1xx: forward, then read the real answer
            if isinstance(action, Delay) and self._stopping.wait(action.seconds):
                raise _Abort("proxy stopping")
            if isinstance(action, Reset) and action.after is None:
                _hard_close(client)
                raise _Abort("reset by the fault proxy before the response")
            bodyless = entry.method == "HEAD" or status in (204, 304) or status < 200
            until_close = not bodyless and (
                response.get("content-length") is None
                and "chunked" not in response.tokens("transfer-encoding")
            )
            chunked_out = "chunked" in response.tokens("transfer-encoding")
            chunks: Iterator[bytes] = (
                iter(()) if bodyless else _body_chunks(up_reader, response, until_close=until_close)
            )
            if isinstance(action, Resize) and not bodyless:
                data = b"".join(chunks)
                data = data[: len(data) + action.delta] if action.delta < 0 else data
                data += b"\0" * max(0, action.delta)
                chunks = iter([data])
                if not chunked_out:
                    response.replace("Content-Length", str(len(data)))
            if "close" in response.tokens("connection"):
                keep = False
            else:
                keep = "close" not in head.tokens("connection") and not until_close
            client.sendall(response.encode())
            entry.status = status
            self._notify()
            self._send_body(client, chunks, chunked_out, entry, rule, action)
            return keep
        finally:
            up_reader.close()

    def _send_body(
        self,
        client: socket.socket,
        chunks: Iterator[bytes],
        chunked: bool,
        entry: Entry,
        rule: Rule | None,
        action: Action | None,
    ) -> None:
        def send(data: bytes) -> None:
            if not data:
                return
            client.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            entry.body_sent += len(data)

        offset = 0
        cut = action.after if isinstance(action, Reset | Truncate) else None
        for data in chunks:
            if isinstance(action, Corrupt) and offset <= action.offset < offset + len(data):
                i = action.offset - offset
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            if cut is not None and offset + len(data) >= cut:
                send(data[: cut - offset])
                self._notify()
                if isinstance(action, Reset):
                    _hard_close(client)
                    raise _Abort("reset by the fault proxy")
                _soft_close(client)
                raise _Abort("truncated by the fault proxy")
            if isinstance(action, Drip) and offset + len(data) > action.after:
                head_len = max(0, action.after - offset)
                send(data[:head_len])
                if offset + head_len == action.after and rule is not None:
                    with self._lock:
                        rule.dripping += 1
                        self._lock.notify_all()
                for i in range(head_len, len(data)):
                    if self._stopping.wait(action.interval):
                        raise _Abort("proxy stopping")
                    send(data[i : i + 1])
                    self._notify()
            else:
                send(data)
            offset += len(data)
        if chunked:
            client.sendall(b"0\r\n\r\n")
        if cut is not None:
            # The body was shorter than the cut: still drop the connection, as asked.
            if isinstance(action, Reset):
                _hard_close(client)
            else:
                _soft_close(client)
            raise _Abort("closed by the fault proxy")


# -- checking what a fault left behind -------------------------------------------------------


def _repository_dir(registry: Registry, repository: str) -> Path:
    return registry.storage / "docker" / "registry" / "v2" / "repositories" / repository


def _linked_digests(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    out = []
    for algorithm in sorted(p for p in directory.iterdir() if p.is_dir()):
        for encoded in sorted(p for p in algorithm.iterdir() if (p / "link").is_file()):
            out.append(f"{algorithm.name}:{encoded.name}")
    return out


def open_uploads(registry: Registry, repository: str) -> list[str]:
    """Return the ids of the upload sessions the registry still holds open for ``repository``.

    distribution keeps a session's ``startedat`` and ``data`` files until the upload is
    committed or cancelled (a cancelled session leaves an empty ``hashstates`` tree behind).
    """
    uploads = _repository_dir(registry, repository) / "_uploads"
    if not uploads.is_dir():
        return []
    return sorted(p.name for p in uploads.iterdir() if (p / "startedat").exists())


_UPLOAD_PATH = re.compile(r"/blobs/uploads/(?P<uuid>[^/?]+)(?:\?|$)")


def upload_session(path: str) -> str | None:
    """Return the session id in an upload URL path (``…/blobs/uploads/<id>?…``), if any."""
    m = _UPLOAD_PATH.search(path)
    return m.group("uuid") if m else None


def assert_uploads_cancelled(registry: Registry, repository: str, since: int = 0) -> None:
    """Assert that every upload session left unfinished since ``since`` was cancelled.

    Unfinished means still open in the registry's storage, or sent a ``PUT`` that was not
    answered 201: each must have received a ``DELETE`` (the spec's cancel). The DELETE itself may
    be refused: distribution answers 404 to a cancel once a partial PUT wrote bytes into the
    session (the state in the URL no longer matches), which is the registry's doing.
    """
    requests = registry.requests()[since:]
    deleted = {upload_session(r.path) for r in requests if r.method == "DELETE"}
    completed = {upload_session(r.path) for r in requests if r.method == "PUT" and r.status == 201}
    unfinished = {
        upload_session(r.path)
        for r in requests
        if r.method in ("PUT", "PATCH") and upload_session(r.path) not in completed
    }
    unfinished |= set(open_uploads(registry, repository))
    unfinished.discard(None)
    missing = sorted(str(u) for u in unfinished - deleted)
    assert not missing, f"upload sessions left without a DELETE: {missing}"


def assert_registry_sound(registry: Registry, repository: str) -> list[str]:
    """Assert that every blob and manifest the repository links hashes to its digest.

    The list comes from the registry's storage (``_layers`` and ``_manifests/revisions``), so a
    blob no manifest refers to is checked too; each is fetched with a bare GET. Returns the
    blob digests.
    """
    repo_dir = _repository_dir(registry, repository)
    blobs = _linked_digests(repo_dir / "_layers")
    manifests = _linked_digests(repo_dir / "_manifests" / "revisions")
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        for digest in blobs:
            r = http.get(f"/v2/{repository}/blobs/{digest}")
            assert r.status_code == 200, (digest, r.status_code)
            assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest, digest
        for digest in manifests:
            r = http.get(
                f"/v2/{repository}/manifests/{digest}",
                headers={
                    "Accept": "application/vnd.oci.image.manifest.v1+json, "
                    "application/vnd.oci.image.index.v1+json"
                },
            )
            assert r.status_code == 200, (digest, r.status_code)
            assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest, digest
    return blobs


def assert_layout_sound(path: Path, *, stray_ingest: bool = False) -> dict[str, Any] | None:
    """Assert that a layout holds only complete, verified blobs and no temporary file.

    Every file under ``blobs/`` must hash to its name; nothing but ``oci-layout``,
    ``index.json``, ``blobs/`` and ``ingest/`` may exist; ``ingest/`` must hold no file, unless
    ``stray_ingest`` (after a ``kill -9``, when leftovers may stay there, and only there).
    ``index.json``, when present, must be a valid image index, which is returned (None when it
    was never written).
    """
    if not path.exists():
        return None
    for entry in sorted(path.rglob("*")):
        rel = entry.relative_to(path)
        if entry.is_dir():
            assert rel.parts[0] in ("blobs", "ingest"), f"unexpected directory {rel}"
            continue
        if rel.parts[0] == "blobs":
            assert len(rel.parts) == 3, rel
            assert rel.parts[1] == "sha256", rel
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            assert digest == rel.parts[2], f"{rel} holds bytes hashing to sha256:{digest}"
        elif rel.parts[0] == "ingest":
            assert stray_ingest, f"temporary file left behind: {rel}"
        else:
            assert str(rel) in ("oci-layout", "index.json"), f"stray file {rel}"
    index_path = path / "index.json"
    if not index_path.exists():
        return None
    index = json.loads(index_path.read_text())
    assert isinstance(index, dict), index
    assert index.get("schemaVersion") == 2, index
    assert isinstance(index.get("manifests"), list), index
    return index
