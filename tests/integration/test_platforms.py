"""``orascp cp --platform``: copy one platform of an index, or a new index of several."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.artifacts import (
    OCI_INDEX,
    OCI_MANIFEST,
    Artifact,
    digest_of,
    fetch_manifest,
    image,
    index,
    layer,
    push,
    put_manifest,
)
from tests.support.cli import run_orascp
from tests.support.fakeregistry import push_image
from tests.support.registry import Registry

PLATFORMS: list[dict[str, str]] = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
]
SIGNATURE = "application/vnd.example.signature.v1"


def three_platforms(seed: str) -> tuple[Artifact, dict[str, Artifact]]:
    """Return an index of linux/amd64, linux/arm64/v8 and linux/arm/v7 images, and the images.

    Each entry carries an annotation of its own, to show that a new index keeps them.
    """
    children: list[tuple[Artifact, dict[str, Any] | None]] = []
    by_arch: dict[str, Artifact] = {}
    for platform in PLATFORMS:
        arch = platform["architecture"]
        config = json.dumps({**platform, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        child = image([layer(f"{seed} {arch}".encode())], config)
        child.root.annotations = {"org.example.arch": arch}
        children.append((child, platform))
        by_arch[arch] = child
    return index(children), by_arch


def manifest_status(host: str, repository: str, reference: str) -> int:
    r = httpx.get(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        timeout=30,
    )
    assert r.status_code in (200, 404), r.status_code
    return r.status_code


def tags_of(host: str, repository: str) -> list[str]:
    """Return the repository's tags; none when the registry does not know the repository."""
    r = httpx.get(f"http://{host}/v2/{repository}/tags/list", timeout=30)
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return list(r.json().get("tags") or [])


def entries(data: bytes) -> list[dict[str, Any]]:
    return list(json.loads(data)["manifests"])


