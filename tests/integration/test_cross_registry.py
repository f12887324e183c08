"""Copies from one registry to another: every byte moves, and extra tags are applied."""

from __future__ import annotations

import pytest

from tests.support.accesslog import uploads_of
from tests.support.artifacts import digest_of, fetch_manifest, push, sample_image
from tests.support.checks import assert_registry_holds
from tests.support.cli import run_orascp, status_line
from tests.support.registry import Registry


@pytest.mark.integration
def test_copy_to_another_registry_with_three_tags(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    src_host, dst_host = registry.host, other_registry.host
    src, dst = f"{repo}/src", f"{repo}/mirror"
    art = sample_image(repo, layers=3, size=48 * 1024)
    push(src_host, src, art, "v1")
    blobs = art.blobs

    src_mark, dst_mark = registry.mark(), other_registry.mark()
    res = run_orascp("cp", f"{src_host}/{src}:v1", f"{dst_host}/{dst}:v1,latest,stable")

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    expected = {status_line(v, b) for v in ("Copying", "Copied") for b in blobs}
    assert sorted(res.lines[: 2 * len(blobs)]) == sorted(expected)
    assert res.lines[2 * len(blobs) :] == [
        status_line("Copying", art.root),
        status_line("Copied", art.root),
        f"Copied [registry] {src_host}/{src}:v1 => [registry] {dst_host}/{dst}:v1",
        "Tagged latest",
        "Tagged stable",
        f"Digest: {art.digest}",
    ]

    dst_requests = other_registry.requests()[dst_mark:]
    dst_counts = other_registry.counts(dst_mark)
    src_counts = registry.counts(src_mark)
    assert dst_counts["mount POST 201"] + dst_counts["mount POST 202"] == 0
    assert dst_counts["upload PUT"] == len(blobs)
    assert src_counts["blob GET"] == len(blobs)
    assert src_counts["upload PUT"] + src_counts["manifest PUT"] == 0
    for blob in blobs:
        assert len(uploads_of(dst_requests, blob.digest)) == 1

    for tag in ("v1", "latest", "stable"):
        media_type, data = fetch_manifest(dst_host, dst, tag)
        assert digest_of(data) == art.digest, tag
        assert (media_type, data) == (art.root.media_type, art.root.data)
    assert_registry_holds(dst_host, dst, art)
