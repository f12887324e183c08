"""``--all-tags``: copy every tag of a repository (or OCI layout) to the same tags elsewhere.

SOURCE and DESTINATION name repositories (or layouts) without a tag. The tags are listed (a
registry's list is followed across ``Link`` pages), each is copied like a single copy, content
shared between tags moves once, and a tag that fails does not stop the others: it gets an
``Error: tag <name>: ...`` line and the exit status is 1. The text output ends with one
``Copied <src>:<tag> => <dst>:<tag> <digest>`` line per copied tag and ``Copied N of M tags``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accesslog import all_requests, uploads_of
from tests.support.artifacts import (
    Artifact,
    digest_of,
    fetch_manifest,
    image,
    layout_tags,
    push,
    tar_gz_layer,
    write_layout,
)
from tests.support.checks import assert_layout_holds, assert_registry_holds
from tests.support.cli import Result, run_orascp
from tests.support.fakeregistry import FakeRegistry, push_image
from tests.support.faultproxy import Delay, FaultProxy
from tests.support.registry import Registry
from tests.support.schemas import validate

pytestmark = pytest.mark.integration


def tagged_images(repo: str, tags: list[str], base_size: int = 64 * 1024) -> dict[str, Artifact]:
    """Return one image per tag: a shared base layer, the same config, and a layer of its own."""
    base = tar_gz_layer(repo.encode() * (base_size // len(repo) + 1), title="base.tar.gz")
    return {
        tag: image([base, tar_gz_layer(f"{repo} {tag}".encode() * 100, title=f"{tag}.tar.gz")])
        for tag in tags
    }


def distinct_blobs(arts: dict[str, Artifact]) -> dict[str, bytes]:
    return {b.digest: b.data for art in arts.values() for b in art.blobs}


def tag_lines(res: Result) -> list[str]:
    return [line for line in res.lines if line.startswith("Copied ") and " => " in line]


def has_manifest(registry: Registry, repository: str, reference: str) -> bool:
    r = httpx.head(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    return r.status_code == 200


def test_all_tags_between_registries(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    a, b = registry.host, other_registry.host
    tags = ["v1", "v2", "latest"]
    arts = tagged_images(repo, tags)
    for tag, art in arts.items():
        push(a, f"{repo}/src", art, tag)
    blobs = distinct_blobs(arts)
    assert len(blobs) == 1 + 1 + len(tags)  # config, base, one layer per tag

    a_mark, b_mark = registry.mark(), other_registry.mark()
    res = run_orascp("cp", "--all-tags", f"{a}/{repo}/src", f"{b}/{repo}/dst")

    assert res.returncode == 0, res.describe()
    assert res.stderr == "", res.describe()
    assert sorted(tag_lines(res)) == sorted(
        f"Copied [registry] {a}/{repo}/src:{tag} => [registry] {b}/{repo}/dst:{tag}"
        f" {arts[tag].digest}"
        for tag in tags
    )
    assert res.lines[-1] == "Copied 3 of 3 tags"
    for tag, art in arts.items():
        media_type, data = fetch_manifest(b, f"{repo}/dst", tag)
        assert digest_of(data) == art.digest, tag
        assert media_type == art.root.media_type
        assert_registry_holds(b, f"{repo}/dst", art)

    requests = other_registry.requests()[b_mark:]
    counts = other_registry.counts(b_mark)
    assert counts["upload PUT"] == len(blobs)
    for digest in blobs:
        assert len(uploads_of(requests, digest)) == 1, digest
    assert counts["mount POST 201"] + counts["mount POST 202"] == 0
    assert counts["manifest PUT"] == len(tags)
    assert registry.counts(a_mark)["blob GET"] == len(blobs)


def test_all_tags_follows_the_pages_of_the_tag_list(other_registry: Registry, repo: str) -> None:
    tags = [f"t{i}" for i in range(5)]
    with FakeRegistry(tags_page_size=2) as fake:
        digests = {
            tag: push_image(fake, f"{repo}/src", tag, [f"{repo} {tag}".encode() * 50])[0]
            for tag in tags
        }
        mark = fake.mark()
        res = run_orascp(
            "cp", "--all-tags", f"{fake.host}/{repo}/src", f"{other_registry.host}/{repo}/dst"
        )
        pages = fake.count("GET", r"/tags/list", since=mark)

    assert res.returncode == 0, res.describe()
    assert pages >= 3  # 2 + 2 + 1
    assert res.lines[-1] == "Copied 5 of 5 tags"
    assert len(tag_lines(res)) == 5
    for tag, digest in digests.items():
        _, data = fetch_manifest(other_registry.host, f"{repo}/dst", tag)
        assert digest_of(data) == digest, tag


def test_a_failing_tag_does_not_stop_the_others(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    a, b = registry.host, other_registry.host
    tags = ["broken", "v1", "v2"]
    arts = tagged_images(repo, tags, base_size=512 * 1024)
    for tag, art in arts.items():
        push(a, f"{repo}/src", art, tag)
    # Unlink broken's own layer from the source repository: its manifest now lists a blob that
    # cannot be read.
    missing = arts["broken"].blobs[-1]
    r = httpx.delete(f"{registry.url}/v2/{repo}/src/blobs/{missing.digest}", timeout=10)
    assert r.status_code == 202, r.text
    assert httpx.head(f"{registry.url}/v2/{repo}/src/blobs/{missing.digest}").status_code == 404

    res = run_orascp("cp", "--all-tags", f"{a}/{repo}/src", f"{b}/{repo}/dst")

    assert res.returncode == 1, res.describe()
    errors = res.error_lines
    assert len(errors) == 1, res.describe()
    assert errors[0].startswith("Error: tag broken: "), res.describe()
    assert res.lines[-1] == "Copied 2 of 3 tags", res.describe()
    assert sorted(tag_lines(res)) == sorted(
        f"Copied [registry] {a}/{repo}/src:{tag} => [registry] {b}/{repo}/dst:{tag}"
        f" {arts[tag].digest}"
        for tag in ("v1", "v2")
    )
    for tag in ("v1", "v2"):
        assert_registry_holds(b, f"{repo}/dst", arts[tag])
        assert has_manifest(other_registry, f"{repo}/dst", tag)
    assert not has_manifest(other_registry, f"{repo}/dst", "broken")


@pytest.mark.parametrize("destination", ["registry", "oci-layout"])
def test_a_failing_tag_leaves_the_content_it_shares_to_the_others(
    destination: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    """The failing tag is the first to reach the layers all tags share, and fails while their
    transfer is still under way: the tags that wait for that shared content must still get it.

    A fault proxy in front of the source makes that order certain: the manifests of v1 and v2
    are answered late (so broken resolves first and takes the shared nodes), and the shared base
    layer's bytes later still (so broken's missing layer fails the tag before they arrive).
    """
    tags = ["broken", "v1", "v2"]
    arts = tagged_images(repo, tags, base_size=64 * 1024)
    for tag, art in arts.items():
        push(registry.host, f"{repo}/src", art, tag)
    missing = arts["broken"].blobs[-1]
    base = arts["v1"].blobs[1]
    assert base.annotations == {"org.opencontainers.image.title": "base.tar.gz"}
    r = httpx.delete(f"{registry.url}/v2/{repo}/src/blobs/{missing.digest}", timeout=10)
    assert r.status_code == 202, r.text
    out = tmp_path / "out"
    dst = (
        ["--to-oci-layout", str(out)]
        if destination == "oci-layout"
        else [f"{other_registry.host}/{repo}/dst"]
    )

    with FaultProxy(registry) as proxy:
        proxy.add("GET", r"/manifests/v[12]$", Delay(0.5))
        held = proxy.add("GET", rf"/blobs/{base.digest}$", Delay(1.5))
        mark = other_registry.mark()
        res = run_orascp("cp", "--all-tags", "--no-blob-cache", f"{proxy.host}/{repo}/src", *dst)
    assert held.count >= 1

    assert res.returncode == 1, res.describe()
    assert [e.split(":", 2)[:2] for e in res.error_lines] == [["Error", " tag broken"]]
    assert res.lines[-1] == "Copied 2 of 3 tags", res.describe()
    if destination == "oci-layout":
        assert sorted(layout_tags(out)) == ["v1", "v2"]
        for tag in ("v1", "v2"):
            assert layout_tags(out)[tag] == arts[tag].digest
            assert_layout_holds(out, arts[tag])
    else:
        requests = other_registry.requests()[mark:]
        refused = [r for r in requests if r.kind == "manifest PUT" and r.status >= 400]
        assert refused == []  # no manifest pushed before its blobs
        assert len(uploads_of(requests, base.digest)) == 1  # the shared layer moved once
        for tag in ("v1", "v2"):
            assert_registry_holds(other_registry.host, f"{repo}/dst", arts[tag])


@pytest.mark.parametrize(
    ("source", "destination", "extra"),
    [
        pytest.param("{host}/{repo}/src:v1", "{host}/{repo}/dst", [], id="tagged-source"),
        pytest.param(
            "{host}/{repo}/src@sha256:" + "0" * 64, "{host}/{repo}/dst", [], id="digest-source"
        ),
        pytest.param("{host}/{repo}/src", "{host}/{repo}/dst:v1", [], id="tagged-destination"),
        pytest.param("{host}/{repo}/src", "{host}/{repo}/dst", ["--dry-run"], id="dry-run"),
        pytest.param(
            "{host}/{repo}/src", "{host}/{repo}/dst", ["--platform", "linux/amd64"], id="platform"
        ),
    ],
)
def test_all_tags_usage_errors(
    source: str, destination: str, extra: list[str], registry: Registry, repo: str
) -> None:
    host = registry.host
    before = len(all_requests(registry))
    res = run_orascp(
        "cp",
        "--all-tags",
        *extra,
        source.format(host=host, repo=repo),
        destination.format(host=host, repo=repo),
    )
    assert res.returncode == 2, res.describe()
    assert res.stdout == ""
    assert len(res.error_lines) == 1, res.describe()
    assert len(all_requests(registry)) == before


def test_all_tags_as_json(registry: Registry, other_registry: Registry, repo: str) -> None:
    a, b = registry.host, other_registry.host
    tags = ["v1", "v2", "v3"]
    arts = tagged_images(repo, tags, base_size=4096)
    for tag, art in arts.items():
        push(a, f"{repo}/src", art, tag)

    res = run_orascp("cp", "--all-tags", "--format", "json", f"{a}/{repo}/src", f"{b}/{repo}/dst")

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    doc: dict[str, Any] = json.loads(res.stdout)
    validate(doc, "cp-tags.schema.json")
    assert doc["allTags"] is True
    assert doc["schemaVersion"] == 1
    assert doc["source"] == {"type": "registry", "reference": f"{a}/{repo}/src"}
    assert doc["destination"] == {"type": "registry", "reference": f"{b}/{repo}/dst"}
    assert sorted(doc["results"], key=lambda r: r["tag"]) == [
        {
            "tag": tag,
            "root": {
                "mediaType": arts[tag].root.media_type,
                "digest": arts[tag].digest,
                "size": len(arts[tag].root.data),
            },
        }
        for tag in tags
    ]
    # Each distinct blob copied once, then the three manifests.
    blobs = distinct_blobs(arts)
    copied = Counter(n["digest"] for n in doc["nodes"] if n["action"] == "copied")
    assert copied == Counter([*blobs, *(art.digest for art in arts.values())])
    actions = Counter(n["action"] for n in doc["nodes"])
    assert doc["totals"] == {
        "nodes": len(doc["nodes"]),
        "copied": actions["copied"],
        "mounted": actions["mounted"],
        "exists": actions["exists"],
        "skipped": actions["skipped"],
        "bytes": sum(n["bytes"] for n in doc["nodes"]),
    }
    assert doc["totals"]["bytes"] == sum(len(d) for d in blobs.values()) + sum(
        len(art.root.data) for art in arts.values()
    )


def test_all_tags_from_an_oci_layout(other_registry: Registry, repo: str, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    arts = tagged_images(repo, ["one", "two"], base_size=4096)
    for tag, art in arts.items():
        write_layout(layout, art, tag)
    dst = f"{other_registry.host}/{repo}/dst"

    res = run_orascp("cp", "--all-tags", "--from-oci-layout", str(layout), dst)

    assert res.returncode == 0, res.describe()
    assert res.stderr == "", res.describe()
    assert sorted(tag_lines(res)) == sorted(
        f"Copied [oci-layout] {layout}:{tag} => [registry] {dst}:{tag} {arts[tag].digest}"
        for tag in arts
    )
    assert res.lines[-1] == "Copied 2 of 2 tags"
    for tag, art in arts.items():
        assert fetch_manifest(other_registry.host, f"{repo}/dst", tag) == (
            art.root.media_type,
            art.root.data,
        )
        assert_registry_holds(other_registry.host, f"{repo}/dst", art)
