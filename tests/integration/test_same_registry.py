"""Copies between two repositories of one registry: blobs are mounted, not moved."""

from __future__ import annotations

import pytest

from tests.support.accesslog import mounts_of, uploads_of
from tests.support.artifacts import fetch_manifest, push, sample_image
from tests.support.checks import assert_registry_holds
from tests.support.cli import run_orascp, short_digest, status_line
from tests.support.registry import Registry


@pytest.mark.integration
def test_cross_repository_copy_mounts_every_blob(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    art = sample_image(repo, layers=3, size=64 * 1024)
    push(host, src, art, "v1")
    blobs = art.blobs  # the config and the three layers
    assert len(blobs) == 4

    mark = registry.mark()
    res = run_orascp("cp", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    # Blob lines first (their order depends on concurrency), then the manifest, then the summary.
    assert sorted(res.lines[: len(blobs)]) == sorted(status_line("Mounted", b) for b in blobs)
    assert res.lines[len(blobs) :] == [
        status_line("Copying", art.root),
        status_line("Copied", art.root),
        f"Copied [registry] {host}/{src}:v1 => [registry] {host}/{dst}:v1",
        f"Digest: {art.digest}",
    ]
    assert {s.short for s in res.verbs("Copying")} == {short_digest(art.digest)}

    requests = registry.requests()[mark:]
    counts = registry.counts(mark)
    assert counts["blob GET"] == 0
    assert counts["upload POST"] == 0
    assert counts["upload PUT"] == 0
    assert counts["mount POST 202"] == 0
    assert counts["mount POST 201"] == len(blobs)
    for blob in blobs:
        assert [r.status for r in mounts_of(requests, blob.digest)] == [201]

    assert fetch_manifest(host, dst, "v1") == (art.root.media_type, art.root.data)
    assert_registry_holds(host, dst, art)


@pytest.mark.integration
def test_no_mount_uploads_the_bytes(registry: Registry, repo: str) -> None:
    host, src, dst = registry.host, f"{repo}/src", f"{repo}/dst"
    art = sample_image(repo, layers=2, size=32 * 1024)
    push(host, src, art, "v1")
    blobs = art.blobs

    mark = registry.mark()
    res = run_orascp("cp", "--no-mount", f"{host}/{src}:v1", f"{host}/{dst}:v1")

    assert res.returncode == 0, res.describe()
    assert res.verbs("Mounted") == []
    assert not any(line.startswith("Mounted") for line in res.lines)
    expected = {status_line(v, b) for v in ("Copying", "Copied") for b in blobs}
    assert sorted(res.lines[: 2 * len(blobs)]) == sorted(expected)
    assert res.lines[-2:] == [
        f"Copied [registry] {host}/{src}:v1 => [registry] {host}/{dst}:v1",
        f"Digest: {art.digest}",
    ]

    requests = registry.requests()[mark:]
    counts = registry.counts(mark)
    assert counts["upload PUT"] == len(blobs)
    assert counts["blob GET"] == len(blobs)
    assert counts["mount POST 201"] + counts["mount POST 202"] == 0
    for blob in blobs:
        assert len(uploads_of(requests, blob.digest)) == 1

    assert fetch_manifest(host, dst, "v1") == (art.root.media_type, art.root.data)
    assert_registry_holds(host, dst, art)
