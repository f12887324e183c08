"""Many blobs at once: 500 small layers copied with ``--concurrency 16`` every way orascp can.

One artifact of 500 distinct layers (300 to 363 bytes each) and its config is pushed once, with
bare HTTP requests, to the main registry. The tests copy it to the other registry (twice: the
second run must find everything there and move nothing), into an OCI layout, and into another
repository of the same registry (every blob mounted). Each destination is then read back without
orascp, blob by blob, and every request is counted from the registries' access logs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.accesslog import query, repository_of
from tests.support.artifacts import (
    OCI_MANIFEST,
    Artifact,
    digest_of,
    fetch_all,
    fetch_manifest,
    layout_tags,
    many_blobs_image,
    push_concurrently,
)
from tests.support.checks import assert_clean_layout, assert_layout_holds
from tests.support.cli import Result, run_orascp, short_digest, status_line
from tests.support.registry import Registry, Request

BLOBS = 500
CONCURRENCY = "16"
SOURCE_REPOSITORY = "test-stress/source"
# A copy of 500 blobs takes a few seconds; this only keeps a wedged run from stalling the suite.
TIMEOUT = 120.0

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stress(registry: Registry) -> Artifact:
    """Push the 500-blob artifact to ``SOURCE_REPOSITORY:v1`` on the main registry, once."""
    artifact = many_blobs_image(BLOBS, seed="stress", size=300)
    assert len(artifact.blobs) == BLOBS + 1  # the layers and the config
    assert len({b.digest for b in artifact.all}) == BLOBS + 2
    push_concurrently(registry.host, SOURCE_REPOSITORY, artifact, "v1")
    return artifact


def _blobs(artifact: Artifact) -> list[str]:
    return [b.digest for b in artifact.blobs]


def _assert_registry_holds(host: str, repository: str, artifact: Artifact) -> None:
    """Assert every manifest and blob of ``artifact`` is in the repository, byte for byte."""
    stored = fetch_all(host, repository, artifact)
    for blob in artifact.all:
        media_type, data = stored[blob.digest]
        if blob.media_type == OCI_MANIFEST:
            assert media_type == OCI_MANIFEST
        assert digest_of(data) == blob.digest
        assert data == blob.data, f"{blob.digest} differs in {host}/{repository}"


def _writes(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]


def _assert_every_node_copied_once(res: Result, artifact: Artifact) -> None:
    """Assert one Copying and one Copied line per blob and for the manifest, nothing else."""
    expected: Counter[str] = Counter()
    for blob in artifact.all:
        expected[status_line("Copying", blob)] += 1
        expected[status_line("Copied", blob)] += 1
    printed = Counter(
        line
        for line in res.lines
        if line.startswith(("Copying", "Copied ")) and not line.startswith("Copied [")
    )
    assert printed == expected
    assert res.verbs("Mounted") == []
    assert res.verbs("Exists") == []
    assert res.verbs("Skipped") == []
    assert res.lines[-1] == f"Digest: {artifact.digest}"


def test_500_blobs_to_another_registry_then_again_moves_nothing(
    stress: Artifact, registry: Registry, other_registry: Registry, repo: str
) -> None:
    dst = f"{repo}/dst"
    source = f"{registry.host}/{SOURCE_REPOSITORY}:v1"
    destination = f"{other_registry.host}/{dst}:v1"
    src_mark, dst_mark = registry.mark(), other_registry.mark()

    first = run_orascp("cp", "--concurrency", CONCURRENCY, source, destination, timeout=TIMEOUT)

    assert first.returncode == 0, first.describe()
    assert first.stderr == ""
    _assert_every_node_copied_once(first, stress)
    src_counts = registry.counts(src_mark)
    assert src_counts["blob GET"] == BLOBS + 1  # each blob read once, none twice
    assert src_counts["manifest GET"] == 1
    dst_counts = other_registry.counts(dst_mark)
    assert dst_counts["upload POST"] == BLOBS + 1
    assert dst_counts["upload PUT"] == BLOBS + 1
    assert dst_counts["upload PATCH"] == 0
    assert dst_counts["manifest PUT"] == 1
    assert all(r.status < 400 for r in _writes(other_registry.requests()[dst_mark:]))
    _assert_registry_holds(other_registry.host, dst, stress)
    assert fetch_manifest(other_registry.host, dst, "v1") == (OCI_MANIFEST, stress.root.data)

    src_mark, dst_mark = registry.mark(), other_registry.mark()
    second = run_orascp("cp", "--concurrency", CONCURRENCY, source, destination, timeout=TIMEOUT)

    assert second.returncode == 0, second.describe()
    assert second.stderr == ""
    # The root is there: its whole subtree is skipped, so one Exists line and nothing else.
    assert [line for line in second.lines if not line.startswith(("Copied [", "Digest:"))] == [
        status_line("Exists", stress.root)
    ]
    assert second.lines[-1] == f"Digest: {stress.digest}"
    dst_requests = other_registry.requests()[dst_mark:]
    # No blob is looked at, uploaded or mounted; the only write allowed is the tag itself,
    # put again from the manifest bytes already in memory.
    assert [r for r in dst_requests if "/blobs/" in r.path] == []
    assert [(r.method, r.path) for r in _writes(dst_requests)] in (
        [],
        [("PUT", f"/v2/{dst}/manifests/v1")],
    )
    assert registry.counts(src_mark)["blob GET"] == 0
    _assert_registry_holds(other_registry.host, dst, stress)


def test_500_blobs_to_an_oci_layout(stress: Artifact, registry: Registry, tmp_path: Path) -> None:
    out = tmp_path / "layout"
    source = f"{registry.host}/{SOURCE_REPOSITORY}:v1"
    mark = registry.mark()

    res = run_orascp(
        "cp", "--concurrency", CONCURRENCY, source, "--to-oci-layout", f"{out}:v1", timeout=TIMEOUT
    )

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    _assert_every_node_copied_once(res, stress)
    counts = registry.counts(mark)
    assert counts["blob GET"] == BLOBS + 1
    assert counts["manifest GET"] == 1
    assert _writes(registry.requests()[mark:]) == []
    assert_layout_holds(out, stress)
    assert_clean_layout(out, stress)  # no temporary file, no ingest/ left behind
    assert layout_tags(out) == {"v1": stress.digest}
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [stress.digest]


def test_500_blobs_within_one_registry_are_all_mounted(
    stress: Artifact, registry: Registry, repo: str
) -> None:
    dst = f"{repo}/dst"
    source = f"{registry.host}/{SOURCE_REPOSITORY}:v1"
    mark = registry.mark()

    res = run_orascp(
        "cp", "--concurrency", CONCURRENCY, source, f"{registry.host}/{dst}:v1", timeout=TIMEOUT
    )

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    mounted = Counter(line for line in res.lines if line.startswith("Mounted"))
    assert mounted == Counter(status_line("Mounted", b) for b in stress.blobs)
    assert [s.short for s in res.verbs("Copied")] == [short_digest(stress.digest)]
    requests = registry.requests()[mark:]
    mounts = [r for r in requests if r.kind.startswith("mount POST")]
    assert [r.kind for r in mounts] == ["mount POST 201"] * (BLOBS + 1)
    assert sorted(query(r)["mount"] for r in mounts) == sorted(_blobs(stress))
    assert {query(r)["from"] for r in mounts} == {SOURCE_REPOSITORY}
    assert {repository_of(r) for r in mounts} == {dst}
    kinds = Counter(r.kind for r in requests)
    # Not one blob byte moved: no blob read, no upload session, no PUT of blob bytes.
    assert kinds["blob GET"] == 0
    assert kinds["upload POST"] == 0
    assert kinds["upload PUT"] == 0
    assert kinds["upload PATCH"] == 0
    assert kinds["manifest PUT"] == 1
    _assert_registry_holds(registry.host, dst, stress)
    assert fetch_manifest(registry.host, dst, "v1") == (OCI_MANIFEST, stress.root.data)
