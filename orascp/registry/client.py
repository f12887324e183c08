"""Talk to a registry over the OCI distribution API (distribution-spec v1.1).

One :class:`RegistryClient` per registry holds one ``httpx.AsyncClient`` (one connection pool);
a :class:`Repository` is a copy :class:`~orascp.content.Target` on one repository of it, and also a
:class:`~orascp.content.Mounter`, a :class:`~orascp.content.ReferenceFetcher` and a
:class:`~orascp.content.ReferencePusher`.

Requests per operation, all sections of distribution-spec ``spec.md``:

- resolve a tag: one ``GET /v2/<name>/manifests/<tag>`` accepting every manifest type
  ("Pulling manifests"); the body is kept, so the root is never fetched twice;
- exists: ``HEAD`` on ``blobs/<digest>`` or ``manifests/<digest>`` ("Checking if content exists");
- blob upload: ``POST /v2/<name>/blobs/uploads/`` then a monolithic
  ``PUT <Location>?digest=<digest>`` ("Pushing a blob monolithically", the POST-then-PUT form);
- mount: ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``: 201 means mounted; 202
  opens an ordinary upload session, which is used for the upload rather than opening another
  ("Mounting a blob from another repository");
- manifests: ``PUT /v2/<name>/manifests/<digest-or-tag>`` with the media type as Content-Type.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from orascp import __version__, referrers, retry
from orascp.content import FetchStream, MountOutcome
from orascp.descriptor import (
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    Descriptor,
    compute_digest,
    is_manifest,
    load_json,
    validate_digest,
)
from orascp.errors import (
    AuthenticationError,
    ErrorDetail,
    InvalidContentError,
    NetworkError,
    RegistryError,
    RegistryNotFoundError,
    SizeLimitError,
    SizeMismatchError,
    TLSError,
    UnsupportedError,
    quote,
)
from orascp.registry.auth import RegistryAuth
from orascp.registry.credentials import Credential
from orascp.registry.transport import AsyncioTransport
from orascp.verify import check_bytes, verified

if TYPE_CHECKING:
    from orascp.registry.trace import HttpTracer

__all__ = ["RegistryClient", "RegistryOptions", "Repository"]

# Generous for slow registries finishing a large upload; short enough to notice a dead one.
CONNECT_TIMEOUT = 30.0
# A stalled transfer fails after this many seconds without a byte (and is then retried);
# ORASCP_READ_TIMEOUT overrides it, for slow links or for tests.
READ_TIMEOUT = float(os.environ.get("ORASCP_READ_TIMEOUT", "") or 120.0)
# A registry's error body is a few hundred bytes; more is not worth reading.
MAX_ERROR_BODY = 64 * 1024
# Manifests above this are refused before they are downloaded (oras, containerd agree on 4 MiB).
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Marks a response returned after the last retry: its error is not to be retried again.
_EXHAUSTED = "orascp.retries_exhausted"
# Blob GETs may be redirected to object storage; a chain longer than this is a loop.
MAX_REDIRECTS = 10
# A subject with more referrers than this many pages of them is an attack, not an image.
MAX_REFERRER_PAGES = 1000
MAX_TAG_PAGES = 10000
# One page of a tag list: distribution answers every tag at once, thousands of them.
MAX_TAG_LIST_BYTES = 64 * 1024 * 1024
# Docker Hub's API host differs from the name people write.
_HOST_ALIASES = {"docker.io": "registry-1.docker.io"}
_MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """Hold the connection settings of one side of a copy."""

    plain_http: bool = False
    credential: Credential = field(default_factory=Credential)
    # TLS: extra CA certificates, no verification at all, a client certificate.
    ca_file: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    # Sent with every request to the registry's own origin, never to a redirect elsewhere.
    headers: tuple[tuple[str, str], ...] = ()
    # Keep-alive connections; a copy opens at most two per transfer (source GET, target PUT).
    max_connections: int = 16
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
    # --debug: every exchange is written here, redacted.
    tracer: HttpTracer | None = field(default=None, compare=False)

    def ssl_context(self) -> ssl.SSLContext:
        """Build the TLS context these options describe (only called for https)."""
        ctx = httpx.create_ssl_context()
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _check_digest_header(response: httpx.Response, desc: Descriptor, message: str) -> None:
    """Verify ``Docker-Content-Digest`` when the registry sends one in ``desc``'s algorithm.

    distribution-spec: a client that uses this header MUST verify it. ``message`` names
    ``{returned}`` and ``{expected}``.
    """
    returned = response.headers.get("docker-content-digest")
    if returned and returned.startswith(f"{desc.algorithm}:") and returned != desc.digest:
        raise InvalidContentError(message.format(returned=returned, expected=desc.digest))


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";", 1)[0].strip()


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: one more than allowed tells the caller it was too long."""
    parts: list[bytes] = []
    total = 0
    async for chunk in response.aiter_raw():
        parts.append(chunk[: limit + 1 - total])
        total += len(parts[-1])
        if total > limit:
            break
    return b"".join(parts)


