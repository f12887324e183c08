"""The in-memory registry double: the distribution API, the Referrers API and its quirks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.artifacts import OCI_INDEX, OCI_MANIFEST, digest_of
from tests.support.fakeregistry import FakeRegistry, push_image

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


@pytest.fixture
def reg() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


@pytest.fixture
def client(reg: FakeRegistry) -> Iterator[httpx.Client]:
    # verify=False: plain HTTP, and it spares httpx 40 ms building a TLS context.
    with httpx.Client(base_url=reg.url, timeout=10, verify=False) as c:
        yield c


def upload(client: httpx.Client, name: str, data: bytes) -> str:
    """POST then monolithic PUT; return the digest."""
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    r = client.put(r.headers["location"], params={"digest": digest_of(data)}, content=data)
    assert r.status_code == 201, r.text
    return digest_of(data)


def next_link(response: httpx.Response) -> str | None:
    link: str | None = response.headers.get("link")
    if link is None:
        return None
    target, _, rel = link.partition(";")
    assert rel.strip() == 'rel="next"'
    return target.strip().removeprefix("<").removesuffix(">")


def error_code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


# -- base, manifests, blobs ------------------------------------------------------------------


def test_serves_loopback_and_answers_v2(reg: FakeRegistry, client: httpx.Client) -> None:
    assert reg.host.startswith("127.0.0.1:")
    assert reg.url == f"http://{reg.host}"
    r = client.get("/v2/")
    assert (r.status_code, r.json()) == (200, {})
    assert reg.requests == [("GET", "/v2/", 200)]


def test_push_pull_round_trip(reg: FakeRegistry, client: httpx.Client) -> None:
    digest, data = push_image(reg, "team/app", "v1", [b"layer one", b"layer two"])
    assert digest == digest_of(data)

    for ref in ("v1", digest):
        r = client.get(f"/v2/team/app/manifests/{ref}")
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["content-type"] == OCI_MANIFEST
        assert r.headers["docker-content-digest"] == digest
        assert r.headers["content-length"] == str(len(data))
        head = client.head(f"/v2/team/app/manifests/{ref}")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        assert head.content == b""

    for layer in json.loads(data)["layers"]:
        r = client.get(f"/v2/team/app/blobs/{layer['digest']}")
        assert r.status_code == 200
        assert digest_of(r.content) == layer["digest"]
        assert r.headers["docker-content-digest"] == layer["digest"]

    assert reg.manifest("team/app", "v1") == data
    assert reg.manifest("team/app", digest) == data
    assert reg.manifest("team/app", "v2") is None
    assert reg.blob("team/app", digest_of(b"layer one")) == b"layer one"
    assert reg.blob("other", digest_of(b"layer one")) is None  # blobs are linked per repository
    assert reg.tags("team/app") == ["v1"]
    assert reg.count("PUT", r"/manifests/v1$", status=201) == 1
    assert reg.count("PUT", r"/blobs/uploads/") == 3  # config and two layers


def test_unknown_content_is_404_with_distribution_errors(client: httpx.Client) -> None:
    missing = digest_of(b"missing")
    r = client.get(f"/v2/team/app/manifests/{missing}")
    assert (r.status_code, error_code(r)) == (404, "MANIFEST_UNKNOWN")
    r = client.get("/v2/team/app/manifests/latest")
    assert (r.status_code, error_code(r)) == (404, "MANIFEST_UNKNOWN")
    r = client.head("/v2/team/app/manifests/latest")
    assert r.status_code == 404
    r = client.get(f"/v2/team/app/blobs/{missing}")
    assert (r.status_code, error_code(r)) == (404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/team/app/blobs/{missing}").status_code == 404


def test_manifest_put_checks_digest_and_content(reg: FakeRegistry, client: httpx.Client) -> None:
    _, data = push_image(reg, "app", None, [b"x"])
    headers = {"Content-Type": OCI_MANIFEST}
    r = client.put(f"/v2/copy/manifests/{digest_of(b'other')}", content=data, headers=headers)
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    # The copy repository has none of the blobs yet: distribution refuses such a manifest.
    r = client.put(f"/v2/copy/manifests/{digest_of(data)}", content=data, headers=headers)
    assert (r.status_code, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    r = client.put("/v2/app/manifests/bad", content=data, headers={"Content-Type": OCI_INDEX})
    assert (r.status_code, error_code(r)) == (400, "MANIFEST_INVALID")
    r = client.put("/v2/app/manifests/ok", content=data, headers=headers)
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/app/manifests/{digest_of(data)}"
    assert r.headers["docker-content-digest"] == digest_of(data)
    assert reg.tags("app") == ["ok"]


def test_range_request_on_blob(reg: FakeRegistry, client: httpx.Client) -> None:
    digest = upload(client, "app", b"0123456789")
    r = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "bytes=2-5"})
    assert (r.status_code, r.content) == (206, b"2345")
    assert r.headers["content-range"] == "bytes 2-5/10"
    r = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "bytes=10-"})
    assert r.status_code == 416


# -- uploads ----------------------------------------------------------------------------------


def test_mount_from_a_repository_holding_the_blob_is_201(
    reg: FakeRegistry, client: httpx.Client
) -> None:
    digest = upload(client, "source", b"shared layer")
    r = client.post("/v2/target/blobs/uploads/", params={"mount": digest, "from": "source"})
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/target/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    assert reg.blob("target", digest) == b"shared layer"
    assert reg.upload_sessions() == 0
    assert reg.count("POST", r"mount=", status=201) == 1


def test_mount_from_a_repository_without_the_blob_opens_a_session(
    reg: FakeRegistry, client: httpx.Client
) -> None:
    upload(client, "source", b"shared layer")
    digest = digest_of(b"shared layer")
    r = client.post("/v2/target/blobs/uploads/", params={"mount": digest, "from": "elsewhere"})
    assert r.status_code == 202
    location = r.headers["location"]
    assert location.startswith("/v2/target/blobs/uploads/")
    assert reg.upload_sessions() == 1
    assert reg.blob("target", digest) is None
    # The session is a real one: the client uploads the bytes into it.
    r = client.put(location, params={"digest": digest}, content=b"shared layer")
    assert r.status_code == 201
    assert reg.blob("target", digest) == b"shared layer"
    assert reg.upload_sessions() == 0


def test_monolithic_put_verifies_the_digest(reg: FakeRegistry, client: httpx.Client) -> None:
    r = client.post("/v2/app/blobs/uploads/")
    r = client.put(r.headers["location"], params={"digest": digest_of(b"else")}, content=b"data")
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    assert reg.blob("app", digest_of(b"data")) is None
    assert reg.upload_sessions() == 0  # distribution ends the session on a bad digest


def test_cancelled_session_is_gone(reg: FakeRegistry, client: httpx.Client) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["location"]
    assert client.delete(location).status_code == 204
    assert reg.upload_sessions() == 0
    r = client.delete(location)
    assert (r.status_code, error_code(r)) == (404, "BLOB_UPLOAD_UNKNOWN")


def test_chunked_upload_with_patch(reg: FakeRegistry, client: httpx.Client) -> None:
    data = b"first chunk|second chunk|last"
    location = client.post("/v2/app/blobs/uploads/").headers["location"]
    r = client.patch(location, content=data[:12], headers={"Content-Range": "0-11"})
    assert (r.status_code, r.headers["range"]) == (202, "0-11")
    # Out of order: the registry must refuse it.
    r = client.patch(r.headers["location"], content=b"xx", headers={"Content-Range": "20-21"})
    assert r.status_code == 416
    r = client.patch(r.headers["location"], content=data[12:25])
    assert (r.status_code, r.headers["range"]) == (202, "0-24")
    status = client.get(r.headers["location"])
    assert (status.status_code, status.headers["range"]) == (204, "0-24")
    r = client.put(r.headers["location"], params={"digest": digest_of(data)}, content=data[25:])
    assert r.status_code == 201
    assert reg.blob("app", digest_of(data)) == data


def test_transfer_encoding_chunked_body_on_a_kept_alive_connection(
    reg: FakeRegistry, client: httpx.Client
) -> None:
    parts = [b"streamed ", b"in ", b"pieces" * 1000]
    data = b"".join(parts)

    def stream() -> Iterator[bytes]:
        yield from parts

    location = client.post("/v2/app/blobs/uploads/").headers["location"]
    request = client.build_request(
        "PUT", location, params={"digest": digest_of(data)}, content=stream()
    )
    assert request.headers["transfer-encoding"] == "chunked"
    r = client.send(request)
    assert r.status_code == 201, r.text
    assert reg.blob("app", digest_of(data)) == data
    # The same connection serves the next request: the body was consumed exactly.
    assert client.get(f"/v2/app/blobs/{digest_of(data)}").content == data


def test_keep_alive_serves_many_requests_on_one_connection(reg: FakeRegistry) -> None:
    with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as sock:
        body = b"abc"
        sock.sendall(
            b"POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
            + body
            + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"{}"):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {received!r}"
            received += chunk
    assert b"HTTP/1.1 202" in received
    assert b"HTTP/1.1 200" in received


# -- referrers --------------------------------------------------------------------------------


def test_oci_subject_header_and_referrers_listing(reg: FakeRegistry, client: httpx.Client) -> None:
    subject = push_image(reg, "app", "v1", [b"base"])
    signature, _ = push_image(
        reg,
        "app",
        None,
        [b"sig"],
        subject=subject,
        artifact_type=SIGNATURE,
        annotations={"org.example.kind": "signature"},
    )

    # The PUT of a manifest with a subject answers OCI-Subject (a second PUT of the same
    # manifest lists it only once); the PUT of one without a subject does not.
    _, data = push_image(reg, "app", None, [b"sbom"], subject=subject, artifact_type=SBOM)
    r = client.put(
        f"/v2/app/manifests/{digest_of(data)}",
        content=data,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.headers["oci-subject"] == subject[0]
    r = client.put(
        "/v2/app/manifests/v1", content=subject[1], headers={"Content-Type": OCI_MANIFEST}
    )
    assert "oci-subject" not in r.headers

    r = client.get(f"/v2/app/referrers/{subject[0]}")
    assert r.status_code == 200
    assert r.headers["content-type"] == OCI_INDEX
    assert "oci-filters-applied" not in r.headers
    assert "link" not in r.headers
    listing = r.json()
    assert listing["schemaVersion"] == 2
    assert listing["mediaType"] == OCI_INDEX
    assert [m["artifactType"] for m in listing["manifests"]] == [SIGNATURE, SBOM]
    assert listing["manifests"][0] == {
        "mediaType": OCI_MANIFEST,
        "digest": signature,
        "size": len(reg.manifest("app", signature) or b""),
        "artifactType": SIGNATURE,
        "annotations": {"org.example.kind": "signature"},
    }
    assert reg.referrers("app", subject[0]) == listing["manifests"]
    # Referrers are per repository.
    assert reg.referrers("other", subject[0]) == []


def test_referrers_without_artifact_type_take_the_config_media_type(
    reg: FakeRegistry, client: httpx.Client
) -> None:
    subject = push_image(reg, "app", "v1", [b"base"])
    push_image(reg, "app", None, [b"plain"], subject=subject)
    (entry,) = client.get(f"/v2/app/referrers/{subject[0]}").json()["manifests"]
    assert entry["artifactType"] == "application/vnd.oci.image.config.v1+json"


def test_referrers_of_nothing_is_an_empty_index(client: httpx.Client) -> None:
    r = client.get(f"/v2/app/referrers/{digest_of(b'nothing')}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []
    r = client.get("/v2/app/referrers/sha256:not-hex")
    assert r.status_code == 400


def test_referrers_pagination_follows_link(reg: FakeRegistry, client: httpx.Client) -> None:
    reg.page_size = 1
    subject = push_image(reg, "app", "v1", [b"base"])
    pushed = [
        push_image(reg, "app", None, [f"ref {i}".encode()], subject=subject, artifact_type=SBOM)[0]
        for i in range(3)
    ]
    seen: list[str] = []
    url: str | None = f"/v2/app/referrers/{subject[0]}"
    pages = 0
    while url is not None:
        r = client.get(url)
        assert r.status_code == 200
        manifests = r.json()["manifests"]
        assert len(manifests) == 1
        seen += [m["digest"] for m in manifests]
        url = next_link(r)
        if url is not None:
            assert url.startswith(f"/v2/app/referrers/{subject[0]}?last=")
        pages += 1
    assert pages == 3
    assert seen == pushed
    assert reg.count("GET", r"/referrers/") == 3


def test_referrers_artifact_type_filter(reg: FakeRegistry, client: httpx.Client) -> None:
    reg.page_size = 1
    subject = push_image(reg, "app", "v1", [b"base"])
    sboms = [
        push_image(reg, "app", None, [b"sbom 1"], subject=subject, artifact_type=SBOM)[0],
        push_image(reg, "app", None, [b"sig"], subject=subject, artifact_type=SIGNATURE)[0],
        push_image(reg, "app", None, [b"sbom 2"], subject=subject, artifact_type=SBOM)[0],
    ]
    del sboms[1]
    r = client.get(f"/v2/app/referrers/{subject[0]}", params={"artifactType": SBOM})
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == sboms[:1]
    link = next_link(r)
    assert link is not None
    assert "artifactType=" in link  # the filter carries over to the next page
    r = client.get(link)
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == sboms[1:]
    assert next_link(r) is None


def test_link_origin_makes_the_next_page_absolute_elsewhere() -> None:
    with FakeRegistry(page_size=1, link_origin="http://127.0.0.1:9") as reg:
        subject = push_image(reg, "app", "v1", [b"base"])
        push_image(reg, "app", None, [b"a"], subject=subject, artifact_type=SBOM)
        push_image(reg, "app", None, [b"b"], subject=subject, artifact_type=SBOM)
        r = httpx.get(f"{reg.url}/v2/app/referrers/{subject[0]}", verify=False)
        link = next_link(r)
        assert link is not None
        assert link.startswith(f"http://127.0.0.1:9/v2/app/referrers/{subject[0]}?last=")


def test_referrers_content_type_override() -> None:
    with FakeRegistry(referrers_content_type="application/json") as reg:
        r = httpx.get(f"{reg.url}/v2/app/referrers/{digest_of(b'x')}", verify=False)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json()["mediaType"] == OCI_INDEX


def test_referrers_api_off_answers_like_distribution_2_8() -> None:
    with (
        FakeRegistry(referrers_api=False) as reg,
        httpx.Client(base_url=reg.url, verify=False) as client,
    ):
        subject = push_image(reg, "app", "v1", [b"base"])
        _, data = push_image(reg, "app", None, [b"sig"], subject=subject, artifact_type=SIGNATURE)
        r = client.put(
            f"/v2/app/manifests/{digest_of(data)}",
            content=data,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201
        assert "oci-subject" not in r.headers
        r = client.get(f"/v2/app/referrers/{subject[0]}")
        assert r.status_code == 404
        assert r.text == "404 page not found\n"
        assert reg.referrers("app", subject[0]) == []


# -- tags and quirks --------------------------------------------------------------------------


def test_tag_list_pagination(reg: FakeRegistry, client: httpx.Client) -> None:
    _, data = push_image(reg, "app", "b", [b"x"])
    for tag in ("e", "a", "d", "c"):
        client.put(f"/v2/app/manifests/{tag}", content=data, headers={"Content-Type": OCI_MANIFEST})
    assert client.get("/v2/app/tags/list").json() == {"name": "app", "tags": list("abcde")}

    tags: list[str] = []
    url: str | None = "/v2/app/tags/list?n=2"
    links = []
    while url is not None:
        r = client.get(url)
        tags += r.json()["tags"]
        url = next_link(r)
        links.append(url)
    assert tags == list("abcde")
    assert links == ["/v2/app/tags/list?n=2&last=b", "/v2/app/tags/list?n=2&last=d", None]

    assert client.get("/v2/app/tags/list?last=c").json()["tags"] == ["d", "e"]
    r = client.get("/v2/app/tags/list?n=0")
    assert (r.json()["tags"], next_link(r)) == ([], None)
    r = client.get("/v2/nobody/tags/list")
    assert (r.status_code, error_code(r)) == (404, "NAME_UNKNOWN")


def test_server_side_tag_page_size() -> None:
    with FakeRegistry(tags_page_size=2) as reg:
        for tag in ("one", "two", "three"):
            push_image(reg, "app", tag, [b"x"])
        r = httpx.get(f"{reg.url}/v2/app/tags/list", verify=False)
        assert r.json()["tags"] == ["one", "three"]
        assert next_link(r) == "/v2/app/tags/list?n=2&last=three"


def test_tag_schema_quirk_resolves_to_the_subject_itself() -> None:
    with FakeRegistry(tag_schema_resolves_to_subject=True) as reg:
        digest, data = push_image(reg, "app", "v1", [b"base"])
        tag = digest.replace(":", "-")
        with httpx.Client(base_url=reg.url, verify=False) as client:
            r = client.get(f"/v2/app/manifests/{tag}")
            assert r.status_code == 200
            assert r.content == data
            assert r.headers["docker-content-digest"] == digest
            assert client.head(f"/v2/app/manifests/{tag}").status_code == 200
            missing = digest_of(b"missing").replace(":", "-")
            assert client.get(f"/v2/app/manifests/{missing}").status_code == 404
        assert reg.tags("app") == ["v1"]  # no such tag exists


def test_tag_schema_tag_is_404_without_the_quirk(reg: FakeRegistry, client: httpx.Client) -> None:
    digest, _ = push_image(reg, "app", "v1", [b"base"])
    r = client.get(f"/v2/app/manifests/{digest.replace(':', '-')}")
    assert (r.status_code, error_code(r)) == (404, "MANIFEST_UNKNOWN")


def test_stop_closes_idle_keep_alive_connections() -> None:
    reg = FakeRegistry().start()
    client = httpx.Client(base_url=reg.url, verify=False)
    try:
        assert client.get("/v2/").status_code == 200  # leaves a kept-alive connection open
        reg.stop()  # must not wait for the client to hang up
        with pytest.raises(httpx.TransportError):
            client.get("/v2/")
    finally:
        client.close()
        reg.stop()
