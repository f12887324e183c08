"""Speak the distribution API to a MockTransport that answers what a real registry may not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from orascp.content import FetchStream, MountOutcome
from orascp.descriptor import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    compute_digest,
    descriptor_for,
)
from orascp.errors import (
    AuthenticationError,
    InvalidContentError,
    NotFoundError,
    RegistryError,
    RegistryNotFoundError,
    SizeLimitError,
    VerificationError,
)
from orascp.memory import MemoryStore
from orascp.registry.client import RegistryClient, RegistryOptions, Repository

HOST = "registry.test"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BLOB = b"layer bytes " * 100
BLOB_DESC = descriptor_for(LAYER, BLOB)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_for("application/vnd.oci.empty.v1+json", b"{}").to_json(),
        "layers": [BLOB_DESC.to_json()],
    }
).encode()
MANIFEST_DESC = descriptor_for(OCI_MANIFEST, MANIFEST)
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Record every request, then answer it with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


def with_repository(
    handler: Handler, body: Callable[[Repository], Awaitable[Any]]
) -> tuple[Recorder, Any]:
    recorder = Recorder(handler)

    async def main() -> Any:
        client = RegistryClient(
            HOST, RegistryOptions(plain_http=True), transport=httpx.MockTransport(recorder)
        )
        try:
            return await body(client.repository("team/app"))
        finally:
            await client.aclose()

    return recorder, asyncio.run(main())


def source_with_blob() -> MemoryStore:
    store = MemoryStore()
    store.add(BLOB_DESC, BLOB)
    return store


def reply(
    status: int, content: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    """Return an unread response, as one off the network is (``content=`` would pre-read it)."""
    all_headers = {"Content-Length": str(len(content)), **(headers or {})}
    return httpx.Response(status, headers=all_headers, stream=httpx.ByteStream(content))


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


# -- mount ------------------------------------------------------------------------------------


def test_mount_201_is_one_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": BLOB_DESC.digest})

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", source_with_blob().fetch)

    recorder, outcome = with_repository(handler, body)
    assert outcome is MountOutcome.MOUNTED
    assert len(recorder.requests) == 1
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/v2/team/app/blobs/uploads/"
    assert request.url.params["mount"] == BLOB_DESC.digest
    assert request.url.params["from"] == "team/other"
    assert request.url.scheme == "http"


def test_mount_201_of_other_content_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", None)

    with pytest.raises(InvalidContentError, match="mounted"):
        with_repository(handler, body)


@pytest.mark.parametrize(
    ("location", "expected_path"),
    [
        ("/v2/team/app/blobs/uploads/session-1?_state=abc", "/v2/team/app/blobs/uploads/session-1"),
        ("session-2?_state=abc", "/v2/team/app/blobs/uploads/session-2"),
        (
            f"http://{HOST}/v2/team/app/blobs/uploads/session-3?_state=abc",
            "/v2/team/app/blobs/uploads/session-3",
        ),
    ],
)
def test_mount_202_uploads_into_the_opened_session(location: str, expected_path: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": location})
        if request.method == "PUT":
            return httpx.Response(201, headers={"Docker-Content-Digest": BLOB_DESC.digest})
        return httpx.Response(500)

    fallback_calls = []

    def fallback() -> FetchStream:
        fallback_calls.append(1)
        return source_with_blob().fetch(BLOB_DESC)

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", fallback)

    recorder, outcome = with_repository(handler, body)
    assert outcome is MountOutcome.UPLOADED
    assert recorder.methods == ["POST", "PUT"]
    assert fallback_calls == [1]
    put = recorder.requests[1]
    assert put.url.host == HOST
    assert put.url.path == expected_path
    assert put.url.params["_state"] == "abc"
    assert put.url.params["digest"] == BLOB_DESC.digest
    assert put.headers["content-length"] == str(len(BLOB))
    assert "transfer-encoding" not in put.headers
    assert put.content == BLOB


def test_mount_202_without_fallback_cancels_the_session() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/team/app/blobs/uploads/s1"})
        return httpx.Response(204)

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", None)

    recorder, outcome = with_repository(handler, body)
    assert outcome is MountOutcome.NOT_MOUNTED
    assert recorder.methods == ["POST", "DELETE"]
    assert str(recorder.requests[1].url) == f"http://{HOST}/v2/team/app/blobs/uploads/s1"


@pytest.mark.parametrize(
    "location",
    [
        "http://evil.test/v2/team/app/blobs/uploads/s1",
        f"https://{HOST}/v2/team/app/blobs/uploads/s1",
        f"http://{HOST}:8080/v2/team/app/blobs/uploads/s1",
        "//evil.test/upload",
    ],
)
def test_mount_202_to_another_origin_is_refused(location: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": location})
        return httpx.Response(201)

    fallback_calls = []

    def fallback() -> FetchStream:
        fallback_calls.append(1)
        return source_with_blob().fetch(BLOB_DESC)

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", fallback)

    recorder = Recorder(handler)
    with pytest.raises(InvalidContentError, match="another origin"):
        asyncio.run(_run_with(recorder, body))
    assert recorder.methods == ["POST"]
    assert all(r.url.host == HOST for r in recorder.requests)
    assert fallback_calls == []


def test_push_to_another_origin_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "http://evil.test/upload/1"})
        return httpx.Response(201)

    async def body(repo: Repository) -> None:
        await repo.push(BLOB_DESC, _chunks(BLOB))

    recorder = Recorder(handler)
    with pytest.raises(InvalidContentError, match="another origin"):
        asyncio.run(_run_with(recorder, body))
    assert "PUT" not in recorder.methods
    assert all(r.url.host == HOST for r in recorder.requests)


def test_mount_202_whose_fallback_fails_to_open_cancels_the_session() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/team/app/blobs/uploads/s1"})
        return httpx.Response(204 if request.method == "DELETE" else 201)

    empty_source = MemoryStore()  # the blob is missing: opening the stream fails

    async def body(repo: Repository) -> MountOutcome:
        return await repo.mount(BLOB_DESC, "team/other", lambda: empty_source.fetch(BLOB_DESC))

    recorder = Recorder(handler)
    with pytest.raises(NotFoundError):
        asyncio.run(_run_with(recorder, body))
    assert "PUT" not in recorder.methods
    assert recorder.methods == ["POST", "DELETE"], "the upload session was left open"


async def _run_with(recorder: Recorder, body: Callable[[Repository], Awaitable[Any]]) -> Any:
    client = RegistryClient(
        HOST, RegistryOptions(plain_http=True), transport=httpx.MockTransport(recorder)
    )
    try:
        return await body(client.repository("team/app"))
    finally:
        await client.aclose()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# -- blob upload ------------------------------------------------------------------------------


def test_push_blob_is_post_then_put() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/team/app/blobs/uploads/u1"})
        return httpx.Response(201, headers={"Docker-Content-Digest": BLOB_DESC.digest})

    async def body(repo: Repository) -> None:
        await repo.push(BLOB_DESC, _chunks(BLOB[:100], BLOB[100:]))

    recorder, _ = with_repository(handler, body)
    assert recorder.methods == ["POST", "PUT"]
    assert "mount" not in recorder.requests[0].url.params
    put = recorder.requests[1]
    assert put.url.params["digest"] == BLOB_DESC.digest
    assert put.headers["content-type"] == "application/octet-stream"
    assert put.content == BLOB


def _push_with_failing_put() -> tuple[Recorder, Exception | None]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/team/app/blobs/uploads/u1?s=1"})
        if request.method == "PUT":
            return reply(500, error_body("UNKNOWN", "disk full"))
        return httpx.Response(204)

    async def body(repo: Repository) -> None:
        await repo.push(BLOB_DESC, _chunks(BLOB))

    recorder = Recorder(handler)
    try:
        asyncio.run(_run_with(recorder, body))
    except Exception as exc:
        return recorder, exc
    return recorder, None


def test_failing_upload_put_cancels_the_session() -> None:
    recorder, error = _push_with_failing_put()
    assert error is not None
    assert recorder.methods == ["POST", "PUT", "DELETE"]
    delete = recorder.requests[2]
    assert delete.url.path == "/v2/team/app/blobs/uploads/u1"
    assert delete.url.params["s"] == "1"


def test_failing_upload_put_is_a_registry_error() -> None:
    _, error = _push_with_failing_put()
    assert isinstance(error, RegistryError), repr(error)
    assert error.status_code == 500
    assert error.method == "PUT"
    assert "disk full" in str(error)


def test_bad_bytes_are_never_committed_and_the_session_is_cancelled() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/team/app/blobs/uploads/u1"})
        return httpx.Response(201 if request.method == "PUT" else 204)

    async def body(repo: Repository) -> None:
        await repo.push(BLOB_DESC, _chunks(BLOB[:-1] + b"!"))

    recorder = Recorder(handler)
    with pytest.raises(VerificationError):
        asyncio.run(_run_with(recorder, body))
    assert recorder.methods[-1] == "DELETE"
    assert not any(r.method == "PUT" and r.content == BLOB[:-1] + b"!" for r in recorder.requests)


def test_push_manifest_puts_by_digest_with_its_media_type() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": MANIFEST_DESC.digest})

    async def body(repo: Repository) -> None:
        await repo.push(MANIFEST_DESC, _chunks(MANIFEST))
        await repo.push_reference(MANIFEST_DESC, MANIFEST, "v1")

    recorder, _ = with_repository(handler, body)
    assert recorder.methods == ["PUT", "PUT"]
    assert recorder.requests[0].url.path == f"/v2/team/app/manifests/{MANIFEST_DESC.digest}"
    assert recorder.requests[1].url.path == "/v2/team/app/manifests/v1"
    for request in recorder.requests:
        assert request.headers["content-type"] == OCI_MANIFEST
        assert request.content == MANIFEST


# -- fetching manifests -----------------------------------------------------------------------


class TrackingStream(httpx.AsyncByteStream):
    """A response body that records whether anyone started reading it."""

    def __init__(self, data: bytes, chunk: int = 1024 * 1024) -> None:
        self.data = data
        self.chunk = chunk
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start : start + self.chunk]

    async def aclose(self) -> None:
        pass


def test_oversized_manifest_is_refused_before_its_body_is_read() -> None:
    stream = TrackingStream(b"{}")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(4 * 1024 * 1024 + 1)},
            stream=stream,
        )

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    with pytest.raises(SizeLimitError):
        with_repository(handler, body)
    assert stream.read is False


def test_manifest_body_above_the_limit_without_content_length_is_refused() -> None:
    # A chunked answer announces no length: the limit must hold on the bytes themselves.
    big = b"x" * (4 * 1024 * 1024 + 10)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Type": OCI_MANIFEST}, stream=TrackingStream(big)
        )

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    with pytest.raises(SizeLimitError):
        with_repository(handler, body)


def manifest_handler(
    content: bytes, media_type: str = OCI_MANIFEST, digest_header: str | None = None
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": media_type}
        if digest_header is not None:
            headers["Docker-Content-Digest"] = digest_header
        return reply(200, content, headers)

    return handler


def test_fetch_reference_by_tag() -> None:
    async def body(repo: Repository) -> tuple[Descriptor, bytes]:
        return await repo.fetch_reference("v1")

    recorder, (desc, content) = with_repository(
        manifest_handler(MANIFEST, digest_header=MANIFEST_DESC.digest), body
    )
    assert desc == MANIFEST_DESC
    assert desc.media_type == OCI_MANIFEST
    assert content == MANIFEST
    assert len(recorder.requests) == 1
    request = recorder.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/v2/team/app/manifests/v1"
    for media_type in (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST):
        assert media_type in request.headers["accept"]


def test_fetch_reference_by_digest_verifies_the_bytes() -> None:
    tampered = MANIFEST.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    assert len(tampered) == len(MANIFEST)

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference(MANIFEST_DESC.digest)

    with pytest.raises(VerificationError):
        with_repository(manifest_handler(tampered), body)
    with pytest.raises(VerificationError):
        with_repository(manifest_handler(MANIFEST + b" "), body)
    _, (desc, content) = with_repository(manifest_handler(MANIFEST), body)
    assert desc == MANIFEST_DESC
    assert content == MANIFEST


def test_fetch_reference_checks_docker_content_digest() -> None:
    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    wrong = compute_digest(b"something else")
    with pytest.raises(InvalidContentError, match=wrong):
        with_repository(manifest_handler(MANIFEST, digest_header=wrong), body)


def test_fetch_reference_takes_the_declared_type_when_served_as_json() -> None:
    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    _, (desc, _) = with_repository(manifest_handler(MANIFEST, "application/json"), body)
    assert desc.media_type == OCI_MANIFEST
    with pytest.raises(InvalidContentError, match="not a manifest type"):
        with_repository(manifest_handler(b'{"x": 1}', "application/json"), body)


# -- errors -----------------------------------------------------------------------------------


def test_404_becomes_registry_not_found_with_its_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(404, error_body("MANIFEST_UNKNOWN", "manifest unknown"))

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("nope")

    with pytest.raises(RegistryNotFoundError) as info:
        with_repository(handler, body)
    error = info.value
    assert isinstance(error, NotFoundError)
    assert error.codes == frozenset({"MANIFEST_UNKNOWN"})
    assert error.status_code == 404
    assert error.method == "GET"
    assert "MANIFEST_UNKNOWN: manifest unknown" in str(error)
    assert f"http://{HOST}/v2/team/app/manifests/nope" in str(error)


async def _fetch(repo: Repository) -> Any:
    return await repo.fetch_reference("v1")


async def _exists(repo: Repository) -> Any:
    return await repo.exists(BLOB_DESC)


async def _mount(repo: Repository) -> Any:
    return await repo.mount(BLOB_DESC, "team/other", None)


async def _push_manifest(repo: Repository) -> Any:
    return await repo.push_reference(MANIFEST_DESC, MANIFEST, "v1")


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize(
    "operation",
    [_fetch, _exists, _mount, _push_manifest],
    ids=["GET-manifest", "HEAD-blob", "POST-mount", "PUT-manifest"],
)
def test_401_and_403_become_authentication_errors(
    status: int, operation: Callable[[Repository], Awaitable[Any]]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(status, error_body("UNAUTHORIZED", "authentication required"))

    with pytest.raises(AuthenticationError) as info:
        with_repository(handler, operation)
    assert info.value.status_code == status
    assert "UNAUTHORIZED" in info.value.codes


def test_error_without_a_body_names_the_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(503)

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    with pytest.raises(RegistryError, match="503: service unavailable"):
        with_repository(handler, body)


def test_error_text_is_sanitised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(400, error_body("BAD\x1b[31m", "evil\x1b]0;title\x07text"))

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    with pytest.raises(RegistryError) as info:
        with_repository(handler, body)
    assert "\x1b" not in str(info.value)
    assert "\x07" not in str(info.value)


def test_transport_failure_becomes_a_network_error() -> None:
    from orascp.errors import NetworkError

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def body(repo: Repository) -> Any:
        return await repo.fetch_reference("v1")

    with pytest.raises(NetworkError) as info:
        with_repository(handler, body)
    assert info.value.hint is not None
    assert f"http://{HOST}" in info.value.hint


# -- exists -----------------------------------------------------------------------------------


def test_head_for_a_manifest_accepts_oci_manifest_types() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def body(repo: Repository) -> bool:
        return await repo.exists(MANIFEST_DESC)

    recorder, found = with_repository(handler, body)
    assert found is True
    request = recorder.requests[0]
    assert request.method == "HEAD"
    assert request.url.path == f"/v2/team/app/manifests/{MANIFEST_DESC.digest}"
    accept = [t.strip() for t in request.headers["accept"].split(",")]
    assert OCI_MANIFEST in accept
    assert OCI_INDEX in accept


def test_head_for_a_blob() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    async def body(repo: Repository) -> bool:
        return await repo.exists(BLOB_DESC)

    recorder, found = with_repository(handler, body)
    assert found is False
    assert recorder.requests[0].method == "HEAD"
    assert recorder.requests[0].url.path == f"/v2/team/app/blobs/{BLOB_DESC.digest}"


# -- fetching blobs ---------------------------------------------------------------------------


def test_fetch_blob_refuses_a_wrong_content_length() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(200, BLOB + b"extra")

    async def body(repo: Repository) -> bytes:
        async with repo.fetch(BLOB_DESC) as chunks:
            return b"".join([c async for c in chunks])

    with pytest.raises(VerificationError):
        with_repository(handler, body)


def test_fetch_blob_streams_its_bytes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(200, BLOB)

    async def body(repo: Repository) -> bytes:
        async with repo.fetch(BLOB_DESC) as chunks:
            return b"".join([c async for c in chunks])

    recorder, data = with_repository(handler, body)
    assert data == BLOB
    assert recorder.requests[0].url.path == f"/v2/team/app/blobs/{BLOB_DESC.digest}"
    assert recorder.requests[0].headers["accept-encoding"] == "identity"
