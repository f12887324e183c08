"""Graphs that share content: an index copies whole, and a shared blob moves once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.accesslog import mounts_of, uploads_of
from tests.support.artifacts import (
    fetch_manifest,
    image,
    layout_tags,
    multi_platform,
    push,
    tar_gz_layer,
)
from tests.support.checks import (
    assert_clean_layout,
    assert_layout_holds,
    assert_registry_holds,
    is_manifest,
)
from tests.support.cli import Result, display_name, run_orascp, short_digest
from tests.support.registry import Registry

MODES = ["mount", "cross-registry", "layout"]


def _copy(
    mode: str, registry: Registry, other: Registry, src: str, dst: str, tmp_path: Path
) -> tuple[Result, Registry, Path]:
    """Copy ``src:v1`` of the main registry the way ``mode`` says; return the run and sides."""
    source = f"{registry.host}/{src}:v1"
    out = tmp_path / "out"
    if mode == "mount":
        return run_orascp("cp", source, f"{registry.host}/{dst}:v1"), registry, out
    if mode == "cross-registry":
        return run_orascp("cp", source, f"{other.host}/{dst}:v1"), other, out
    return run_orascp("cp", source, "--to-oci-layout", f"{out}:v1"), registry, out


@pytest.mark.integration
@pytest.mark.parametrize("mode", MODES)
def test_multi_platform_index_copies_whole(
    mode: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = multi_platform(repo)
    children = [b for b in art.blobs if is_manifest(b.media_type)]
    blobs = [b for b in art.blobs if not is_manifest(b.media_type)]
    assert len(children) == 3
    assert len(blobs) == 7  # one shared base layer, three own layers, three configs
    src, dst = f"{repo}/src", f"{repo}/dst"
    push(registry.host, src, art, "v1")
    base = next(b for b in blobs if display_name(b) == "base.tar.gz")

    marks = {id(r): r.mark() for r in (registry, other_registry)}
    res, dst_registry, out = _copy(mode, registry, other_registry, src, dst, tmp_path)

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {art.digest}"
    requests = dst_registry.requests()[marks[id(dst_registry)] :]

    # Every manifest of the graph is pushed exactly once, children before the index.
    copied = Counter(s.short for s in res.verbs("Copied"))
    for manifest in [*children, art.root]:
        assert copied[short_digest(manifest.digest)] == 1, manifest.digest
    assert res.verbs("Copied")[-1].short == short_digest(art.digest)

    # Every blob is transferred (or mounted) once; the shared base layer too.
    moved = Counter(s.short for s in res.statuses if s.verb in ("Copied", "Mounted"))
    for blob in blobs:
        assert moved[short_digest(blob.digest)] == 1, blob.digest
    assert len(res.for_digest(base.digest)) == (1 if mode == "mount" else 2)
    if mode == "mount":
        assert len(mounts_of(requests, base.digest)) == 1
        assert sum(len(mounts_of(requests, b.digest)) for b in blobs) == len(blobs)
        assert dst_registry.counts(marks[id(dst_registry)])["blob GET"] == 0
    elif mode == "cross-registry":
        assert len(uploads_of(requests, base.digest)) == 1
        assert dst_registry.counts(marks[id(dst_registry)])["upload PUT"] == len(blobs)

    if mode == "layout":
        assert layout_tags(out) == {"v1": art.digest}
        assert_layout_holds(out, art)
        assert_clean_layout(out, art)
    else:
        assert fetch_manifest(dst_registry.host, dst, "v1") == (art.root.media_type, art.root.data)
        assert_registry_holds(dst_registry.host, dst, art)


@pytest.mark.integration
@pytest.mark.parametrize("mode", MODES)
def test_layer_listed_twice_is_copied_once(
    mode: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    twice = tar_gz_layer(repo.encode() * 512, title="twice.tar.gz")
    art = image([twice, twice])
    assert len(art.blobs) == 2  # the config and the one layer
    src, dst = f"{repo}/src", f"{repo}/dst"
    push(registry.host, src, art, "v1")

    marks = {id(r): r.mark() for r in (registry, other_registry)}
    res, dst_registry, out = _copy(mode, registry, other_registry, src, dst, tmp_path)

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {art.digest}"
    lines = res.for_digest(twice.digest)
    if mode == "mount":
        assert [s.verb for s in lines] == ["Mounted"]
    else:
        assert [s.verb for s in lines] == ["Copying", "Copied"]
    requests = dst_registry.requests()[marks[id(dst_registry)] :]
    if mode == "mount":
        assert [r.status for r in mounts_of(requests, twice.digest)] == [201]
    elif mode == "cross-registry":
        assert len(uploads_of(requests, twice.digest)) == 1
    src_requests = registry.requests()[marks[id(registry)] :]
    layer_gets = [r for r in src_requests if r.kind == "blob GET" and twice.digest in r.path]
    assert len(layer_gets) == (0 if mode == "mount" else 1)

    if mode == "layout":
        assert layout_tags(out) == {"v1": art.digest}
        assert_clean_layout(out, art)
        assert_layout_holds(out, art)
    else:
        assert fetch_manifest(dst_registry.host, dst, "v1") == (art.root.media_type, art.root.data)
        assert_registry_holds(dst_registry.host, dst, art)


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["registry", "layout"])
def test_index_of_manifests_of_layers_copies_with_concurrency_one(
    destination: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    # Three levels (index -> manifests -> blobs) with a single transfer slot: a parent that held
    # its slot while waiting for its children would deadlock here.
    art = multi_platform(repo)
    src = f"{repo}/src"
    push(registry.host, src, art, "v1")
    if destination == "registry":
        target = [f"{other_registry.host}/{repo}/dst:v1"]
    else:
        target = ["--to-oci-layout", f"{tmp_path / 'out'}:v1"]

    res = run_orascp("cp", "--concurrency", "1", f"{registry.host}/{src}:v1", *target, timeout=60)

    assert res.returncode == 0, res.describe()
    assert res.lines[-1] == f"Digest: {art.digest}"
    assert len(res.verbs("Copied")) == len(art.all)
    if destination == "registry":
        assert_registry_holds(other_registry.host, f"{repo}/dst", art)
    else:
        assert_layout_holds(tmp_path / "out", art)
        assert layout_tags(tmp_path / "out") == {"v1": art.digest}
