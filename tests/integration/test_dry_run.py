"""``--dry-run``: print what a copy would copy, mount or skip, and write nothing.

The plan has one line per node, ``<action> <12 hex> <title or media type>[  <detail>]``, where
the action is ``copy`` (detail: its size), ``mount`` (detail: ``from <repository>``) or
``exists``; then ``Would copy N (<size>), mount M, skip K that exist`` and ``Digest: <root>``.
``--format json`` prints one document instead, with ``"dryRun": true``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from orascp.blobcache import BlobCache
from orascp.display.text import format_size
from tests.support.artifacts import (
    TITLE,
    Artifact,
    Blob,
    image,
    push,
    push_blob,
    sample_image,
    tree_snapshot,
    write_layout,
)
from tests.support.cli import Result, run_orascp, short_digest
from tests.support.registry import Registry
from tests.support.schemas import validate

pytestmark = pytest.mark.integration

PLAN_RE = re.compile(r"^(copy|mount|exists) +([0-9a-f]{12}) (\S+)(?:  (.+))?$")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def plan_lines(res: Result) -> dict[str, tuple[str, str | None]]:
    """Return ``{short digest: (action, detail)}`` of the plan, each digest once."""
    out: dict[str, tuple[str, str | None]] = {}
    for line in res.lines:
        m = PLAN_RE.match(line)
        if m:
            assert m.group(2) not in out, res.describe()
            out[m.group(2)] = (m.group(1), m.group(4))
    return out


def title(blob: Blob) -> str:
    return (blob.annotations or {})[TITLE]


def writes(registry: Registry, since: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in registry.requests()[since:] if r.method in WRITES]


def has_manifest(registry: Registry, repository: str, reference: str) -> bool:
    r = httpx.head(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    return r.status_code == 200


def mixed_destination(
    registry: Registry, other_registry: Registry, repo: str, cache: Path
) -> Artifact:
    """Seed a copy ``A/x:v1 -> B/y:v1`` where each kind of action happens.

    Layer 0 is in ``B/{repo}/z`` and the cache says so (mount), layer 1 is already in ``B/y``
    (exists), the config and layer 2 are nowhere on B (copy), nor is the manifest.
    """
    art = sample_image(repo, layers=3, size=6000)
    push(registry.host, f"{repo}/x", art, "v1")
    layers = [b for b in art.blobs if b.annotations]
    push_blob(other_registry.host, f"{repo}/z", layers[0].data)
    push_blob(other_registry.host, f"{repo}/y", layers[1].data)
    with BlobCache(cache) as c:
        c.record(other_registry.host, f"{repo}/z", layers[0].digest)
    return art


def test_plan_lists_copy_mount_and_exists_and_writes_nothing(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite"
    art = mixed_destination(registry, other_registry, repo, cache)
    config, l0, l1, l2 = art.blobs
    src, dst = f"{registry.host}/{repo}/x:v1", f"{other_registry.host}/{repo}/y:v1"

    a_mark, b_mark = registry.mark(), other_registry.mark()
    res = run_orascp("cp", "--dry-run", "--blob-cache", str(cache), src, dst)

    assert res.returncode == 0, res.describe()
    assert res.stderr == "", res.describe()
    assert res.lines[0] == f"Dry run: [registry] {src} => [registry] {dst}; nothing is written"
    assert res.statuses == []  # no Copying/Copied/Mounted lines: nothing happened
    plan = plan_lines(res)
    assert plan == {
        short_digest(config.digest): ("copy", format_size(len(config.data))),
        short_digest(l0.digest): ("mount", f"from {repo}/z"),
        short_digest(l1.digest): ("exists", None),
        short_digest(l2.digest): ("copy", format_size(len(l2.data))),
        short_digest(art.digest): ("copy", format_size(len(art.root.data))),
    }
    assert f"mount   {short_digest(l0.digest)} {title(l0)}  from {repo}/z" in res.lines
    assert f"exists  {short_digest(l1.digest)} {title(l1)}" in res.lines
    # Children before the manifest that lists them, as the copy pushes them.
    assert res.lines[-3].startswith(f"copy    {short_digest(art.digest)} {art.root.media_type}  ")
    moved = len(config.data) + len(l2.data) + len(art.root.data)
    assert res.lines[-2] == f"Would copy 3 ({format_size(moved)}), mount 1, skip 1 that exist"
    assert res.lines[-1] == f"Digest: {art.digest}"
    assert len(res.lines) == 1 + 5 + 2

    assert writes(other_registry, b_mark) == []
    assert writes(registry, a_mark) == []
    assert registry.counts(a_mark)["blob GET"] == 0  # blobs are not read, only manifests
    assert not has_manifest(other_registry, f"{repo}/y", "v1")
    assert not has_manifest(other_registry, f"{repo}/y", art.digest)


def test_plan_to_a_layout_creates_nothing(registry: Registry, repo: str, tmp_path: Path) -> None:
    art = sample_image(repo, layers=2, size=3000)
    push(registry.host, f"{repo}/x", art, "v1")
    missing = tmp_path / "new"
    res = run_orascp(
        "cp", "--dry-run", f"{registry.host}/{repo}/x:v1", "--to-oci-layout", f"{missing}:v1"
    )
    assert res.returncode == 0, res.describe()
    plan = plan_lines(res)
    assert plan == {short_digest(b.digest): ("copy", format_size(len(b.data))) for b in art.all}
    assert res.lines[-2].startswith(f"Would copy {len(art.all)} (")
    assert res.lines[-2].endswith("), mount 0, skip 0 that exist")
    assert not missing.exists()

    # An existing layout holding one of the layers: that one exists, and nothing changes.
    existing = tmp_path / "existing"
    other = image([art.blobs[1]])
    write_layout(existing, other, "old")
    before = tree_snapshot(existing)
    res = run_orascp(
        "cp", "--dry-run", f"{registry.host}/{repo}/x:v1", "--to-oci-layout", f"{existing}:v1"
    )
    assert res.returncode == 0, res.describe()
    plan = plan_lines(res)
    # The config is the same default config as ``other``'s, so it exists too.
    assert {s for s, (action, _) in plan.items() if action == "exists"} == {
        short_digest(art.blobs[0].digest),
        short_digest(art.blobs[1].digest),
    }
    assert tree_snapshot(existing) == before


def test_plan_as_json(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite"
    art = mixed_destination(registry, other_registry, repo, cache)
    config, l0, l1, l2 = art.blobs
    src, dst = f"{registry.host}/{repo}/x:v1", f"{other_registry.host}/{repo}/y:v1"
    b_mark = other_registry.mark()
    res = run_orascp("cp", "--dry-run", "--format", "json", "--blob-cache", str(cache), src, dst)

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    doc: dict[str, Any] = json.loads(res.stdout)  # one document, nothing after it
    validate(doc, "cp-plan.schema.json")
    assert doc["dryRun"] is True
    assert doc["schemaVersion"] == 1
    assert doc["source"] == {"type": "registry", "reference": src}
    assert doc["destination"] == {"type": "registry", "reference": dst}
    assert doc["root"] == {
        "mediaType": art.root.media_type,
        "digest": art.digest,
        "size": len(art.root.data),
    }
    assert doc["tags"] == ["v1"]
    nodes = {node["digest"]: node for node in doc["nodes"]}
    assert len(nodes) == len(doc["nodes"]) == len(art.all)
    expected = {
        config.digest: "copy",
        l0.digest: "mount",
        l1.digest: "exists",
        l2.digest: "copy",
        art.digest: "copy",
    }
    assert {d: n["action"] for d, n in nodes.items()} == expected
    sizes = {b.digest: len(b.data) for b in art.all}
    for digest, node in nodes.items():
        assert node["size"] == sizes[digest]
        assert node["bytes"] == (node["size"] if node["action"] == "copy" else 0), node
    assert nodes[l0.digest]["from"] == f"{repo}/z"
    assert all("from" not in n for d, n in nodes.items() if d != l0.digest)
    actions = Counter(n["action"] for n in doc["nodes"])
    assert doc["totals"] == {
        "nodes": 5,
        "copy": actions["copy"],
        "mount": actions["mount"],
        "exists": actions["exists"],
        "bytes": sizes[config.digest] + sizes[l2.digest] + sizes[art.digest],
    }
    assert writes(other_registry, b_mark) == []


def test_plan_for_a_destination_that_has_the_image(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=2000)
    push(registry.host, f"{repo}/x", art, "v1")
    push(other_registry.host, f"{repo}/y", art, "v1")
    b_mark = other_registry.mark()
    res = run_orascp(
        "cp", "--dry-run", f"{registry.host}/{repo}/x:v1", f"{other_registry.host}/{repo}/y:v2"
    )
    assert res.returncode == 0, res.describe()
    assert plan_lines(res) == {short_digest(art.digest): ("exists", None)}
    assert res.lines[-2:] == [
        "Would copy 0 (0 B), mount 0, skip 1 that exist",
        f"Digest: {art.digest}",
    ]
    assert writes(other_registry, b_mark) == []
    assert not has_manifest(other_registry, f"{repo}/y", "v2")  # not even tagged


def test_plan_within_one_registry_mounts_from_the_source(registry: Registry, repo: str) -> None:
    art = sample_image(repo, layers=2, size=2000)
    push(registry.host, f"{repo}/x", art, "v1")
    mark = registry.mark()
    res = run_orascp(
        "cp",
        "--dry-run",
        "--no-blob-cache",
        f"{registry.host}/{repo}/x:v1",
        f"{registry.host}/{repo}/y:v1",
    )
    assert res.returncode == 0, res.describe()
    expected = {short_digest(b.digest): ("mount", f"from {repo}/x") for b in art.blobs}
    expected[short_digest(art.digest)] = ("copy", format_size(len(art.root.data)))
    assert plan_lines(res) == expected
    assert writes(registry, mark) == []


def test_real_run_does_what_the_plan_said(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite"
    art = mixed_destination(registry, other_registry, repo, cache)
    src, dst = f"{registry.host}/{repo}/x:v1", f"{other_registry.host}/{repo}/y:v1"
    planned = run_orascp("cp", "--dry-run", "--blob-cache", str(cache), src, dst)
    assert planned.returncode == 0, planned.describe()
    plan = {short: action for short, (action, _) in plan_lines(planned).items()}
    assert set(plan) == {short_digest(b.digest) for b in art.all}
    assert set(plan.values()) == {"copy", "mount", "exists"}

    res = run_orascp("cp", "--blob-cache", str(cache), src, dst)
    assert res.returncode == 0, res.describe()
    verbs = {"Copied": "copy", "Mounted": "mount", "Exists": "exists"}
    done = {s.short: verbs[s.verb] for s in res.statuses if s.verb in verbs}
    assert done == plan
    assert has_manifest(other_registry, f"{repo}/y", "v1")
