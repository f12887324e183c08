"""An in-memory OCI registry on a loopback port, with the distribution-spec v1.1 Referrers API.

The real registry the tests run (CNCF distribution 2.8, ``tests.support.registry``) predates the
Referrers API: it answers ``GET /v2/<name>/referrers/<digest>`` with a plain-text 404 and ignores
a manifest's ``subject``. :class:`FakeRegistry` implements what a copy tool needs of a v1.1
registry, on ``http://127.0.0.1:<port>`` (plain HTTP, no auth), from a thread of the test process:

- ``GET /v2/``;
- manifests: ``GET``/``HEAD``/``PUT /v2/<name>/manifests/<tag-or-digest>``; a PUT verifies a
  digest reference, checks that the blobs (or child manifests) it lists are in the repository
  (``MANIFEST_BLOB_UNKNOWN``, as distribution does), stores the exact bytes and, when the
  manifest has a ``subject`` and the Referrers API is on, answers ``OCI-Subject`` and indexes it;
- blobs: ``GET``/``HEAD /v2/<name>/blobs/<digest>`` (single ``Range`` supported), uploads by
  ``POST`` (``?digest=`` monolithic, ``?mount=&from=`` cross-repository mount: 201 when ``from``
  holds the blob, else 202 with a new session, as distribution answers), ``PATCH`` (chunks, 416
  out of order), ``PUT ?digest=`` (verified; a mismatch ends the session, as in distribution),
  ``GET`` (status, 204) and ``DELETE`` (204) on the session;
- referrers: ``GET /v2/<name>/referrers/<digest>[?artifactType=]``, paginated with a ``Link``
  header when ``page_size`` is set;
- tags: ``GET /v2/<name>/tags/list[?n=&last=]``, sorted, paginated with ``Link``.

Blobs are stored once and linked per repository: a blob is readable (and mountable) only from a
repository it was uploaded or mounted into. Request bodies are read in full, ``Content-Length``
or ``Transfer-Encoding: chunked`` (``Expect: 100-continue`` is answered), and every response
carries a ``Content-Length`` (but 204s, which may not), so keep-alive connections work.

Not modelled: auth, deletion (405 ``UNSUPPORTED``), distribution's 404 to a manifest request
whose ``Accept`` leaves out the stored OCI type, the referrers tag schema (a client maintains
that one itself, with ordinary manifest PUTs; the fake stores it like any other tag).

Knobs (keyword arguments, also plain attributes that a test may change while serving):

- ``referrers_api`` (True): False answers the referrers endpoint with distribution 2.8's
  ``404 page not found`` and never sends ``OCI-Subject`` (nor indexes referrers);
- ``page_size`` (None): the most descriptors per referrers page; None puts all in one page;
- ``link_origin`` (None): e.g. ``"http://127.0.0.1:1"``: ``Link`` headers (referrers and tag
  list) become absolute URLs on that other origin, which a client must refuse to follow;
- ``referrers_content_type`` (None): the ``Content-Type`` of referrers answers instead of the
  OCI index type (the body stays an index);
- ``tag_schema_resolves_to_subject`` (False): a GET/HEAD of a missing tag ``sha256-<hex>``
  answers the manifest ``sha256:<hex>`` itself (registries that alias tags to digests);
- ``tags_page_size`` (None): the most tags per tag-list page, whatever ``n`` asks (with a
  ``Link`` to the rest), as registries with a server-side page size answer.

Every request is recorded as ``(method, path_with_query, status)`` in :attr:`FakeRegistry.requests`
before its answer is sent, so a test sees it as soon as its own call returns.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import httpx

from tests.support import artifacts

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "FakeRegistry",
    "push_image",
]

OCI_MANIFEST = artifacts.OCI_MANIFEST
OCI_INDEX = artifacts.OCI_INDEX
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST})
_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_HASHES = {"sha256": 64, "sha512": 128}
READ_SIZE = 64 * 1024
MAX_LINE = 64 * 1024

# Route patterns: a reference that matches none is distribution's plain-text 404.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("base", re.compile(r"^/v2/?$")),
    ("manifest", re.compile(rf"^/v2/(?P<name>{_NAME})/manifests/(?P<ref>{_TAG}|{_DIGEST})$")),
    ("upload", re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/uploads/(?P<session>[A-Za-z0-9_-]*)$")),
    ("blob", re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/(?P<digest>{_DIGEST})$")),
    ("referrers", re.compile(rf"^/v2/(?P<name>{_NAME})/referrers/(?P<digest>[^/]+)$")),
    ("tags", re.compile(rf"^/v2/(?P<name>{_NAME})/tags/list$")),
]
_TAG_SCHEMA = re.compile(r"^(sha256|sha512)-([0-9a-f]+)$")


def _digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _valid_digest(digest: str) -> bool:
    algorithm, _, encoded = digest.partition(":")
    size = _HASHES.get(algorithm)
    return size is not None and re.fullmatch(f"[0-9a-f]{{{size}}}", encoded) is not None


class _HTTPError(Exception):
    """Answer the request with a distribution-style error."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return json.dumps({"errors": [error]}).encode()


