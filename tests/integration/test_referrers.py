"""``orascp cp -r``: referrers (signatures, SBOMs, attestations) copied along with their subject.

Two ways of listing referrers are exercised: the referrers tag schema on the real
docker-registry 2.8 (which has no Referrers API, so the tests seed ``sha256-<hex>`` indexes by
hand, and orascp must maintain them at the destination), and the Referrers API of
:class:`~tests.support.fakeregistry.FakeRegistry` (paging, a ``Link`` to another origin, the
``--from/--to-distribution-spec`` overrides).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.artifacts import (
    OCI_INDEX,
    OCI_MANIFEST,
    Artifact,
    fetch_manifest,
    image,
    index,
    layer,
    layout_tags,
    push,
    put_manifest,
)
from tests.support.cli import run_orascp
from tests.support.fakeregistry import FakeRegistry, push_image
from tests.support.registry import Registry

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"
ATTESTATION = "application/vnd.example.attestation.v1"

Pushed = tuple[str, bytes]  # (digest, manifest bytes), as push_image returns them


# -- helpers -------------------------------------------------------------------------------------


def schema_tag(digest: str) -> str:
    """Return the referrers tag of ``digest``, written out here rather than taken from orascp."""
    algorithm, encoded = digest.split(":")
    return f"{algorithm}-{encoded}"


def put_referrers_index(host: str, repository: str, subject: str, referrers: list[Pushed]) -> None:
    """Seed the tag-schema index of ``subject``: an OCI index listing ``referrers`` by descriptor.

    The referrers must be pushed first: distribution checks that an index's manifests exist.
    """
    manifests: list[dict[str, Any]] = []
    for digest, data in referrers:
        entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data)}
        artifact_type = json.loads(data).get("artifactType")
        if artifact_type:
            entry["artifactType"] = artifact_type
        manifests.append(entry)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    r = put_manifest(host, repository, schema_tag(subject), body.encode(), OCI_INDEX)
    assert r.status_code == 201, r.text


def manifest_status(host: str, repository: str, reference: str) -> int:
    """Return the status of a bare GET of a manifest (200 present, 404 absent)."""
    r = httpx.get(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        timeout=30,
    )
    return r.status_code


def has_manifest(host: str, repository: str, reference: str) -> bool:
    status = manifest_status(host, repository, reference)
    assert status in (200, 404), status
    return status == 200


def listed(host: str, repository: str, subject: str) -> list[str]:
    """Return the digests the destination's tag-schema index of ``subject`` lists, in order."""
    media_type, data = fetch_manifest(host, repository, schema_tag(subject))
    assert media_type == OCI_INDEX
    return [m["digest"] for m in json.loads(data)["manifests"]]


def fake_listed(reg: FakeRegistry, repository: str, subject: str) -> list[str]:
    data = reg.manifest(repository, schema_tag(subject))
    assert data is not None, f"no {schema_tag(subject)} in {repository}"
    return [m["digest"] for m in json.loads(data)["manifests"]]


def referrer(
    reg: Registry | FakeRegistry, repository: str, payload: bytes, subject: Pushed, kind: str
) -> Pushed:
    """Push an artifact of one layer whose subject is ``subject``, by digest."""
    return push_image(reg, repository, None, [payload], subject=subject, artifact_type=kind)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as reg:
        yield reg


class Seeded:
    """An image with a signature and an SBOM, and an attestation on the signature."""

    def __init__(self, reg: Registry | FakeRegistry, repository: str, *, tag_schema: bool) -> None:
        self.image = push_image(reg, repository, "v1", [f"{repository} layer".encode()])
        self.sig = referrer(reg, repository, b"sig", self.image, SIGNATURE)
        self.sbom = referrer(reg, repository, b"sbom", self.image, SBOM)
        self.att = referrer(reg, repository, b"att", self.sig, ATTESTATION)
        if tag_schema:
            host = reg.host
            put_referrers_index(host, repository, self.image[0], [self.sig, self.sbom])
            put_referrers_index(host, repository, self.sig[0], [self.att])

    @property
    def manifests(self) -> list[str]:
        return [self.image[0], self.sig[0], self.sbom[0], self.att[0]]

    def blob_digests(self) -> set[str]:
        """Every config and layer digest of the four manifests."""
        out: set[str] = set()
        for _, data in (self.image, self.sig, self.sbom, self.att):
            obj = json.loads(data)
            out.add(obj["config"]["digest"])
            out.update(entry["digest"] for entry in obj["layers"])
        return out


