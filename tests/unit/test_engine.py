"""Copy graphs between in-memory targets and count what the engine asks of each side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from orascp.content import FetchStream, MountOutcome
from orascp.descriptor import Descriptor, compute_digest, successors
from orascp.engine import MAX_GRAPH_DEPTH, CopyHooks, CopyOptions, copy
from orascp.errors import (
    AuthenticationError,
    CopyError,
    DigestMismatchError,
    InvalidContentError,
    NotFoundError,
    Origin,
    SizeMismatchError,
)
from tests.unit.helpers import CountingStore, Graph, HookRecorder

# Generous: a healthy copy of these graphs takes milliseconds; only a deadlock reaches it.
DEADLOCK_TIMEOUT = 10.0


def run_copy(
    src: CountingStore,
    reference: str,
    dst: CountingStore,
    tags: tuple[str, ...] = (),
    *,
    timeout: float = DEADLOCK_TIMEOUT,
    **options: Any,
) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(
            copy(src, reference, dst, tags, CopyOptions(**options)), timeout
        )

    return asyncio.run(main())


def two_platform_index() -> tuple[Graph, Descriptor, Descriptor, Descriptor, Descriptor]:
    """Return an index of two images that share one layer (and nothing else)."""
    g = Graph()
    shared = g.blob(b"shared base layer" * 20, title="base.tar.gz")
    m1 = g.manifest([shared, g.blob(b"amd64 layer" * 20, title="amd64.tar.gz")], seed="amd64")
    m2 = g.manifest([shared, g.blob(b"arm64 layer" * 20, title="arm64.tar.gz")], seed="arm64")
    idx = g.index([m1, m2])
    g.store.tags["v1"] = idx
    return g, idx, m1, m2, shared


def assert_stored_correctly(store: CountingStore) -> None:
    for digest, content in store.inner.blobs.items():
        assert compute_digest(content, digest.split(":")[0]) == digest


# -- each node once ---------------------------------------------------------------------------


def test_index_copies_every_node_exactly_once() -> None:
    g, idx, _, _, _ = two_platform_index()
    src, dst = CountingStore(g.store), CountingStore()
    result = run_copy(src, "v1", dst, ("v1",))
    assert result.root == idx
    assert set(dst.inner.blobs) == set(g.store.blobs)
    assert dst.inner.tags["v1"] == idx
    assert all(n == 1 for n in src.fetches.values()), src.fetches
    assert set(src.fetches) == set(g.store.blobs)
    assert all(n == 1 for n in dst.pushes.values()), dst.pushes
    assert all(n == 1 for n in dst.exists_calls.values()), dst.exists_calls
    assert_stored_correctly(dst)


def test_shared_blob_is_fetched_and_pushed_once() -> None:
    g, _, _, _, shared = two_platform_index()
    src, dst = CountingStore(g.store), CountingStore()
    recorder = HookRecorder()
    run_copy(src, "v1", dst, hooks=recorder.hooks())
    assert src.fetches[shared.digest] == 1
    assert dst.pushes[shared.digest] == 1
    assert dst.exists_calls[shared.digest] == 1
    assert recorder.of(shared.digest).count("pre_copy") == 1
    assert recorder.of(shared.digest).count("post_copy") == 1
    assert recorder.named("on_deduplicated") == [shared.digest]


def test_manifests_are_fetched_once_to_walk_and_push() -> None:
    g, idx, m1, m2, _ = two_platform_index()
    src, dst = CountingStore(g.store), CountingStore()
    run_copy(src, "v1", dst, ("v1",))
    for manifest in (idx, m1, m2):
        assert src.fetches[manifest.digest] == 1
        assert dst.pushes[manifest.digest] == 1
        assert dst.inner.blobs[manifest.digest] == g.store.blobs[manifest.digest]
    assert src.resolves == {"v1": 1}


def test_same_blob_listed_twice_in_one_manifest_is_copied_once() -> None:
    g = Graph()
    layer = g.blob(b"twice" * 100)
    m = g.manifest([layer, layer], seed="twice")
    g.store.tags["t"] = m
    src, dst = CountingStore(g.store), CountingStore()
    recorder = HookRecorder()
    run_copy(src, "t", dst, ("t",), hooks=recorder.hooks())
    assert src.fetches[layer.digest] == 1
    assert dst.pushes[layer.digest] == 1
    assert dst.exists_calls[layer.digest] == 1
    assert recorder.of(layer.digest) == ["pre_copy", "post_copy", "on_deduplicated"]
    assert dst.inner.tags["t"] == m


# -- skipping ---------------------------------------------------------------------------------


def test_existing_node_is_skipped_with_its_whole_subtree() -> None:
    g = Graph()
    present = g.image("present", layers=3)
    missing = g.image("missing", layers=2)
    idx = g.index([present, missing])
    g.store.tags["v1"] = idx
    dst = CountingStore()
    dst.inner.add(present, g.store.blobs[present.digest])  # the manifest only, not its children
    src = CountingStore(g.store)
    recorder = HookRecorder()
    run_copy(src, "v1", dst, ("v1",), hooks=recorder.hooks())

    below_present = g.subtree(present.digest) - {present.digest}
    assert len(below_present) == 4
    for digest in below_present:
        assert src.fetches[digest] == 0, "a child of a skipped node was fetched"
        assert dst.exists_calls[digest] == 0, "a child of a skipped node was checked"
        assert dst.pushes[digest] == 0
        assert digest not in dst.inner.blobs
    assert src.fetches[present.digest] == 0
    assert dst.exists_calls[present.digest] == 1
    assert dst.pushes[present.digest] == 0
    assert recorder.named("on_copy_skipped") == [present.digest]
    assert "pre_copy" not in recorder.of(present.digest)
    for digest in g.subtree(missing.digest) | {idx.digest}:
        assert digest in dst.inner.blobs
    assert dst.inner.tags["v1"] == idx


def test_existing_root_is_only_tagged() -> None:
    g = Graph()
    m = g.image("root", layers=2)
    g.store.tags["v1"] = m
    dst = CountingStore()
    dst.inner.add(m, g.store.blobs[m.digest])
    src = CountingStore(g.store)
    recorder = HookRecorder()
    run_copy(src, "v1", dst, ("v1", "latest"), hooks=recorder.hooks())
    assert recorder.events == [("on_copy_skipped", m.digest)]
    assert sum(src.fetches.values()) == 0
    assert sum(dst.pushes.values()) == 0
    assert dst.inner.tags == {"v1": m, "latest": m}


# -- order ------------------------------------------------------------------------------------


def deep_graph(depth: int) -> tuple[Graph, Descriptor]:
    """Return index -> (index -> (... -> image), image) nested ``depth`` indexes deep."""
    g = Graph()
    node = g.image("leaf", layers=2)
    for level in range(depth):
        node = g.index([node, g.image(f"level-{level}", layers=2)], seed=str(level))
    g.store.tags["deep"] = node
    return g, node


def test_children_are_pushed_before_parents() -> None:
    g, root = deep_graph(4)
    src, dst = CountingStore(g.store), CountingStore()
    recorder = HookRecorder()
    run_copy(src, "deep", dst, ("deep",), hooks=recorder.hooks())
    assert set(dst.inner.blobs) == set(g.store.blobs)
    for parent, kids in g.children.items():
        parent_start = dst.position("push-start", parent)
        hook_start = recorder.events.index(("pre_copy", parent))
        for kid in kids:
            assert dst.position("push-end", kid.digest) < parent_start
            assert recorder.events.index(("post_copy", kid.digest)) < hook_start
    assert dst.events[-1] == ("push-end", root.digest)


def test_hooks_bracket_each_transfer() -> None:
    g, _, _, _, _ = two_platform_index()
    src, dst = CountingStore(g.store), CountingStore()
    recorder = HookRecorder()
    run_copy(src, "v1", dst, hooks=recorder.hooks())
    for digest in g.store.blobs:
        assert [e for e in recorder.of(digest) if e != "on_deduplicated"] == [
            "pre_copy",
            "post_copy",
        ]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_deep_graph_copies_with_little_concurrency(concurrency: int) -> None:
    g, root = deep_graph(6)
    src, dst = CountingStore(g.store), CountingStore()
    result = run_copy(src, "deep", dst, ("deep",), concurrency=concurrency)
    assert result.root == root
    assert set(dst.inner.blobs) == set(g.store.blobs)
    assert len(g.manifests) == 13
    assert dst.inner.tags["deep"] == root
    assert all(n == 1 for n in src.fetches.values())
    assert_stored_correctly(dst)


def test_graph_nested_beyond_the_limit_is_refused() -> None:
    g = Graph()
    node = g.image("bottom", layers=1)
    for level in range(MAX_GRAPH_DEPTH + 1):
        node = g.index([node], seed=str(level))
    g.store.tags["t"] = node
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(CountingStore(g.store), "t", dst, ("t",))
    assert info.value.origin is Origin.SOURCE
    assert "deeper" in str(info.value)
    assert node.digest not in dst.inner.blobs
    assert dst.inner.tags == {}


# -- failures ---------------------------------------------------------------------------------


def test_blob_digest_mismatch_in_source_fails_and_stores_nothing_bad() -> None:
    g = Graph()
    good = g.blob(b"good layer" * 10)
    bad = g.blob(b"bad layer!" * 10)
    g.store.blobs[bad.digest] = b"BAD LAYER!" * 10  # same size, other bytes
    m = g.manifest([good, bad], seed="bad")
    g.store.tags["t"] = m
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(CountingStore(g.store), "t", dst, ("t",))
    assert info.value.origin is Origin.SOURCE
    assert isinstance(info.value.cause, DigestMismatchError)
    assert bad.digest not in dst.inner.blobs
    assert m.digest not in dst.inner.blobs
    assert dst.inner.tags == {}
    assert_stored_correctly(dst)


def test_blob_size_mismatch_in_source_fails() -> None:
    g = Graph()
    short = g.blob(b"0123456789" * 10)
    g.store.blobs[short.digest] = b"0123456789" * 9
    m = g.manifest([short], seed="short")
    g.store.tags["t"] = m
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(CountingStore(g.store), "t", dst, ("t",))
    assert info.value.origin is Origin.SOURCE
    assert isinstance(info.value.cause, SizeMismatchError)
    assert short.digest not in dst.inner.blobs
    assert m.digest not in dst.inner.blobs


def test_manifest_digest_mismatch_in_source_fails_before_anything_is_written() -> None:
    g = Graph()
    m = g.image("tampered", layers=2)
    original = g.store.blobs[m.digest]
    tampered = original.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    assert tampered != original
    g.store.blobs[m.digest] = tampered
    g.store.tags["t"] = m
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(CountingStore(g.store), "t", dst, ("t",))
    assert info.value.origin is Origin.SOURCE
    assert isinstance(info.value.cause, DigestMismatchError)
    assert dst.inner.blobs == {}
    assert dst.inner.tags == {}


def test_unknown_source_tag_leaves_the_destination_untouched() -> None:
    g, _, _, _, _ = two_platform_index()
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(CountingStore(g.store), "nope", dst, ("v1",))
    assert info.value.origin is Origin.SOURCE
    assert info.value.op == "resolve"
    assert isinstance(info.value.cause, NotFoundError)
    assert dst.inner.blobs == {}
    assert dst.inner.tags == {}
    assert sum(dst.exists_calls.values()) == sum(dst.pushes.values()) == 0


def test_destination_digest_must_match_the_source() -> None:
    g = Graph()
    m = g.image("x")
    g.store.tags["t"] = m

    async def main() -> None:
        await copy(CountingStore(g.store), "t", dst, expected_digest="sha256:" + "0" * 64)

    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        asyncio.run(main())
    assert info.value.origin is Origin.DESTINATION
    assert dst.inner.blobs == {}


def _with_extra_edges(extra: dict[str, list[Descriptor]]) -> Callable[..., list[Descriptor]]:
    def find(desc: Descriptor, content: bytes) -> list[Descriptor]:
        return successors(desc, content) + extra.get(desc.digest, [])

    return find


def test_cycle_through_subject_is_refused() -> None:
    g = Graph()
    b = g.image("b", layers=1)
    a = g.manifest([g.blob(b"a layer")], subject=b, seed="a")
    g.store.tags["a"] = a
    dst = CountingStore()
    # Content addressing makes a real cycle impossible: B's extra successor closes it.
    with pytest.raises(CopyError) as info:
        run_copy(
            CountingStore(g.store),
            "a",
            dst,
            ("a",),
            find_successors=_with_extra_edges({b.digest: [a]}),
        )
    assert info.value.origin is Origin.SOURCE
    assert isinstance(info.value.cause, InvalidContentError)
    assert "cycle" in str(info.value)
    assert a.digest not in dst.inner.blobs
    assert b.digest not in dst.inner.blobs
    assert dst.inner.tags == {}


def test_cycle_reached_from_two_branches_is_refused_without_deadlock() -> None:
    g = Graph()
    b = g.image("b", layers=1)
    a = g.manifest([g.blob(b"a layer")], subject=b, seed="a")
    idx = g.index([a, b])
    g.store.tags["i"] = idx
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        run_copy(
            CountingStore(g.store),
            "i",
            dst,
            ("i",),
            timeout=2.0,  # the four-node copy takes a millisecond; keep a hang short
            find_successors=_with_extra_edges({b.digest: [a]}),
        )
    assert "cycle" in str(info.value)
    assert dst.inner.tags == {}


# -- mounting ---------------------------------------------------------------------------------


class MountingStore(CountingStore):
    """A destination registry repository: a MemoryStore that can also mount blobs.

    ``answers`` maps a candidate repository to what the registry answers a mount from it:
    "201" (mounted), "202" (an upload session opens) or "auth" (401).
    """

    def __init__(self, registry_blobs: dict[str, bytes], answers: dict[str, str]) -> None:
        super().__init__()
        self.registry_blobs = registry_blobs
        self.answers = answers
        self.mount_calls: list[tuple[str, str, bool]] = []
        self.cancelled: list[tuple[str, str]] = []
        self.uploaded: list[tuple[str, str]] = []

    async def mount(
        self,
        desc: Descriptor,
        from_repository: str,
        fallback: Callable[[], FetchStream] | None,
    ) -> MountOutcome:
        self.mount_calls.append((desc.digest, from_repository, fallback is not None))
        answer = self.answers[from_repository]
        if answer == "auth":
            raise AuthenticationError("POST", "http://registry.test/v2/dst/blobs/uploads/", 401)
        if answer == "201":
            self.inner.add(desc, self.registry_blobs[desc.digest])
            return MountOutcome.MOUNTED
        assert answer == "202"
        if fallback is None:
            self.cancelled.append((desc.digest, from_repository))
            return MountOutcome.NOT_MOUNTED
        async with fallback() as chunks:
            await self.inner.push(desc, chunks)
        self.uploaded.append((desc.digest, from_repository))
        return MountOutcome.UPLOADED


def mount_setup(
    answers: dict[str, str], layers: int = 2
) -> tuple[Graph, Descriptor, CountingStore, MountingStore, list[str]]:
    g = Graph()
    m = g.image("mount", layers=layers)
    g.store.tags["v1"] = m
    dst = MountingStore(dict(g.store.blobs), answers)
    blobs = sorted(g.subtree(m.digest) - {m.digest})
    return g, m, CountingStore(g.store), dst, blobs


def test_mount_candidates_are_tried_in_order() -> None:
    g, _m, src, dst, blobs = mount_setup({"a": "202", "b": "202", "c": "201"})
    recorder = HookRecorder()
    run_copy(src, "v1", dst, ("v1",), mount_from=lambda d: ["a", "b", "c"], hooks=recorder.hooks())
    for digest in blobs:
        calls = [(repo, has_fallback) for d, repo, has_fallback in dst.mount_calls if d == digest]
        assert calls == [("a", False), ("b", False), ("c", True)]
        assert [repo for d, repo in dst.cancelled if d == digest] == ["a", "b"]
        assert recorder.of(digest) == ["on_mounted"]
        assert src.fetches[digest] == 0
        assert dst.pushes[digest] == 0
    assert set(dst.inner.blobs) == set(g.store.blobs)
    assert dst.uploaded == []


def test_mounted_blob_fires_only_on_mounted() -> None:
    _g, m, src, dst, blobs = mount_setup({"other": "201"})
    recorder = HookRecorder()
    run_copy(src, "v1", dst, ("v1",), mount_from=lambda d: ["other"], hooks=recorder.hooks())
    assert sorted(recorder.named("on_mounted")) == blobs
    assert recorder.named("pre_copy") == [m.digest]
    assert recorder.named("post_copy") == [m.digest]
    assert dst.inner.tags["v1"] == m
    assert_stored_correctly(dst)


def test_last_202_uploads_into_its_session() -> None:
    g, m, src, dst, blobs = mount_setup({"a": "202", "b": "202"})
    recorder = HookRecorder()
    run_copy(src, "v1", dst, ("v1",), mount_from=lambda d: ["a", "b"], hooks=recorder.hooks())
    for digest in blobs:
        calls = [(repo, has_fallback) for d, repo, has_fallback in dst.mount_calls if d == digest]
        assert calls == [("a", False), ("b", True)]
        assert (digest, "a") in dst.cancelled
        assert (digest, "b") in dst.uploaded
        assert recorder.of(digest) == ["pre_copy", "post_copy"]
        assert src.fetches[digest] == 1
        assert dst.pushes[digest] == 0, "a second upload was opened"
        assert dst.inner.blobs[digest] == g.store.blobs[digest]
    assert dst.inner.tags["v1"] == m


def test_manifests_are_never_mounted() -> None:
    g = Graph()
    idx = g.index([g.image("x"), g.image("y")])
    g.store.tags["v1"] = idx
    dst = MountingStore(dict(g.store.blobs), {"other": "201"})
    recorder = HookRecorder()
    run_copy(
        CountingStore(g.store),
        "v1",
        dst,
        ("v1",),
        mount_from=lambda d: ["other"],
        hooks=recorder.hooks(),
    )
    mounted = {d for d, _, _ in dst.mount_calls}
    assert mounted == set(g.store.blobs) - g.manifests
    assert len(g.manifests) == 3
    for digest in g.manifests:
        assert dst.pushes[digest] == 1
        assert recorder.of(digest) == ["pre_copy", "post_copy"]


def test_a_candidate_refused_for_lack_of_rights_is_skipped_for_the_rest_of_the_copy() -> None:
    _, _, src, dst, blobs = mount_setup({"a": "auth", "b": "201"}, layers=4)
    recorder = HookRecorder()
    run_copy(
        src,
        "v1",
        dst,
        ("v1",),
        mount_from=lambda d: ["a", "b"],
        hooks=recorder.hooks(),
        concurrency=1,
    )
    assert len(blobs) == 5
    # "a" is asked once, refuses, and is never asked again; "b" mounts every blob.
    assert [repo for _, repo, _ in dst.mount_calls].count("a") == 1
    assert sorted(d for d, repo, _ in dst.mount_calls if repo == "b") == sorted(blobs)
    for digest in blobs:
        assert recorder.of(digest) == ["on_mounted"]
        assert digest not in dst.pushes
        assert src.fetches.get(digest, 0) == 0


def test_a_refused_only_candidate_falls_back_to_copying_and_is_not_asked_again() -> None:
    g, m, src, dst, blobs = mount_setup({"a": "auth"}, layers=4)
    recorder = HookRecorder()
    run_copy(
        src,
        "v1",
        dst,
        ("v1",),
        mount_from=lambda d: ["a"],
        hooks=recorder.hooks(),
        concurrency=1,
    )
    assert len(dst.mount_calls) == 1
    for digest in blobs:
        assert recorder.of(digest) == ["pre_copy", "post_copy"]
        assert dst.pushes[digest] == 1
        assert src.fetches[digest] == 1
    assert recorder.named("on_mounted") == []
    assert set(dst.inner.blobs) == set(g.store.blobs)
    assert dst.inner.tags["v1"] == m


def test_no_candidates_means_a_plain_copy() -> None:
    _g, _m, src, dst, blobs = mount_setup({})
    run_copy(src, "v1", dst, ("v1",), mount_from=lambda d: [])
    assert dst.mount_calls == []
    assert all(dst.pushes[d] == 1 for d in blobs)


def test_hooks_default_to_none() -> None:
    g, _, _, _, _ = two_platform_index()
    dst = CountingStore()
    run_copy(CountingStore(g.store), "v1", dst, hooks=CopyHooks())
    assert set(dst.inner.blobs) == set(g.store.blobs)
