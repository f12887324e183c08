"""Build real content graphs in memory and count what the copy engine asks of a target."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterable
from typing import Any

from orascp.content import FetchStream
from orascp.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, descriptor_for
from orascp.engine import CopyHooks
from orascp.memory import MemoryStore

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
TITLE = "org.opencontainers.image.title"


class Graph:
    """Write blobs, manifests and indexes with correct digests into a MemoryStore."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        # digest -> descriptors it lists, as written (children in push order, subject first)
        self.children: dict[str, list[Descriptor]] = {}
        self.manifests: set[str] = set()

    def blob(self, data: bytes, media_type: str = LAYER, title: str | None = None) -> Descriptor:
        desc = descriptor_for(media_type, data)
        if title is not None:
            desc = desc.with_annotations({TITLE: title})
        self.store.add(desc, data)
        return desc

    def _add_json(self, media_type: str, obj: dict[str, Any], kids: list[Descriptor]) -> Descriptor:
        content = json.dumps(obj, indent=2).encode()
        desc = descriptor_for(media_type, content)
        self.store.add(desc, content)
        self.children[desc.digest] = kids
        self.manifests.add(desc.digest)
        return desc

    def manifest(
        self,
        layers: list[Descriptor],
        config: Descriptor | None = None,
        *,
        subject: Descriptor | None = None,
        seed: str = "",
    ) -> Descriptor:
        if config is None:
            config = self.blob(json.dumps({"seed": seed, "n": len(layers)}).encode(), CONFIG)
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        kids = [config, *layers]
        if subject is not None:
            obj["subject"] = subject.to_json()
            kids = [subject, *kids]
        return self._add_json(OCI_MANIFEST, obj, kids)

    def index(self, manifests: list[Descriptor], *, seed: str = "") -> Descriptor:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_json() for d in manifests],
            "annotations": {"seed": seed},
        }
        return self._add_json(OCI_INDEX, obj, list(manifests))

    def image(self, seed: str, layers: int = 2) -> Descriptor:
        """Return a manifest over ``layers`` distinct layers (and a distinct config)."""
        blobs = [self.blob(f"{seed}-layer-{i}".encode() * 10) for i in range(layers)]
        return self.manifest(blobs, seed=seed)

    def subtree(self, digest: str) -> set[str]:
        """Return ``digest`` and every digest below it."""
        out = {digest}
        for child in self.children.get(digest, []):
            out |= self.subtree(child.digest)
        return out


class CountingStore:
    """Delegate to a MemoryStore, counting every call per digest (or per reference)."""

    def __init__(self, inner: MemoryStore | None = None) -> None:
        self.inner = inner if inner is not None else MemoryStore()
        self.fetches: Counter[str] = Counter()
        self.exists_calls: Counter[str] = Counter()
        self.pushes: Counter[str] = Counter()
        self.tag_calls: Counter[str] = Counter()
        self.resolves: Counter[str] = Counter()
        # ("push-start" | "push-end", digest) in the order they happened
        self.events: list[tuple[str, str]] = []

    def fetch(self, desc: Descriptor) -> FetchStream:
        self.fetches[desc.digest] += 1
        return self.inner.fetch(desc)

    async def exists(self, desc: Descriptor) -> bool:
        self.exists_calls[desc.digest] += 1
        return await self.inner.exists(desc)

    async def resolve(self, reference: str) -> Descriptor:
        self.resolves[reference] += 1
        return await self.inner.resolve(reference)

    async def push(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        self.pushes[desc.digest] += 1
        self.events.append(("push-start", desc.digest))
        await self.inner.push(desc, chunks)
        self.events.append(("push-end", desc.digest))

    async def tag(self, desc: Descriptor, references: list[str]) -> None:
        self.tag_calls[desc.digest] += 1
        await self.inner.tag(desc, references)

    def position(self, event: str, digest: str) -> int:
        return self.events.index((event, digest))


class HookRecorder:
    """Record every hook call as (hook name, digest), in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        return lambda desc: self.events.append((name, desc.digest))

    def hooks(self) -> CopyHooks:
        return CopyHooks(
            pre_copy=self._hook("pre_copy"),
            post_copy=self._hook("post_copy"),
            on_copy_skipped=self._hook("on_copy_skipped"),
            on_mounted=self._hook("on_mounted"),
            on_deduplicated=self._hook("on_deduplicated"),
        )

    def of(self, digest: str) -> list[str]:
        return [name for name, d in self.events if d == digest]

    def named(self, name: str) -> list[str]:
        return [d for n, d in self.events if n == name]