def _digest_invalid(detail: Any = None) -> _HTTPError:
    return _HTTPError(
        400, "DIGEST_INVALID", "provided digest did not match uploaded content", detail
    )


class _NotFoundPage(Exception):
    """Answer like an unmatched distribution route: ``404 page not found`` in plain text."""


@dataclass
class _Manifest:
    media_type: str
    data: bytes
    digest: str
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


@dataclass
class _Repository:
    blobs: set[str] = field(default_factory=set)
    manifests: dict[str, _Manifest] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # subject digest -> referrer digests, in push order
    referrers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Upload:
    name: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Head and body leave in one write (see _send), without Nagle: a head and a body in two
    # small segments would wait out the client's delayed ACK, 40 ms a request.
    wbufsize = READ_SIZE

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded in FakeRegistry.requests; stderr would clutter pytest

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._connection_opened(self.connection)

    def handle_expect_100(self) -> bool:
        answered = super().handle_expect_100()
        self.wfile.flush()  # the interim 100 must not wait in the write buffer
        return answered

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._connection_closed(self.connection)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except (ValueError, ConnectionError) as exc:
            self.close_connection = True
            bad = _HTTPError(400, "BLOB_UPLOAD_INVALID", f"unreadable request body: {exc}")
            self._send(_Answer(400, bad.body(), content_type="application/json"))
            return
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = owner._dispatch(self.command, self.path, headers, body)
        except _HTTPError as err:
            answer = _Answer(err.status, err.body(), content_type="application/json")
        except _NotFoundPage:
            answer = _Answer(
                404,
                b"404 page not found\n",
                [("X-Content-Type-Options", "nosniff")],
                "text/plain; charset=utf-8",
            )
        except Exception as exc:  # a bug in the fake: answer it rather than drop the connection
            bug = _HTTPError(500, "UNKNOWN", f"fake registry error: {exc!r}")
            answer = _Answer(500, bug.body(), content_type="application/json")
        self._send(answer)

    def _read_body(self) -> bytes:
        """Read the whole request body, whatever its framing (none means empty)."""
        encoding = self.headers.get("Transfer-Encoding", "")
        if "chunked" in encoding.lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise ValueError(f"bad Content-Length {length!r}")
        return self._read_exactly(int(length))

    def _read_exactly(self, size: int) -> bytes:
        parts: list[bytes] = []
        remaining = size
        while remaining:
            data = self.rfile.read(min(READ_SIZE, remaining))
            if not data:
                raise ConnectionError("connection closed inside the request body")
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                raise ConnectionError("connection closed inside a chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.rfile.readline(MAX_LINE)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n"):
                raise ValueError("chunk not followed by CRLF")

    def _send(self, answer: _Answer) -> None:
        self.server.owner._record(self.command, self.path, answer.status)
        self.send_response(answer.status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.status != 204:  # RFC 9110: no Content-Length on a 204
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD" and answer.status != 204 and answer.body:
            self.wfile.write(answer.body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeRegistry.stop() closes the connections and joins the threads
    owner: FakeRegistry

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or stop() closing an idle keep-alive connection) is no error.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.owner._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _HasURL(Protocol):
    @property
    def url(self) -> str: ...


class FakeRegistry:
    """Serve an in-memory OCI registry with the Referrers API on ``http://127.0.0.1:<port>``.

    Use it as a context manager (``with FakeRegistry(page_size=2) as reg: reg.host``), or call
    :meth:`start` and :meth:`stop`. See the module documentation for the knobs.
    """

    def __init__(
        self,
        *,
        referrers_api: bool = True,
        page_size: int | None = None,
        link_origin: str | None = None,
        referrers_content_type: str | None = None,
        tag_schema_resolves_to_subject: bool = False,
        tags_page_size: int | None = None,
    ) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1 (or None: no pagination)")
        if tags_page_size is not None and tags_page_size < 1:
            raise ValueError("tags_page_size must be at least 1 (or None)")
        self.referrers_api = referrers_api
        self.page_size = page_size
        self.link_origin = link_origin.rstrip("/") if link_origin else None
        self.referrers_content_type = referrers_content_type
        self.tag_schema_resolves_to_subject = tag_schema_resolves_to_subject
        self.tags_page_size = tags_page_size
        self._lock = threading.RLock()
        self._requests: list[tuple[str, str, int]] = []
        self._blobs: dict[str, bytes] = {}
        self._repos: dict[str, _Repository] = {}
        self._uploads: dict[str, _Upload] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeRegistry:
        """Listen on a free 127.0.0.1 port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the fake registry is already serving")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-registry"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection, and wait for the handler threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler waiting for the next request
        for _, handler in connections:
            handler.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake registry is not serving"
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """Return ``127.0.0.1:<port>``, the registry part of references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:<port>``, the base of every API URL."""
        return f"http://{self.host}"

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections[sock] = threading.current_thread()

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    # -- observation ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """Return ``(method, path_with_query, status)`` of every request so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def mark(self) -> int:
        """Return the number of requests so far, to count only what follows (``since=``)."""
        with self._lock:
            return len(self._requests)

    def count(
        self,
        method: str | None,
        path_regex: str,
        *,
        status: int | None = None,
        since: int = 0,
    ) -> int:
        """Count requests of ``method`` (None: any) whose path with query matches ``path_regex``
        (``re.search``), optionally only those answered ``status``, from request ``since`` on."""
        pattern = re.compile(path_regex)
        return sum(
            1
            for m, path, code in self.requests[since:]
            if (method is None or m == method)
            and pattern.search(path)
            and (status is None or code == status)
        )

    def manifest(self, name: str, ref: str) -> bytes | None:
        """Return the bytes of manifest ``ref`` (tag or digest) in ``name``, None if absent."""
        with self._lock:
            found = self._find_manifest(name, ref, quirk=False)
            return found.data if found is not None else None

    def manifest_media_type(self, name: str, ref: str) -> str | None:
        """Return the media type manifest ``ref`` was stored with, None if absent."""
        with self._lock:
            found = self._find_manifest(name, ref, quirk=False)
            return found.media_type if found is not None else None

    def blob(self, name: str, digest: str) -> bytes | None:
        """Return the bytes of blob ``digest`` if repository ``name`` holds it, else None."""
        with self._lock:
            repo = self._repos.get(name)
            if repo is None or digest not in repo.blobs:
                return None
            return self._blobs[digest]

    def tags(self, name: str) -> list[str]:
        """Return the tags of ``name``, sorted (empty for an unknown repository)."""
        with self._lock:
            repo = self._repos.get(name)
            return sorted(repo.tags) if repo is not None else []

    def referrers(self, name: str, digest: str) -> list[dict[str, Any]]:
        """Return the descriptors the Referrers API lists for ``digest`` in ``name`` (all pages,
        no filter), in push order."""
        with self._lock:
            return self._referrer_descriptors(name, digest)

    def upload_sessions(self) -> int:
        """Return the number of upload sessions still open (neither completed nor cancelled)."""
        with self._lock:
            return len(self._uploads)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append((method, path, status))

    # -- storage --------------------------------------------------------------------------------

    def _repo(self, name: str) -> _Repository:
        return self._repos.setdefault(name, _Repository())

    def _find_manifest(self, name: str, ref: str, *, quirk: bool) -> _Manifest | None:
        repo = self._repos.get(name)
        if repo is None:
            return None
        if ":" in ref:
            return repo.manifests.get(ref)
        digest = repo.tags.get(ref)
        if digest is not None:
            return repo.manifests.get(digest)
        m = _TAG_SCHEMA.match(ref)
        if quirk and m:
            return repo.manifests.get(f"{m.group(1)}:{m.group(2)}")
        return None

    def _referrer_descriptors(self, name: str, digest: str) -> list[dict[str, Any]]:
        repo = self._repos.get(name)
        if repo is None:
            return []
        return [repo.manifests[d].descriptor() for d in repo.referrers.get(digest, [])]

    # -- routing --------------------------------------------------------------------------------

    def _dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        url = urlsplit(target)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        for kind, pattern in _ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            args = m.groupdict()
            with self._lock:
                if kind == "base":
                    if method not in ("GET", "HEAD"):
                        raise _NotFoundPage
                    return _Answer(200, b"{}", content_type="application/json; charset=utf-8")
                if kind == "manifest":
                    return self._manifest_route(method, args["name"], args["ref"], headers, body)
                if kind == "upload":
                    return self._upload_route(
                        method, args["name"], args["session"], query, headers, body
                    )
                if kind == "blob":
                    return self._blob_route(method, args["name"], args["digest"], headers)
                if kind == "referrers":
                    return self._referrers_route(method, args["name"], args["digest"], query)
                if kind == "tags":
                    return self._tags_route(method, args["name"], query)
        raise _NotFoundPage

    # -- manifests ------------------------------------------------------------------------------

    def _manifest_route(
        self, method: str, name: str, ref: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        if method in ("GET", "HEAD"):
            found = self._find_manifest(name, ref, quirk=self.tag_schema_resolves_to_subject)
            if found is None:
                detail = {"Name": name, "Revision": ref} if ":" in ref else {"Tag": ref}
                raise _HTTPError(404, "MANIFEST_UNKNOWN", "manifest unknown", detail)
            return _Answer(
                200,
                found.data,
                [("Docker-Content-Digest", found.digest), ("ETag", f'"{found.digest}"')],
                found.media_type,
            )
        if method == "PUT":
            return self._put_manifest(name, ref, headers, body)
        if method == "DELETE":
            raise _HTTPError(405, "UNSUPPORTED", "The operation is unsupported.")
        raise _NotFoundPage

    def _put_manifest(
        self, name: str, ref: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        is_digest = ":" in ref
        if is_digest and not _valid_digest(ref):
            raise _digest_invalid()
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise _HTTPError(400, "MANIFEST_INVALID", "manifest invalid", str(exc)) from None
        if not isinstance(obj, dict):
            raise _HTTPError(400, "MANIFEST_INVALID", "manifest invalid", "not a JSON object")
        declared = obj.get("mediaType")
        media_type = (headers.get("content-type") or "").split(";", 1)[0].strip()
        media_type = media_type or (declared if isinstance(declared, str) else "")
        if media_type not in MANIFEST_MEDIA_TYPES:
            raise _HTTPError(
                400, "MANIFEST_INVALID", "manifest invalid", f"unsupported type {media_type!r}"
            )
        if declared is not None and declared != media_type:
            raise _HTTPError(
                400,
                "MANIFEST_INVALID",
                "manifest invalid",
                f"mediaType {declared!r} does not match Content-Type {media_type!r}",
            )
        if obj.get("schemaVersion") != 2:
            raise _HTTPError(400, "MANIFEST_INVALID", "manifest invalid", "schemaVersion")
        digest = _digest(body, ref.split(":", 1)[0] if is_digest else "sha256")
        if is_digest and digest != ref:
            raise _digest_invalid()
        repo = self._repo(name)
        for child in self._children(media_type, obj):
            present = child in repo.manifests if media_type in _INDEX_TYPES else child in repo.blobs
            if not present:
                raise _HTTPError(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", child)

        subject = obj.get("subject")
        subject_digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(subject_digest, str) or not _valid_digest(subject_digest):
            subject_digest = None
        artifact_type = obj.get("artifactType")
        if not isinstance(artifact_type, str) or not artifact_type:
            config = obj.get("config")
            config_type = config.get("mediaType") if isinstance(config, dict) else None
            artifact_type = config_type if isinstance(config_type, str) else None
        annotations = obj.get("annotations")
        repo.manifests[digest] = _Manifest(
            media_type,
            body,
            digest,
            subject_digest,
            artifact_type,
            dict(annotations) if isinstance(annotations, dict) else None,
        )
        if not is_digest:
            repo.tags[ref] = digest
        answer = _Answer(
            201,
            headers=[
                ("Location", f"/v2/{name}/manifests/{digest}"),
                ("Docker-Content-Digest", digest),
            ],
        )
        if subject_digest is not None and self.referrers_api:
            listed = repo.referrers.setdefault(subject_digest, [])
            if digest not in listed:
                listed.append(digest)
            answer.headers.append(("OCI-Subject", subject_digest))
        return answer

    @staticmethod
    def _children(media_type: str, obj: dict[str, Any]) -> list[str]:
        """Return the digests a manifest needs in its repository (blobs, or manifests)."""
        if media_type in _INDEX_TYPES:
            entries = obj.get("manifests")
        else:
            config = obj.get("config")
            layers = obj.get("layers")
            entries = [config, *(layers if isinstance(layers, list) else [])]
        out: list[str] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("urls"):
                continue  # foreign layers are fetched from their URLs, not the registry
            digest = entry.get("digest")
            if not isinstance(digest, str) or not _valid_digest(digest):
                raise _HTTPError(400, "MANIFEST_INVALID", "manifest invalid", f"digest {digest!r}")
            out.append(digest)
        return out

    # -- blobs ----------------------------------------------------------------------------------

    def _blob_route(
        self, method: str, name: str, digest: str, headers: Mapping[str, str]
    ) -> _Answer:
        if method == "DELETE":
            raise _HTTPError(405, "UNSUPPORTED", "The operation is unsupported.")
        if method not in ("GET", "HEAD"):
            raise _NotFoundPage
        if not _valid_digest(digest):
            raise _digest_invalid()
        repo = self._repos.get(name)
        if repo is None or digest not in repo.blobs:
            raise _HTTPError(404, "BLOB_UNKNOWN", "blob unknown to registry", digest)
        data = self._blobs[digest]
        common = [
            ("Docker-Content-Digest", digest),
            ("ETag", f'"{digest}"'),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", "max-age=31536000"),
        ]
        try:
            wanted = _parse_range(headers.get("range"), len(data))
        except _Unsatisfiable:
            return _Answer(
                416, b"", [("Content-Range", f"bytes */{len(data)}")], "application/octet-stream"
            )
        if wanted is None:
            return _Answer(200, data, common, "application/octet-stream")
        start, end = wanted
        return _Answer(
            206,
            data[start : end + 1],
            [*common, ("Content-Range", f"bytes {start}-{end}/{len(data)}")],
            "application/octet-stream",
        )

    def _upload_route(
        self,
        method: str,
        name: str,
        session: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Answer:
        if not session:
            if method != "POST":
                raise _NotFoundPage
            return self._start_upload(name, query, body)
        upload = self._uploads.get(session)
        if upload is None or upload.name != name:
            code = "BLOB_UPLOAD_UNKNOWN" if method == "DELETE" else "BLOB_UPLOAD_INVALID"
            message = "blob upload unknown" if method == "DELETE" else "blob upload invalid"
            raise _HTTPError(404, code, f"{message} to registry", {})
        if method == "GET":
            return _Answer(204, headers=self._session_headers(name, session, upload))
        if method == "PATCH":
            return self._patch_upload(name, session, upload, headers.get("content-range"), body)
        if method == "PUT":
            return self._finish_upload(name, session, upload, _last(query, "digest"), body)
        if method == "DELETE":
            del self._uploads[session]
            return _Answer(204, headers=[("Docker-Upload-UUID", session)])
        raise _NotFoundPage

    def _start_upload(self, name: str, query: dict[str, list[str]], body: bytes) -> _Answer:
        mount, source = _last(query, "mount"), _last(query, "from")
        if mount is not None and source is not None:
            if not _valid_digest(mount):
                raise _digest_invalid()
            origin = self._repos.get(source)
            if origin is not None and mount in origin.blobs:
                self._repo(name).blobs.add(mount)
                return _Answer(
                    201,
                    headers=[
                        ("Location", f"/v2/{name}/blobs/{mount}"),
                        ("Docker-Content-Digest", mount),
                    ],
                )
        digest = _last(query, "digest")
        if digest is not None and mount is None:
            # Single-POST monolithic upload (distribution-spec end-4b).
            self._store_blob(name, digest, body)
            return _Answer(
                201,
                headers=[
                    ("Location", f"/v2/{name}/blobs/{digest}"),
                    ("Docker-Content-Digest", digest),
                ],
            )
        session = str(uuid.uuid4())
        upload = _Upload(name)
        self._uploads[session] = upload
        return _Answer(202, headers=self._session_headers(name, session, upload))

    def _session_headers(self, name: str, session: str, upload: _Upload) -> list[tuple[str, str]]:
        end = max(len(upload.data) - 1, 0)
        return [
            ("Location", f"/v2/{name}/blobs/uploads/{session}"),
            ("Range", f"0-{end}"),
            ("Docker-Upload-UUID", session),
        ]

    def _patch_upload(
        self, name: str, session: str, upload: _Upload, content_range: str | None, body: bytes
    ) -> _Answer:
        if content_range:  # chunks must come in order (distribution-spec: else 416)
            m = re.fullmatch(r"(?:bytes )?(\d+)-(\d+)", content_range.strip())
            if m is None or int(m.group(1)) != len(upload.data):
                return _Answer(
                    416,
                    _HTTPError(416, "BLOB_UPLOAD_INVALID", "blob upload invalid").body(),
                    self._session_headers(name, session, upload),
                    "application/json",
                )
        upload.data += body
        return _Answer(202, headers=self._session_headers(name, session, upload))

    def _finish_upload(
        self, name: str, session: str, upload: _Upload, digest: str | None, body: bytes
    ) -> _Answer:
        if digest is None:
            raise _digest_invalid()
        upload.data += body
        del self._uploads[session]  # distribution ends the session, whatever the outcome
        self._store_blob(name, digest, bytes(upload.data))
        return _Answer(
            201,
            headers=[
                ("Location", f"/v2/{name}/blobs/{digest}"),
                ("Docker-Content-Digest", digest),
            ],
        )

    def _store_blob(self, name: str, digest: str, data: bytes) -> None:
        if not _valid_digest(digest) or _digest(data, digest.split(":", 1)[0]) != digest:
            raise _digest_invalid({"Digest": digest})
        self._blobs.setdefault(digest, data)
        self._repo(name).blobs.add(digest)

    # -- referrers ------------------------------------------------------------------------------

    def _referrers_route(
        self, method: str, name: str, digest: str, query: dict[str, list[str]]
    ) -> _Answer:
        if not self.referrers_api or method not in ("GET", "HEAD"):
            raise _NotFoundPage
        if not _valid_digest(digest):
            raise _HTTPError(400, "DIGEST_INVALID", "invalid digest", digest)
        entries = self._referrer_descriptors(name, digest)
        headers: list[tuple[str, str]] = []
        artifact_type = _last(query, "artifactType")
        if artifact_type is not None:
            entries = [e for e in entries if e.get("artifactType") == artifact_type]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        start = 0
        token = _last(query, "last")
        if token is not None:
            after = _decode_token(token)
            positions = [i for i, e in enumerate(entries) if e["digest"] == after]
            if not positions:
                raise _HTTPError(400, "UNSUPPORTED", "unknown pagination token", token)
            start = positions[0] + 1
        page = entries[start:]
        if self.page_size is not None and len(page) > self.page_size:
            page = page[: self.page_size]
            params = {"last": _encode_token(page[-1]["digest"])}
            if artifact_type is not None:
                params["artifactType"] = artifact_type
            headers.append(("Link", self._link(f"/v2/{name}/referrers/{digest}", params)))
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page}, indent=2
        ).encode()
        return _Answer(200, body, headers, self.referrers_content_type or OCI_INDEX)

    def _link(self, path: str, params: Mapping[str, str]) -> str:
        url = f"{path}?{urlencode(params, quote_via=quote)}"
        if self.link_origin is not None:
            url = f"{self.link_origin}{url}"
        return f'<{url}>; rel="next"'

    # -- tags -----------------------------------------------------------------------------------

    def _tags_route(self, method: str, name: str, query: dict[str, list[str]]) -> _Answer:
        if method not in ("GET", "HEAD"):
            raise _NotFoundPage
        repo = self._repos.get(name)
        if repo is None or not (repo.tags or repo.manifests):
            raise _HTTPError(
                404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name}
            )
        tags = sorted(repo.tags)
        last = _last(query, "last")
        if last is not None:
            tags = [t for t in tags if t > last]
        n_text = _last(query, "n")
        limit: int | None = None
        if n_text is not None:
            if not n_text.isdigit():
                raise _HTTPError(
                    400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", n_text
                )
            limit = int(n_text)
        if self.tags_page_size is not None:
            limit = self.tags_page_size if limit is None else min(limit, self.tags_page_size)
        headers: list[tuple[str, str]] = []
        if limit is not None and len(tags) > limit:
            tags = tags[:limit]
            if tags:  # n=0: an empty list and no Link
                params = {"n": n_text or str(limit), "last": tags[-1]}
                headers.append(("Link", self._link(f"/v2/{name}/tags/list", params)))
        body = json.dumps({"name": name, "tags": tags}).encode()
        return _Answer(200, body, headers, "application/json; charset=utf-8")


def _last(query: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _encode_token(digest: str) -> str:
    return base64.urlsafe_b64encode(digest.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class _Unsatisfiable(Exception):
    """The Range header asks for no byte of the blob (416)."""


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return ``(start, end)`` of a single byte range, None to answer the whole blob."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # multiple or malformed ranges: answer the whole blob, as RFC 9110 allows
    if not m.group(1):
        suffix = int(m.group(2))
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return max(size - suffix, 0), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise _Unsatisfiable
    return start, min(end, size - 1)


# -- building content ----------------------------------------------------------------------------


def push_image(
    reg: _HasURL,
    name: str,
    tag: str | None,
    layers: list[bytes],
    *,
    subject: tuple[str, bytes] | Mapping[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """Push an OCI image of ``layers`` to ``reg`` (anything with a ``url``) with bare httpx
    requests; return its ``(digest, manifest bytes)``.

    ``tag`` None pushes by digest. ``subject`` is what an earlier call returned, or a descriptor;
    give referrers of one subject distinct ``layers``, ``artifact_type`` or ``annotations``, or
    they are the same manifest.
    """
    subject_blob: artifacts.Blob | None = None
    if isinstance(subject, tuple):
        subject_digest, subject_data = subject
        declared = _declared_type(subject_data) or OCI_MANIFEST
        subject_blob = artifacts.Blob(declared, subject_data)
        if subject_blob.digest != subject_digest:
            raise ValueError("subject bytes do not hash to the subject digest")
    art = artifacts.image(
        [artifacts.layer(data) for data in layers],
        artifact_type=artifact_type,
        subject=subject_blob,
        annotations=annotations,
    )
    root = art.root
    if subject is not None and not isinstance(subject, tuple):
        obj = json.loads(root.data)
        obj["subject"] = dict(subject)
        root = artifacts.Blob(OCI_MANIFEST, json.dumps(obj, indent=2).encode())
        art = artifacts.Artifact(root, art.blobs)
    # Plain HTTP needs no certificates: verify=False spares httpx 40 ms building a TLS context.
    verify = False if reg.url.startswith("http://") else getattr(reg, "verify", True)
    with httpx.Client(base_url=reg.url, timeout=30, verify=verify) as client:
        artifacts.push_with(client, name, art, tag)
    return root.digest, root.data


def _declared_type(data: bytes) -> str | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    declared = obj.get("mediaType") if isinstance(obj, dict) else None
    return declared if isinstance(declared, str) else None