def _sanitize(text: str) -> str:
    # Registry text reaches a terminal: drop control characters (escape sequences included).
    return "".join(ch for ch in text if ch.isprintable())[:300]


def _redact_url(url: httpx.URL) -> str:
    # Upload locations carry opaque state (sometimes signatures) in their query: never print it.
    return str(url.copy_with(query=None)) + ("?…" if url.query else "")


async def error_from_response(response: httpx.Response) -> RegistryError | TLSError:
    """Build the error an unexpected answer stands for, parsing the spec's error body."""
    body = b""
    with contextlib.suppress(httpx.HTTPError):
        try:
            body = response.content[:MAX_ERROR_BODY]  # already read (a non-streamed request)
        except httpx.ResponseNotRead:
            body = await _read_capped(response, MAX_ERROR_BODY)
    details: list[ErrorDetail] = []
    try:
        parsed = load_json(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        for item in parsed["errors"]:
            if isinstance(item, dict):
                details.append(
                    ErrorDetail(
                        _sanitize(str(item.get("code", "UNKNOWN"))),
                        _sanitize(str(item.get("message", ""))),
                    )
                )
    method = response.request.method
    url = _redact_url(response.request.url)
    status = response.status_code
    if status == 400 and (
        b"HTTP request to an HTTPS server" in body
        or (response.http_version == "HTTP/1.0" and not response.headers)
    ):
        # Go's TLS server answers plain HTTP with a bare HTTP/1.0 400 and that sentence (which
        # a HEAD does not get to read): the registry wants TLS.
        host = response.request.url.netloc.decode()
        return TLSError(
            f"{method} {url}: {host} speaks HTTPS, not plain HTTP",
            hint="give its CA certificate with --from-ca-file/--to-ca-file (any TLS option"
            " turns HTTPS on for loopback hosts)",
        )
    if status in (401, 403):
        host = response.request.url.netloc.decode()
        return AuthenticationError(
            method,
            url,
            status,
            tuple(details),
            hint=f"check the credentials for {host}: run orascp login {host}, or pass"
            " --from-username/--to-username (and a password)",
        )
    cls = RegistryNotFoundError if status == 404 else RegistryError
    error = cls(method, url, status, tuple(details))
    error.exhausted = bool(response.extensions.get(_EXHAUSTED))
    return error


class RegistryClient:
    """Hold the connection pool and settings for one registry."""

    def __init__(
        self,
        registry: str,
        options: RegistryOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or RegistryOptions()
        scheme = "http" if self.options.plain_http else "https"
        host = _HOST_ALIASES.get(registry, registry)
        self.base_url = f"{scheme}://{host}"
        if transport is None:
            transport = AsyncioTransport(
                ssl_context=self.options.ssl_context,
                max_idle_per_origin=self.options.max_connections,
            )
        if self.options.tracer is not None:
            from orascp.registry.trace import TracingTransport

            transport = TracingTransport(transport, self.options.tracer)
        self.origin = httpx.URL(self.base_url)
        self.auth = RegistryAuth(self.base_url, self.options.credential)
        self._headers = dict(self.options.headers)
        self._http = httpx.AsyncClient(
            transport=transport,
            auth=self.auth,
            timeout=httpx.Timeout(
                CONNECT_TIMEOUT, read=READ_TIMEOUT, write=READ_TIMEOUT, pool=None
            ),
            headers={
                "User-Agent": f"orascp/{__version__}",
                # Bytes are hashed as they arrive: any transfer encoding would change them.
                "Accept-Encoding": "identity",
            },
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._http.aclose()

    def repository(self, name: str, referrers_mode: referrers.Mode | None = None) -> Repository:
        """Return the repository ``name`` of this registry."""
        return Repository(self, name, referrers_mode)

    def url(self, path: str) -> httpx.URL:
        """Return the absolute URL of an API path."""
        return httpx.URL(self.base_url + path)

    def network_error(self, method: str, url: httpx.URL, exc: httpx.HTTPError) -> NetworkError:
        """Describe a transport failure of a request to this registry, with a hint."""
        reason = str(exc) or type(exc).__name__
        hint = None
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in reason:
            return TLSError(
                f"{method} {_redact_url(url)}: the TLS certificate of {url.host} is not trusted"
                f" ({reason})",
                hint="pass the registry's CA certificate with --from-ca-file/--to-ca-file"
                " (or skip verification with --from-insecure/--to-insecure)",
            )
        if isinstance(exc, httpx.ConnectError):
            hint = f"check that a registry is listening at {self.base_url}"
            if url.scheme == "https" and "WRONG_VERSION_NUMBER" in reason.upper():
                hint = (
                    f"{url.host} answers plain HTTP, not TLS: leave out the TLS options and pass"
                    " --from-plain-http or --to-plain-http"
                )
            elif url.scheme == "https" and "SSL" in reason.upper():
                hint += " (it may speak plain HTTP: try --from-plain-http or --to-plain-http)"
        elif isinstance(exc, httpx.TimeoutException):
            reason = f"timed out ({type(exc).__name__})"
        return NetworkError(f"{method} {_redact_url(url)}: {reason}", hint=hint)

    async def send(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; transport errors become NetworkError.

        With ``stream`` the body is left unread: the caller must close the response. Only a
        request whose body is in memory (or empty) is retried; see :mod:`orascp.retry`.
        """
        replayable = content is None or isinstance(content, bytes)
        waited = 0.0
        for attempt in range(retry.MAX_ATTEMPTS):
            last = not replayable or attempt == retry.MAX_ATTEMPTS - 1
            try:
                response = await self._send_once(
                    method, url, headers, content, stream, follow_redirects
                )
            except NetworkError as exc:
                if last or not retry.is_retryable(exc) or waited >= retry.MAX_TOTAL_WAIT:
                    exc.exhausted = replayable and retry.is_retryable(exc)
                    raise
                delay = retry.backoff(attempt)
            else:
                if response.status_code not in retry.RETRY_STATUSES:
                    return response
                delay = retry.retry_after(response.headers) or retry.backoff(attempt)
                if last or waited + delay > retry.MAX_TOTAL_WAIT:
                    response.extensions[_EXHAUSTED] = replayable
                    return response
                await response.aclose()
            waited += delay
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send_once(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str] | None,
        content: bytes | AsyncIterable[bytes] | None,
        stream: bool,
        follow_redirects: bool,
    ) -> httpx.Response:
        """Send a request once, following redirects by hand when asked."""
        for _hop in range(MAX_REDIRECTS + 1):
            own = (url.scheme, url.host, url.port) == (
                self.origin.scheme,
                self.origin.host,
                self.origin.port,
            )
            # Credentials and custom headers go to the registry's own origin only, never to
            # the object storage a blob GET is redirected to (nor to another port or scheme).
            merged = {**self._headers, **(headers or {})} if own else {}
            request = self._http.build_request(method, url, headers=merged, content=content)
            try:
                response = await self._http.send(
                    request, stream=stream, auth=self.auth if own else None
                )
            except httpx.HTTPError as exc:
                raise self.network_error(method, url, exc) from None
            location = response.headers.get("location")
            if not (follow_redirects and response.is_redirect and location):
                return response
            await response.aclose()
            target = url.join(location)
            if url.scheme == "https" and target.scheme != "https":
                raise InvalidContentError(
                    f"{self.registry} redirected {_redact_url(url)} to plain http; refusing"
                )
            url = target
        raise InvalidContentError(f"{self.registry}: more than {MAX_REDIRECTS} redirects")

    async def check_credentials(self) -> None:
        """Ask ``/v2/`` whether this client's credentials are accepted; raise if not.

        A registry with token auth issues a token without scope for this check, which is
        enough to prove the user name and password.
        """
        response = await self.send("GET", self.url("/v2/"))
        if response.status_code != 200:
            raise await error_from_response(response)


class Repository:
    """Copy content to and from one repository of a registry."""

    def __init__(
        self, client: RegistryClient, name: str, referrers_mode: referrers.Mode | None = None
    ) -> None:
        self.client = client
        self.name = name
        # None: use the Referrers API if the registry answers it, else the tag schema (and,
        # when pushing, update the tag schema's index unless the registry says OCI-Subject).
        self.referrers_mode = referrers_mode
        self._api_state: bool | None = {
            None: None,
            "v1.1-referrers-api": True,
            "v1.1-referrers-tag": False,
        }[referrers_mode]
        self._index_locks: dict[str, asyncio.Lock] = {}
        self._indexed: set[tuple[str, str]] = set()

    @property
    def registry(self) -> str:
        """Return the registry this repository lives on."""
        return self.client.registry

    def _url(self, kind: str, reference: str) -> httpx.URL:
        return self.client.url(f"/v2/{self.name}/{kind}/{reference}")

    # -- reading ----------------------------------------------------------------------------

    async def exists(self, desc: Descriptor) -> bool:
        """Tell whether the repository holds ``desc`` (one HEAD)."""
        validate_digest(desc.digest)
        if is_manifest(desc.media_type):
            # distribution answers 404 to a HEAD on an OCI manifest without the OCI Accept.
            url = self._url("manifests", desc.digest)
            headers = {"Accept": f"{desc.media_type}, {_MANIFEST_ACCEPT}"}
        else:
            url, headers = self._url("blobs", desc.digest), {}
        response = await self.client.send("HEAD", url, headers=headers)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise await error_from_response(response)

    async def mountable(self, desc: Descriptor, from_repository: str) -> bool:
        """Tell whether ``from_repository`` of this registry holds blob ``desc`` (one HEAD).

        Used by ``--dry-run`` to tell a mount from a copy without opening an upload session; a
        repository the credentials cannot read counts as not holding it.
        """
        validate_digest(desc.digest)
        url = self.client.url(f"/v2/{from_repository}/blobs/{desc.digest}")
        self.client.auth.add_scopes(f"repository:{from_repository}:pull")
        response = await self.client.send("HEAD", url)
        if response.status_code in (200, 401, 403, 404):
            return response.status_code == 200
        raise await error_from_response(response)

    async def tags(self) -> list[str]:
        """List the repository's tags, following ``Link`` pages on the same origin."""
        url = self.client.url(f"/v2/{self.name}/tags/list")
        found: list[str] = []
        seen: set[str] = set()
        for _page in range(MAX_TAG_PAGES):
            response = await self.client.send("GET", url, stream=True)
            try:
                if response.status_code != 200:
                    raise await error_from_response(response)
                content = await self._read_body(response, url, MAX_TAG_LIST_BYTES)
            finally:
                await response.aclose()
            try:
                obj = load_json(content)
            except ValueError:
                obj = None
            tags = obj.get("tags") if isinstance(obj, dict) else None
            if tags is None and isinstance(obj, dict):
                tags = []  # distribution answers "tags": null for a repository with none
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidContentError(f"{self.registry}/{self.name}: malformed tag list")
            found.extend(t for t in tags if t not in seen)
            seen.update(tags)
            following = _next_page(response, url, f"the tag list of {self.name}")
            if following is None:
                return found
            url = following
        raise InvalidContentError(
            f"{self.registry}/{self.name} listed its tags over more than {MAX_TAG_PAGES} pages"
        )

    async def fetch_reference(self, reference: str) -> tuple[Descriptor, bytes]:
        """Resolve a tag or digest and return the manifest's descriptor and verified bytes."""
        url = self._url("manifests", reference)
        response = await self.client.send(
            "GET", url, headers={"Accept": _MANIFEST_ACCEPT}, stream=True
        )
        try:
            if response.status_code != 200:
                raise await error_from_response(response)
            content = await self._read_manifest(response, url)
        finally:
            await response.aclose()
        media_type = _media_type(response)
        if media_type not in MANIFEST_MEDIA_TYPES:
            declared = _declared_media_type(content)
            if declared is None:
                raise InvalidContentError(
                    f"{self.registry}/{self.name}:{reference} was served as {quote(media_type)},"
                    " which is not a manifest type orascp knows"
                )
            media_type = declared
        if reference.startswith(("sha256:", "sha512:")):
            desc = Descriptor(media_type, reference, len(content))
            check_bytes(desc, content)
        else:
            desc = Descriptor(media_type, compute_digest(content), len(content))
        _check_digest_header(
            response,
            desc,
            f"{self.registry}/{self.name}:{reference}: the registry says the manifest is"
            " {returned}, but its bytes hash to {expected}",
        )
        return desc, content

    async def _read_manifest(self, response: httpx.Response, url: httpx.URL) -> bytes:
        limit = self.client.options.max_manifest_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise SizeLimitError(
                f"manifest at {_redact_url(url)} is {declared} bytes, above the {limit}-byte limit"
            )
        content = await self._read_body(response, url, limit)
        if len(content) > limit:
            raise SizeLimitError(f"manifest at {_redact_url(url)} is above the {limit}-byte limit")
        return content

    async def _read_body(self, response: httpx.Response, url: httpx.URL, limit: int) -> bytes:
        try:
            return await _read_capped(response, limit)
        except httpx.HTTPError as exc:
            raise self.client.network_error("GET", url, exc) from None

    async def resolve(self, reference: str) -> Descriptor:
        """Return the descriptor of a tag or digest."""
        desc, _ = await self.fetch_reference(reference)
        return desc

    @asynccontextmanager
    async def _open(self, desc: Descriptor) -> AsyncIterator[AsyncIterator[bytes]]:
        validate_digest(desc.digest)
        if is_manifest(desc.media_type):
            url = self._url("manifests", desc.digest)
            headers = {"Accept": desc.media_type}
        else:
            url, headers = self._url("blobs", desc.digest), {}
        # Blob GETs may be redirected to object storage; httpx drops Authorization when the
        # redirect leaves the registry's origin.
        response = await self.client.send(
            "GET", url, headers=headers, stream=True, follow_redirects=True
        )
        try:
            if response.status_code != 200:
                raise await error_from_response(response)
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) != desc.size:
                raise SizeMismatchError(
                    f"{desc.digest}: the registry announces {declared} bytes, the descriptor"
                    f" says {desc.size}"
                )
            if is_manifest(desc.media_type) and _media_type(response) != desc.media_type:
                raise InvalidContentError(
                    f"{desc.digest} was served as {quote(_media_type(response))}, expected"
                    f" {quote(desc.media_type)}"
                )
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding not in ("identity", ""):
                raise InvalidContentError(
                    f"{desc.digest} was served with Content-Encoding {quote(encoding)}; orascp asks"
                    " for identity and verifies the bytes as stored"
                )
            yield self._raw_chunks(response, url)
        finally:
            await response.aclose()

    async def _raw_chunks(self, response: httpx.Response, url: httpx.URL) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise self.client.network_error("GET", url, exc) from None

    def fetch(self, desc: Descriptor) -> FetchStream:
        """Return a stream of the raw bytes of ``desc`` (verified by whoever consumes them)."""
        return self._open(desc)

    # -- writing ----------------------------------------------------------------------------

    async def push(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Upload a blob (POST + PUT) or a manifest (PUT by digest), verifying on the way."""
        validate_digest(desc.digest)
        if is_manifest(desc.media_type):
            content = b"".join([c async for c in verified(chunks, desc)])
            await self._put_manifest(desc, content, desc.digest)
            return
        started = await self._start_upload()
        session = await self._session_url(started)
        try:
            await self._finish_upload(session, desc, chunks)
        except BaseException:
            await self._cancel_upload(session)
            raise

    async def push_reference(self, desc: Descriptor, content: bytes, reference: str) -> None:
        """Upload a manifest and tag it in one PUT."""
        check_bytes(desc, content)
        await self._put_manifest(desc, content, reference)

    async def tag(self, desc: Descriptor, references: list[str]) -> None:
        """Tag an existing manifest: fetch its bytes once, PUT them under each tag."""
        if not references:
            return
        async with self.fetch(desc) as chunks:
            content = b"".join([c async for c in verified(chunks, desc)])
        await asyncio.gather(*(self._put_manifest(desc, content, ref) for ref in references))

    async def _put_manifest(self, desc: Descriptor, content: bytes, reference: str) -> None:
        url = self._url("manifests", reference)
        response = await self.client.send(
            "PUT", url, headers={"Content-Type": desc.media_type}, content=content
        )
        if response.status_code != 201:
            raise await error_from_response(response)
        _check_digest_header(
            response, desc, "the registry stored manifest {expected} as {returned}"
        )
        await self._index_referrer(desc, content, response)

    async def _index_referrer(
        self, desc: Descriptor, content: bytes, response: httpx.Response
    ) -> None:
        """List a pushed referrer in its subject's tag-schema index, if the registry does not.

        A registry with the Referrers API answers ``OCI-Subject``; without it, the pusher keeps
        the ``<alg>-<hex>`` index. Updates for one subject are serialised, so referrers pushed
        concurrently by this copy are all kept.
        """
        if self._api_state is True:
            return
        subject = referrers.subject_of(desc.media_type, content)
        if subject is None:
            return
        if self._api_state is None and response.headers.get("oci-subject"):
            return
        await self._add_to_tag_schema(subject, desc, content)

    async def list_referrer(self, desc: Descriptor, content: bytes) -> None:
        """Make sure a referrer this repository already holds is listed under its subject.

        An earlier copy may have stopped between pushing the referrer and updating the tag
        schema index: a registry with the Referrers API lists it by itself, else it is added.
        """
        subject = referrers.subject_of(desc.media_type, content)
        if subject is None or self._api_state is True:
            return
        if self._api_state is None:
            self._api_state = await self._referrers_api(subject) is not None
            if self._api_state:
                return
        await self._add_to_tag_schema(subject, desc, content)

    async def _add_to_tag_schema(
        self, subject: Descriptor, desc: Descriptor, content: bytes
    ) -> None:
        """Add ``desc`` to ``subject``'s tag-schema index (fetch, add, PUT) unless listed."""
        key = (subject.digest, desc.digest)
        lock = self._index_locks.setdefault(subject.digest, asyncio.Lock())
        async with lock:
            if key in self._indexed:
                return
            old = await self._tag_schema_index(subject)
            new = referrers.add_referrer(old, referrers.referrer_descriptor(desc, content))
            if new is not None:
                index = Descriptor(OCI_INDEX, compute_digest(new), len(new))
                await self._put_manifest(index, new, referrers.tag_schema_tag(subject.digest))
            self._indexed.add(key)

    async def _tag_schema_index(self, subject: Descriptor) -> bytes | None:
        """Return the bytes of ``subject``'s tag-schema referrers index, or None."""
        try:
            found, content = await self.fetch_reference(referrers.tag_schema_tag(subject.digest))
        except RegistryNotFoundError:
            return None
        # Some registries resolve the tag "sha256-<hex>" to the manifest "sha256:<hex>" itself.
        if found.digest == subject.digest or found.media_type != OCI_INDEX:
            return None
        return content

    # -- referrers --------------------------------------------------------------------------

    async def referrers(self, desc: Descriptor) -> list[Descriptor]:
        """List the manifests whose subject is ``desc``: Referrers API, else the tag schema."""
        validate_digest(desc.digest)
        if self._api_state is not False:
            found = await self._referrers_api(desc)
            if found is not None:
                self._api_state = True
                return found
            if self._api_state is True:
                raise UnsupportedError(
                    f"{self.registry}/{self.name} does not implement the Referrers API",
                    hint="use --from-distribution-spec v1.1-referrers-tag, or leave the flag out",
                )
            self._api_state = False
        content = await self._tag_schema_index(desc)
        return [] if content is None else referrers.parse_referrers_index(content, desc.digest)

    async def _referrers_api(self, desc: Descriptor) -> list[Descriptor] | None:
        """Page through the Referrers API; None if the registry does not implement it."""
        url = self._url("referrers", desc.digest)
        found: list[Descriptor] = []
        for page in range(MAX_REFERRER_PAGES):
            response = await self.client.send(
                "GET", url, headers={"Accept": OCI_INDEX}, stream=True
            )
            try:
                if response.status_code == 404 and page == 0:
                    error = await error_from_response(response)
                    if isinstance(error, RegistryError) and "NAME_UNKNOWN" in error.codes:
                        raise error
                    return None  # distribution 2.8 and others: no such route
                if response.status_code != 200:
                    raise await error_from_response(response)
                if _media_type(response) != OCI_INDEX:
                    if page == 0:
                        return None  # not the API: an HTML page, a proxy's answer...
                    raise InvalidContentError(
                        f"{self.registry} answered page {page + 1} of the referrers of"
                        f" {desc.digest} as {quote(_media_type(response))}"
                    )
                content = await self._read_manifest(response, url)
            finally:
                await response.aclose()
            found.extend(referrers.parse_referrers_index(content, desc.digest))
            following = _next_page(response, url, f"the referrers of {desc.digest}")
            if following is None:
                return found
            url = following
        raise InvalidContentError(
            f"{self.registry} listed the referrers of {desc.digest} over more than"
            f" {MAX_REFERRER_PAGES} pages"
        )

    async def _start_upload(self, query: str = "") -> httpx.Response:
        """POST to open an upload session (or mount); a cancelled POST still has its session
        cancelled, since the registry may have opened one before the copy gave up."""
        url = self.client.url(f"/v2/{self.name}/blobs/uploads/{query}")
        post = asyncio.ensure_future(self.client.send("POST", url))
        try:
            return await asyncio.shield(post)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                started = await asyncio.wait_for(post, timeout=5)
                if started.status_code == 202 and started.headers.get("location"):
                    await self._cancel_upload(await self._session_url(started))
            raise

    async def _session_url(self, response: httpx.Response) -> httpx.URL:
        """Return the upload session URL of a 202, refusing one on another origin."""
        if response.status_code != 202:
            raise await error_from_response(response)
        location = response.headers.get("location")
        if not location:
            raise InvalidContentError(
                f"{self.registry} opened an upload session without a Location header"
            )
        url = response.request.url.join(location)
        origin = response.request.url
        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
            # An upload URL elsewhere would receive our bytes and credentials: never follow it.
            raise InvalidContentError(
                f"{self.registry} sent the upload to another origin ({url.scheme}://{url.host});"
                " refusing to upload there"
            )
        return url

    async def _finish_upload(
        self, session: httpx.URL, desc: Descriptor, chunks: AsyncIterable[bytes]
    ) -> None:
        """Send the whole blob into an open upload session with one PUT (the caller cancels)."""
        url = session.copy_merge_params({"digest": desc.digest})
        response = await self.client.send(
            "PUT",
            url,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(desc.size),
            },
            content=verified(chunks, desc),
        )
        if response.status_code != 201:
            raise await error_from_response(response)
        _check_digest_header(response, desc, "the registry stored blob {expected} as {returned}")

    async def _cancel_upload(self, session: httpx.URL) -> None:
        """Cancel an upload session (best effort: the spec says to ignore failures)."""
        with contextlib.suppress(Exception):
            # Shielded so that a Ctrl-C during an upload still cancels its session.
            await asyncio.wait_for(asyncio.shield(self.client.send("DELETE", session)), timeout=5)

    async def mount(
        self,
        desc: Descriptor,
        from_repository: str,
        fallback: Callable[[], FetchStream] | None,
    ) -> MountOutcome:
        """Mount a blob from another repository; on 202 upload ``fallback``'s bytes instead."""
        validate_digest(desc.digest)
        params = str(httpx.QueryParams({"mount": desc.digest, "from": from_repository}))
        started = await self._start_upload(f"?{params}")
        if started.status_code == 201:
            _check_digest_header(
                started, desc, "the registry mounted {returned} when asked for {expected}"
            )
            return MountOutcome.MOUNTED
        session = await self._session_url(started)
        if fallback is None:
            await self._cancel_upload(session)
            return MountOutcome.NOT_MOUNTED
        try:
            async with fallback() as chunks:
                await self._finish_upload(session, desc, chunks)
        except BaseException:
            await self._cancel_upload(session)
            raise
        return MountOutcome.UPLOADED


def _next_page(response: httpx.Response, url: httpx.URL, what: str) -> httpx.URL | None:
    """Return the URL of the next page a ``Link`` header names, refusing another origin.

    The next page elsewhere would get our credentials: it is never followed.
    """
    following = _next_link(response.headers.get("link", ""))
    if following is None:
        return None
    target = url.join(following)
    if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
        raise InvalidContentError(
            f"{url.host} paged {what} to another origin ({target.scheme}://{target.host});"
            " refusing to follow"
        )
    return target


def _next_link(header: str) -> str | None:
    """Return the target of the ``rel="next"`` entry of a ``Link`` header (RFC 8288)."""
    for part in header.split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if target.startswith("<") and target.endswith(">") and re.search(r'rel="?next"?', params):
            return target[1:-1]
    return None


def _declared_media_type(content: bytes) -> str | None:
    try:
        obj = load_json(content)
    except ValueError:
        return None
    declared = obj.get("mediaType") if isinstance(obj, dict) else None
    return declared if declared in MANIFEST_MEDIA_TYPES else None