@pytest.mark.integration
def test_one_platform_copies_just_that_manifest(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    idx, by_arch = three_platforms(repo)
    push(host, src, idx, "v1")
    arm64 = by_arch["arm64"]

    res = run_orascp("cp", "--platform", "linux/arm64", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {arm64.digest}"
    assert fetch_manifest(host, dst, "v1") == (OCI_MANIFEST, arm64.root.data)
    assert manifest_status(host, dst, idx.digest) == 404
    assert manifest_status(host, dst, by_arch["amd64"].digest) == 404
    assert manifest_status(host, dst, by_arch["arm"].digest) == 404


@pytest.mark.integration
@pytest.mark.parametrize("second", ["linux/arm64", "linux/aarch64", "linux/arm64/v8"])
def test_two_spellings_of_one_platform_copy_that_manifest(
    registry: Registry, repo: str, second: str
) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    idx, by_arch = three_platforms(repo)
    push(host, src, idx, "v1")

    res = run_orascp(
        "cp",
        "--platform",
        "linux/arm64",
        "--platform",
        second,
        f"{host}/{src}:v1",
        f"{host}/{dst}:v1",
    )

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {by_arch['arm64'].digest}"
    assert fetch_manifest(host, dst, "v1") == (OCI_MANIFEST, by_arch["arm64"].root.data)


@pytest.mark.integration
def test_two_platforms_make_a_new_index(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    idx, by_arch = three_platforms(repo)
    push(host, src, idx, "v1")
    source_entries = entries(idx.root.data)

    res = run_orascp(
        "cp",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm/v7",
        f"{host}/{src}:v1",
        f"{host}/{dst}:v1",
    )

    assert res.returncode == 0, res.describe()
    media_type, data = fetch_manifest(host, dst, "v1")
    assert media_type == OCI_INDEX
    new = digest_of(data)
    assert new != idx.digest
    assert res.lines[-1] == f"Digest: {new}"
    # The two entries exactly as the source lists them: platform and annotations kept.
    assert entries(data) == [source_entries[0], source_entries[2]]
    assert entries(data)[1]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert entries(data)[0]["annotations"] == {"org.example.arch": "amd64"}
    for arch in ("amd64", "arm"):
        assert fetch_manifest(host, dst, by_arch[arch].digest)[1] == by_arch[arch].root.data
    assert manifest_status(host, dst, by_arch["arm64"].digest) == 404
    assert manifest_status(host, dst, idx.digest) == 404


@pytest.mark.integration
def test_missing_platform_fails_before_writing(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    idx, _ = three_platforms(repo)
    push(host, src, idx, "v1")
    mark = registry.mark()

    res = run_orascp("cp", "--platform", "linux/s390x", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.stderr
    assert "linux/s390x" in res.error_lines[0]
    assert tags_of(host, dst) == []
    counts = registry.counts(mark)
    assert counts["manifest PUT"] == 0
    assert counts["upload POST"] + counts["mount POST 201"] + counts["mount POST 202"] == 0


@pytest.mark.integration
def test_single_manifest_source_matching_platform(registry: Registry, repo: str) -> None:
    host, src = registry.host, f"{repo}/src"
    config = json.dumps({"architecture": "arm64", "os": "linux", "variant": "v8"}).encode()
    single = image([layer(repo.encode())], config)
    push(host, src, single, "v1")

    ok = run_orascp("cp", "--platform", "linux/arm64", f"{host}/{src}:v1", f"{host}/{repo}/ok:v1")
    bad = run_orascp("cp", "--platform", "linux/amd64", f"{host}/{src}:v1", f"{host}/{repo}/bad:v1")

    assert ok.returncode == 0, ok.describe()
    assert ok.lines[-1] == f"Digest: {single.digest}"
    assert fetch_manifest(host, f"{repo}/ok", "v1") == (OCI_MANIFEST, single.root.data)
    assert bad.returncode == 1, bad.describe()
    assert len(bad.error_lines) == 1, bad.stderr
    assert "linux/amd64" in bad.error_lines[0]
    assert "linux/arm64" in bad.error_lines[0]  # what the image is for
    assert tags_of(host, f"{repo}/bad") == []


@pytest.mark.integration
def test_invalid_platform_is_a_usage_error(registry: Registry, repo: str) -> None:
    host = registry.host
    res = run_orascp("cp", "--platform", "linux", f"{host}/{repo}/src:v1", f"{host}/{repo}/d:v1")

    assert res.returncode == 2, res.describe()
    assert res.stdout == ""
    assert len(res.error_lines) == 1, res.stderr
    assert '"linux"' in res.error_lines[0]


@pytest.mark.integration
def test_recursive_with_platform_copies_only_that_platforms_referrers(
    registry: Registry, repo: str
) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    idx, by_arch = three_platforms(repo)
    push(host, src, idx, "v1")
    sigs = {}
    for arch in ("arm64", "amd64"):
        child = by_arch[arch]
        sig = push_image(
            registry,
            src,
            None,
            [f"sig {arch}".encode()],
            subject=(child.digest, child.root.data),
            artifact_type=SIGNATURE,
        )
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": sig[0],
                        "size": len(sig[1]),
                        "artifactType": SIGNATURE,
                    }
                ],
            }
        ).encode()
        tag = "sha256-" + child.digest.split(":")[1]
        assert put_manifest(host, src, tag, body, OCI_INDEX).status_code == 201
        sigs[arch] = sig

    res = run_orascp(
        "cp", "-r", "--platform", "linux/arm64", f"{host}/{src}:v1", f"{host}/{dst}:v1"
    )

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {by_arch['arm64'].digest}"
    assert fetch_manifest(host, dst, sigs["arm64"][0]) == (OCI_MANIFEST, sigs["arm64"][1])
    assert manifest_status(host, dst, sigs["amd64"][0]) == 404
    assert manifest_status(host, dst, by_arch["amd64"].digest) == 404
    assert manifest_status(host, dst, idx.digest) == 404
    assert sorted(tags_of(host, dst)) == sorted(
        ["v1", "sha256-" + by_arch["arm64"].digest.split(":")[1]]
    )