# -- the tag schema on a real registry -----------------------------------------------------------


@pytest.mark.integration
def test_recursive_copy_within_a_registry_mounts_everything_and_writes_indexes(
    registry: Registry, repo: str
) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)
    blobs = seeded.blob_digests()
    assert len(blobs) == 5  # one config shared by all four, and four distinct layers

    mark = registry.mark()
    res = run_orascp("cp", "-r", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {seeded.image[0]}"
    for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
        assert fetch_manifest(host, dst, digest) == (OCI_MANIFEST, data)
    assert fetch_manifest(host, dst, "v1")[1] == seeded.image[1]
    # docker-registry 2.8 keeps no referrers itself: orascp wrote these.
    assert sorted(listed(host, dst, seeded.image[0])) == sorted([seeded.sig[0], seeded.sbom[0]])
    assert listed(host, dst, seeded.sig[0]) == [seeded.att[0]]
    _, sig_index = fetch_manifest(host, dst, schema_tag(seeded.sig[0]))
    entry = json.loads(sig_index)["manifests"][0]
    assert entry == {
        "mediaType": OCI_MANIFEST,
        "digest": seeded.att[0],
        "size": len(seeded.att[1]),
        "artifactType": ATTESTATION,
    }
    # The attestation has no referrer: no index of its own was made up.
    assert manifest_status(host, dst, schema_tag(seeded.att[0])) == 404

    counts = registry.counts(mark)
    assert counts["mount POST 201"] == len(blobs)
    assert counts["mount POST 202"] == 0
    assert counts["upload PUT"] == 0
    assert counts["blob GET"] == 0


@pytest.mark.integration
def test_recursive_copy_to_another_registry(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    src, dst = f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)

    res = run_orascp("cp", "-r", f"{registry.host}/{src}:v1", f"{other_registry.host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
        assert fetch_manifest(other_registry.host, dst, digest) == (OCI_MANIFEST, data)
    host = other_registry.host
    assert sorted(listed(host, dst, seeded.image[0])) == sorted([seeded.sig[0], seeded.sbom[0]])
    assert listed(host, dst, seeded.sig[0]) == [seeded.att[0]]


@pytest.mark.integration
def test_without_recursive_only_the_image_is_copied(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)

    res = run_orascp("cp", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert has_manifest(host, dst, seeded.image[0])
    for digest in (seeded.sig[0], seeded.sbom[0], seeded.att[0]):
        assert not has_manifest(host, dst, digest)
    assert not has_manifest(host, dst, schema_tag(seeded.image[0]))
    assert not has_manifest(host, dst, schema_tag(seeded.sig[0]))


@pytest.mark.integration
def test_recursive_copy_again_is_idempotent(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)
    first = run_orascp("cp", "-r", f"{host}/{src}:v1", f"{host}/{dst}:v1")
    assert first.returncode == 0, first.describe()
    _, image_index = fetch_manifest(host, dst, schema_tag(seeded.image[0]))
    _, sig_index = fetch_manifest(host, dst, schema_tag(seeded.sig[0]))

    mark = registry.mark()
    again = run_orascp("cp", "-r", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert again.returncode == 0, again.describe()
    assert {s.verb for s in again.statuses} == {"Exists"}
    assert len(again.statuses) == 4
    assert fetch_manifest(host, dst, schema_tag(seeded.image[0]))[1] == image_index
    assert fetch_manifest(host, dst, schema_tag(seeded.sig[0]))[1] == sig_index
    assert len(listed(host, dst, seeded.image[0])) == 2
    # Only the tag is put again (it may have pointed elsewhere); no index is rewritten.
    puts = [r.path for r in registry.requests()[mark:] if r.method == "PUT"]
    assert puts == [f"/v2/{dst}/manifests/v1"]
    counts = registry.counts(mark)
    assert counts["mount POST 201"] + counts["upload POST"] == 0


@pytest.mark.integration
def test_a_referrer_already_at_the_destination_is_listed_again(
    registry: Registry, repo: str
) -> None:
    # An earlier copy stopped between pushing the signature and updating the index (or another
    # tool pushed it): the destination holds the signature, but its index does not list it.
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)
    assert run_orascp("cp", f"{host}/{src}:v1", f"{host}/{dst}:v1").returncode == 0
    referrer(registry, dst, b"sig", seeded.image, SIGNATURE)
    assert not has_manifest(host, dst, schema_tag(seeded.image[0]))

    res = run_orascp("cp", "-r", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert sorted(listed(host, dst, seeded.image[0])) == sorted([seeded.sig[0], seeded.sbom[0]])
    assert listed(host, dst, seeded.sig[0]) == [seeded.att[0]]


@pytest.mark.integration
def test_index_root_copies_the_referrers_of_its_children(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    children: list[tuple[Artifact, dict[str, Any] | None]] = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        platform = {"architecture": arch, "os": "linux"}
        children.append((image([layer(f"{repo} {arch}".encode())], config), platform))
    idx = index(children)
    push(host, src, idx, "v1")
    sigs = []
    for child, _ in children:
        subject = (child.digest, child.root.data)
        sig = referrer(registry, src, f"sig {child.digest}".encode(), subject, SIGNATURE)
        put_referrers_index(host, src, child.digest, [sig])
        sigs.append(sig)
    assert not has_manifest(host, src, schema_tag(idx.digest))  # the index itself has none

    res = run_orascp("cp", "-r", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {idx.digest}"
    assert fetch_manifest(host, dst, idx.digest) == (OCI_INDEX, idx.root.data)
    for (child, _), sig in zip(children, sigs, strict=True):
        assert fetch_manifest(host, dst, child.digest) == (OCI_MANIFEST, child.root.data)
        assert fetch_manifest(host, dst, sig[0]) == (OCI_MANIFEST, sig[1])
        assert listed(host, dst, child.digest) == [sig[0]]
    assert not has_manifest(host, dst, schema_tag(idx.digest))


@pytest.mark.integration
def test_recursive_through_an_oci_layout(registry: Registry, repo: str, tmp_path: Path) -> None:
    host, src, back = registry.host, f"{repo}/src", f"{repo}/back"
    seeded = Seeded(registry, src, tag_schema=True)
    layout = tmp_path / "layout"

    out = run_orascp("cp", "-r", f"{host}/{src}:v1", "--to-oci-layout", f"{layout}:v1")

    assert out.returncode == 0, out.describe()
    assert layout_tags(layout) == {"v1": seeded.image[0]}
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    assert {e["digest"] for e in entries} == set(seeded.manifests)
    for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
        assert (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data

    res = run_orascp("cp", "-r", "--from-oci-layout", f"{layout}:v1", f"{host}/{back}:v1")

    assert res.returncode == 0, res.describe()
    for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
        assert fetch_manifest(host, back, digest) == (OCI_MANIFEST, data)
    assert sorted(listed(host, back, seeded.image[0])) == sorted([seeded.sig[0], seeded.sbom[0]])
    assert listed(host, back, seeded.sig[0]) == [seeded.att[0]]


# -- the Referrers API (FakeRegistry) ------------------------------------------------------------


@pytest.mark.integration
def test_paged_referrers_api_is_followed_and_no_tag_is_written(fake: FakeRegistry) -> None:
    fake.page_size = 1
    img = push_image(fake, "src", "v1", [b"img"])
    refs = [referrer(fake, "src", f"ref {i}".encode(), img, SIGNATURE) for i in range(3)]
    assert len(fake.referrers("src", img[0])) == 3
    mark = fake.mark()

    res = run_orascp("cp", "-r", f"{fake.host}/src:v1", f"{fake.host}/dst:v1")

    assert res.returncode == 0, res.describe()
    for digest, data in refs:
        assert fake.manifest("dst", digest) == data
    # One page per referrer: three GETs for the image's list.
    assert fake.count("GET", rf"^/v2/src/referrers/{img[0]}", since=mark) == 3
    # The destination answered OCI-Subject: it lists them itself, and no tag is written.
    assert {r["digest"] for r in fake.referrers("dst", img[0])} == {d for d, _ in refs}
    assert fake.tags("dst") == ["v1"]
    assert fake.count("PUT", r"/manifests/sha256-", since=mark) == 0


@pytest.mark.integration
def test_link_to_another_origin_is_refused() -> None:
    with FakeRegistry() as elsewhere, FakeRegistry(page_size=1, link_origin=elsewhere.url) as src:
        img = push_image(src, "src", "v1", [b"img"])
        for i in range(2):
            referrer(src, "src", f"ref {i}".encode(), img, SIGNATURE)

        res = run_orascp("cp", "-r", f"{src.host}/src:v1", f"{src.host}/dst:v1")

        assert res.returncode == 1, res.describe()
        assert len(res.error_lines) == 1, res.stderr
        assert "another origin" in res.error_lines[0]
        assert elsewhere.requests == []
        assert src.count("GET", r"/referrers/") == 1


@pytest.mark.integration
def test_source_without_api_falls_back_to_the_tag_schema() -> None:
    with FakeRegistry(referrers_api=False) as reg:
        seeded = Seeded(reg, "src", tag_schema=True)

        res = run_orascp("cp", "-r", f"{reg.host}/src:v1", f"{reg.host}/dst:v1")

        assert res.returncode == 0, res.describe()
        for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
            assert reg.manifest("dst", digest) == data
        assert reg.count("GET", r"/v2/src/referrers/") >= 1  # the API was tried first
        assert sorted(fake_listed(reg, "dst", seeded.image[0])) == sorted(
            [seeded.sig[0], seeded.sbom[0]]
        )
        assert fake_listed(reg, "dst", seeded.sig[0]) == [seeded.att[0]]


@pytest.mark.integration
def test_tag_aliasing_registry_does_not_make_children_referrers() -> None:
    with FakeRegistry(referrers_api=False, tag_schema_resolves_to_subject=True) as reg:
        # An index of an index (two images) and an image: the inner index's tag-schema tag
        # answers the inner index itself, whose images must not pass for its referrers.
        grandchildren: list[tuple[Artifact, dict[str, Any] | None]] = []
        for arch in ("amd64", "arm64"):
            config = json.dumps({"architecture": arch, "os": "linux"}).encode()
            platform = {"architecture": arch, "os": "linux"}
            grandchildren.append((image([layer(arch.encode())], config), platform))
        inner = index(grandchildren)
        other = image(
            [layer(b"s390x")], json.dumps({"architecture": "s390x", "os": "linux"}).encode()
        )
        idx = index([(inner, None), (other, {"architecture": "s390x", "os": "linux"})])
        push(reg.host, "src", idx, "v1")
        # The quirk is on: the tag-schema tag of an index answers the index itself.
        for art in (idx, inner):
            alias = httpx.get(
                f"{reg.url}/v2/src/manifests/{schema_tag(art.digest)}",
                headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
            )
            assert alias.status_code == 200
            assert alias.content == art.root.data

        plain = run_orascp("cp", f"{reg.host}/src:v1", f"{reg.host}/plain:v1")
        mark = reg.mark()
        res = run_orascp("cp", "-r", f"{reg.host}/src:v1", f"{reg.host}/dst:v1")

        assert plain.returncode == 0, plain.describe()
        assert res.returncode == 0, res.describe()
        # Exactly what a copy without -r prints: nothing more was found or pushed.
        assert sorted(map(str, res.statuses)) == sorted(map(str, plain.statuses))
        assert reg.tags("dst") == ["v1"]
        for art in (idx, inner, other, *(child for child, _ in grandchildren)):
            assert reg.manifest("dst", art.digest) == art.root.data
        # The referrers of the index and of its own manifests were looked up; had the inner
        # index's images been taken for its referrers, theirs would have been looked up too.
        looked_up = {
            path.rsplit("/", 1)[1]
            for method, path, _ in reg.requests[mark:]
            if method == "GET" and "/manifests/sha256-" in path
        }
        assert looked_up == {
            schema_tag(idx.digest),
            schema_tag(inner.digest),
            schema_tag(other.digest),
        }


@pytest.mark.integration
def test_from_referrers_tag_never_calls_the_api(fake: FakeRegistry) -> None:
    seeded = Seeded(fake, "src", tag_schema=True)
    assert fake.referrers("src", seeded.image[0])  # the API would have answered

    res = run_orascp(
        "cp",
        "-r",
        "--from-distribution-spec",
        "v1.1-referrers-tag",
        f"{fake.host}/src:v1",
        f"{fake.host}/dst:v1",
    )

    assert res.returncode == 0, res.describe()
    assert fake.count(None, r"/referrers/") == 0
    for digest, data in (seeded.image, seeded.sig, seeded.sbom, seeded.att):
        assert fake.manifest("dst", digest) == data


@pytest.mark.integration
def test_to_referrers_tag_writes_the_index_even_with_the_api(fake: FakeRegistry) -> None:
    seeded = Seeded(fake, "src", tag_schema=False)

    res = run_orascp(
        "cp",
        "-r",
        "--to-distribution-spec",
        "v1.1-referrers-tag",
        f"{fake.host}/src:v1",
        f"{fake.host}/dst:v1",
    )

    assert res.returncode == 0, res.describe()
    assert schema_tag(seeded.image[0]) in fake.tags("dst")
    assert sorted(fake_listed(fake, "dst", seeded.image[0])) == sorted(
        [seeded.sig[0], seeded.sbom[0]]
    )
    assert fake_listed(fake, "dst", seeded.sig[0]) == [seeded.att[0]]


@pytest.mark.integration
def test_from_referrers_api_against_a_registry_without_it(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    seeded = Seeded(registry, src, tag_schema=True)

    res = run_orascp(
        "cp",
        "-r",
        "--from-distribution-spec",
        "v1.1-referrers-api",
        f"{host}/{src}:v1",
        f"{host}/{dst}:v1",
    )

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.stderr
    assert "does not implement the Referrers API" in res.error_lines[0]
    assert "Traceback" not in res.stderr
    # Never fell back to the tag schema behind the user's back, and failed before writing.
    assert not has_manifest(host, dst, seeded.sig[0])
    assert not has_manifest(host, dst, seeded.image[0])


@pytest.mark.integration
def test_invalid_distribution_spec_is_a_usage_error(registry: Registry, repo: str) -> None:
    host = registry.host
    res = run_orascp(
        "cp", "--from-distribution-spec", "v2", f"{host}/{repo}/src:v1", f"{host}/{repo}/dst:v1"
    )

    assert res.returncode == 2, res.describe()
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "--from-distribution-spec" in lines[0]
    assert "v1.1-referrers-api" in lines[0]
    assert "v1.1-referrers-tag" in lines[0]
    assert '"v2"' in lines[0]


@pytest.mark.integration
def test_concurrent_referrers_all_land_in_the_destination_index(fake: FakeRegistry) -> None:
    img = push_image(fake, "src", "v1", [b"img"])
    refs = [referrer(fake, "src", f"ref {i}".encode(), img, SIGNATURE) for i in range(5)]
    with FakeRegistry(referrers_api=False) as dst:
        res = run_orascp(
            "cp", "-r", "--concurrency", "8", f"{fake.host}/src:v1", f"{dst.host}/dst:v1"
        )

        assert res.returncode == 0, res.describe()
        assert sorted(fake_listed(dst, "dst", img[0])) == sorted(d for d, _ in refs)
        data = dst.manifest("dst", schema_tag(img[0]))
        assert data is not None
        entries = json.loads(data)["manifests"]
        assert all(e["artifactType"] == SIGNATURE for e in entries)
        for digest, manifest in refs:
            assert dst.manifest("dst", digest) == manifest
