"""Copy a graph of content from one target to another.

The algorithm follows oras-go's ``copyGraph``:

1. Each node is copied once: a dictionary of futures keyed by digest deduplicates nodes shared by
   several manifests (oras-go's ``Tracker.TryCommit``).
2. A node that already exists at the destination is skipped together with its whole subtree.
3. A manifest is fetched once (and kept in memory, bounded by ``max_metadata_bytes``), its
   successors are copied, and only then is the manifest itself pushed: children before parents,
   tags last, so an interrupted copy never leaves a tag pointing at incomplete content.
4. Blobs are mounted when the destination can mount and ``mount_from`` offers candidate
   repositories; otherwise, or when every candidate refuses, their bytes are streamed.

Concurrency: one asyncio task per node. A semaphore of ``concurrency`` slots is held only around
single requests and transfers, never while a manifest waits for its children; that is what makes a
graph deeper than the concurrency limit impossible to deadlock (oras-go's ``LimitedRegion``).

The engine knows nothing about terminals: it reports through :class:`CopyHooks` only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from orascp import platform, retry
from orascp.content import (
    FetchStream,
    LocalChecker,
    MountChecker,
    Mounter,
    MountOutcome,
    ReadOnlyTarget,
    ReferenceFetcher,
    ReferencePusher,
    ReferrerIndexer,
    ReferrerLister,
    Target,
)
from orascp.descriptor import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Descriptor,
    compute_digest,
    is_manifest,
    load_json,
)
from orascp.descriptor import successors as default_successors
from orascp.errors import (
    AlreadyExistsError,
    AuthenticationError,
    CopyError,
    InvalidContentError,
    NotFoundError,
    OrascpError,
    Origin,
    RegistryError,
    SizeLimitError,
    UnsupportedError,
    VerificationError,
)
from orascp.platform import Platform
from orascp.verify import verified

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_METADATA_BYTES",
    "MAX_GRAPH_DEPTH",
    "CopyHooks",
    "CopyOptions",
    "CopyResult",
    "PlanStep",
    "SkipNode",
    "TagResult",
    "copy",
    "copy_graph",
    "copy_tags",
    "plan",
]

# Matches dockerd's and containerd's default of concurrent transfers, and oras's.
DEFAULT_CONCURRENCY = 3
# oras, containerd and containers/image all refuse manifests above 4 MiB.
DEFAULT_MAX_METADATA_BYTES = 4 * 1024 * 1024
# Real images nest two or three levels; anything deeper is malformed or hostile.
MAX_GRAPH_DEPTH = 64

T = TypeVar("T")
Hook = Callable[[Descriptor], None]


class SkipNode(Exception):
    """Raise from ``pre_copy`` to tell the engine the node is already taken care of."""


@dataclass(frozen=True, slots=True)
class CopyHooks:
    """Hold the callbacks the engine calls as it goes; a ``None`` hook is never called.

    ``pre_copy`` and ``post_copy`` bracket a node whose bytes are transferred; ``on_mounted`` fires
    instead of both when a blob is mounted; ``on_copy_skipped`` fires for a node that already
    exists at the destination (its subtree is not visited); ``on_deduplicated`` fires for a second
    occurrence of a digest that another descriptor of the graph already handled.
    ``on_progress`` receives the bytes of a blob read from the source so far in the current
    attempt (it starts again from zero when a transfer is retried).
    """

    pre_copy: Hook | None = None
    post_copy: Hook | None = None
    on_copy_skipped: Hook | None = None
    on_mounted: Hook | None = None
    on_deduplicated: Hook | None = None
    on_progress: Callable[[Descriptor, int], None] | None = None


@dataclass(slots=True)
class CopyOptions:
    """Tune a copy. Zero values mean the documented defaults."""

    concurrency: int = DEFAULT_CONCURRENCY
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    # Candidate repositories (on the destination's registry) to mount a blob from, in order.
    mount_from: Callable[[Descriptor], Sequence[str]] | None = None
    # Told when a candidate turned out not to hold the blob (it answered 202, not 201).
    on_mount_missed: Callable[[Descriptor, str], None] | None = None
    find_successors: Callable[[Descriptor, bytes], list[Descriptor]] | None = None
    hooks: CopyHooks = field(default_factory=CopyHooks)
    # Re-walk and re-push every manifest instead of trusting that the destination has it (for
    # destinations that claim content they do not fully hold, such as pull-through caches).
    force: bool = False
    # Copy the referrers of the root (and of an index's manifests), transitively (-r).
    referrers: bool = False
    # Copy only these platforms of an index; two or more make a new index of just those.
    platforms: Sequence[Platform] = ()


@dataclass(frozen=True, slots=True)
class CopyResult:
    """Describe what a copy produced: the root and the tags now pointing at it."""

    root: Descriptor
    tags: tuple[str, ...]


def _call(hook: Hook | None, desc: Descriptor) -> None:
    if hook is not None:
        hook(desc)


async def copy(
    src: ReadOnlyTarget,
    src_reference: str,
    dst: Target,
    tags: Sequence[str] = (),
    options: CopyOptions | None = None,
    *,
    expected_digest: str | None = None,
) -> CopyResult:
    """Copy what ``src_reference`` names in ``src`` to ``dst``, then point ``tags`` at it.

    The source is resolved before anything is written, so an unknown tag leaves the destination
    untouched. ``expected_digest`` (a destination given by digest) must equal the root's digest.
    """
    copier = _Copier(src, dst, options or CopyOptions())
    root = await copier.resolve_root(src_reference, expected_digest)
    await copier.copy_root(root, tuple(tags))
    return CopyResult(root, tuple(tags))


@dataclass(frozen=True, slots=True)
class TagResult:
    """Say how copying one tag of ``--all-tags`` went: its root, or the error that stopped it."""

    tag: str
    root: Descriptor | None
    error: OrascpError | None = None


async def copy_tags(
    src: ReadOnlyTarget,
    dst: Target,
    tags: Sequence[str],
    options: CopyOptions | None = None,
) -> list[TagResult]:
    """Copy each tag of ``src`` to the same tag of ``dst``; a failed tag does not stop the rest.

    One copier serves every tag: connections, tokens, the manifest cache, existence answers and
    node deduplication are shared, so a layer common to all tags is copied once.
    """
    opts = options or CopyOptions()
    copier = _Copier(src, dst, opts)
    # At most this many tags resolve and walk at once; the copier's semaphore bounds requests.
    gate = asyncio.Semaphore(max(1, opts.concurrency or DEFAULT_CONCURRENCY))

    async def one(tag: str) -> TagResult:
        async with gate:
            try:
                root = await copier.resolve_root(tag, None)
                await copier.copy_root(root, (tag,))
            except OrascpError as exc:
                return TagResult(tag, None, exc)
            return TagResult(tag, root)

    return list(await asyncio.gather(*(one(tag) for tag in tags)))


@dataclass(frozen=True, slots=True)
class PlanStep:
    """Say what a copy would do with one node: copy it, mount it from a repository, or skip it."""

    desc: Descriptor
    action: Literal["copy", "mount", "exists"]
    mount_from: str | None = None


async def plan(
    src: ReadOnlyTarget,
    src_reference: str,
    dst: Target,
    options: CopyOptions | None = None,
    *,
    expected_digest: str | None = None,
) -> tuple[Descriptor, list[PlanStep]]:
    """Work out what :func:`copy` would do, node by node, writing nothing (``--dry-run``).

    It reads what the copy would read (manifests, existence checks, referrers) and asks each
    mount candidate whether it holds the blob, so "mount" means a mount would succeed.
    """
    copier = _Copier(src, dst, options or CopyOptions())
    root = await copier.resolve_root(src_reference, expected_digest)
    return root, await copier.plan(root)


async def copy_graph(
    src: ReadOnlyTarget,
    dst: Target,
    root: Descriptor,
    options: CopyOptions | None = None,
    *,
    root_content: bytes | None = None,
    tags: Sequence[str] = (),
) -> None:
    """Copy the graph rooted at ``root`` from ``src`` to ``dst`` and tag the root with ``tags``."""
    copier = _Copier(src, dst, options or CopyOptions())
    if root_content is not None:
        copier.manifests[root.digest] = root_content
    await copier.copy_root(root, tuple(tags))


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Return the first real error of a task group, preferring it over cancellations."""
    fallback: BaseException | None = None
    for exc in group.exceptions:
        found = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if not isinstance(found, asyncio.CancelledError):
            return found
        fallback = fallback or found
    return fallback or group.exceptions[0]


_IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
_MISSING_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN"})


def _refers_to_missing(exc: CopyError) -> bool:
    """Tell whether the destination refused a manifest for content it does not hold."""
    cause = exc.cause
    return (
        exc.origin is Origin.DESTINATION
        and isinstance(cause, RegistryError)
        and not cause.codes.isdisjoint(_MISSING_CODES)
    )


def _as_source_error(op: str, exc: OrascpError) -> CopyError:
    return exc if isinstance(exc, CopyError) else CopyError(op, Origin.SOURCE, exc)


async def _attributed(
    chunks: AsyncIterator[bytes],
    desc: Descriptor,
    progress: Callable[[Descriptor, int], None] | None,
) -> AsyncIterator[bytes]:
    """Pass chunks through, reporting progress and labelling read errors as the source's."""
    done = 0
    try:
        async for chunk in chunks:
            if progress is not None:
                done += len(chunk)
                progress(desc, done)
            yield chunk
    except OrascpError as exc:
        raise _as_source_error("fetch", exc) from exc


class _Copier:
    """Carry the state of one copy: dedup futures, the manifest cache, the semaphore."""

    def __init__(self, src: ReadOnlyTarget, dst: Target, options: CopyOptions) -> None:
        self.src = src
        self.dst = dst
        self.opts = options
        self.hooks = options.hooks
        self.sem = asyncio.Semaphore(max(1, options.concurrency or DEFAULT_CONCURRENCY))
        self.max_metadata = options.max_metadata_bytes or DEFAULT_MAX_METADATA_BYTES
        self.find_successors = options.find_successors or default_successors
        self.manifests: dict[str, bytes] = {}
        self.nodes: dict[str, tuple[Descriptor, asyncio.Future[None]]] = {}
        # manifest digest -> digests of the children it is waiting for (for cycle detection)
        self.waits: dict[str, set[str]] = {}
        # What the destination said it holds, and the manifests already checked.
        self.known: dict[str, bool] = {}
        self.checked: set[str] = set()
        # Candidate repositories the destination's credentials may not read: one refusal is
        # enough to know the next blob would be refused too, so they are not tried again.
        self.refused: set[str] = set()
        # digest -> the source's referrers of it (listed once).
        self.referrers: dict[str, list[Descriptor]] = {}

    async def resolve_root(self, reference: str, expected_digest: str | None) -> Descriptor:
        """Resolve the source reference (then ``--platform``) to the root to copy."""
        src = self.src
        try:
            if isinstance(src, ReferenceFetcher):
                root, content = await src.fetch_reference(reference)
                self.manifests[root.digest] = content
            else:
                root = await src.resolve(reference)
        except OrascpError as exc:
            raise CopyError("resolve", Origin.SOURCE, exc) from exc
        if self.opts.platforms:
            root = await self.select_platforms(root)
        if expected_digest is not None and expected_digest != root.digest:
            raise CopyError(
                "push",
                Origin.DESTINATION,
                InvalidContentError(
                    f"destination digest {expected_digest} differs from the source's {root.digest}"
                ),
            )
        return root

    async def plan(self, root: Descriptor) -> list[PlanStep]:
        """Walk the graph (and referrers, with ``referrers``) as a copy would, writing nothing."""
        steps: list[PlanStep] = []
        planned: set[str] = set()

        async def walk(desc: Descriptor) -> None:
            if desc.digest in planned:
                return
            planned.add(desc.digest)
            if await self._exists(desc):
                steps.append(PlanStep(desc, "exists"))
                return
            if not is_manifest(desc.media_type):
                source = await self._mountable_from(desc)
                steps.append(PlanStep(desc, "mount", source) if source else PlanStep(desc, "copy"))
                return
            _, children = await self._children(desc)
            await asyncio.gather(*(walk(child) for child in children))
            steps.append(PlanStep(desc, "copy"))

        async def plan_root(desc: Descriptor) -> None:
            if not await self._exists(desc):
                await self._check_graph(desc, ())  # refuses cycles and malformed manifests
            await walk(desc)

        try:
            await plan_root(root)
            if self.opts.referrers:
                await self.for_each_referrer(root, plan_root)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return steps

    async def _mountable_from(self, desc: Descriptor) -> str | None:
        """Return the first candidate repository a mount of ``desc`` would succeed from."""
        dst = self.dst
        if not isinstance(dst, MountChecker):
            return None
        for repository in self._candidates(desc):
            async with self.sem:
                if await self._dst("check", dst.mountable(desc, repository)):
                    return repository
        return None

    async def copy_root(
        self, root: Descriptor, tags: tuple[str, ...], *, with_referrers: bool = True
    ) -> None:
        """Copy the graph of ``root``, tag it, then copy its referrers if asked to."""
        if self.opts.referrers and with_referrers and isinstance(self.src, ReferrerLister):
            # Asked before anything is written: a source that cannot list referrers (say,
            # --from-distribution-spec v1.1-referrers-api against a registry without the API)
            # fails the copy while the destination is untouched.
            await self._referrers_of(root)
        await self.run(root, tags)
        if not tags:
            # An untagged root is still an entry point where the target keeps a list of them
            # (an OCI layout's index.json); elsewhere this is a no-op.
            await self.tag_untagged(root)
        if self.opts.referrers and with_referrers:
            await self.copy_referrers(root)

    # -- platforms ----------------------------------------------------------------------------

    async def select_platforms(self, root: Descriptor) -> Descriptor:
        """Return the root to copy for ``--platform``: one manifest, or a new, smaller index.

        From an index, the first manifest matching each platform is kept; with one platform
        that manifest is the root, with several a new index lists just them (annotations and
        all). A single manifest is copied only if its config says it is for a wanted platform.
        """
        wanted = self.opts.platforms
        content = await self._manifest(root)
        if root.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
            try:
                selected = platform.select(content, root.media_type, wanted)
            except OrascpError as exc:
                raise _as_source_error("select", exc) from exc
            if len(selected) == 1:
                # One manifest (also from two spellings of one platform): copy it as it is.
                return selected[0]
            index = load_json(content)
            index["manifests"] = [desc.to_json() for desc in selected]
            new = json.dumps(index, separators=(",", ":")).encode()
            desc = Descriptor(root.media_type, compute_digest(new), len(new))
            self.manifests[desc.digest] = new
            return desc
        found = await self._manifest_platform(root, content)
        if not any(platform.matches(w, found) for w in wanted):
            names = ", ".join(str(w) for w in wanted)
            raise _as_source_error(
                "select",
                NotFoundError(
                    f"{root.digest} is an image for {found}, not for {names}",
                    hint="leave out --platform to copy it, or name the image index instead",
                ),
            )
        return root

    async def _manifest_platform(self, root: Descriptor, content: bytes) -> Platform:
        """Read the platform of a single image from its config."""
        try:
            obj = load_json(content)
            config = Descriptor.from_json(obj.get("config")) if isinstance(obj, dict) else None
        except (ValueError, OrascpError):
            config = None
        found = None
        if config is not None and config.media_type in _IMAGE_CONFIG_TYPES:
            config_bytes = await self._read_small(config, "config")
            try:
                found = platform.config_platform(config_bytes)
            except OrascpError as exc:
                raise _as_source_error("select", exc) from exc
        if found is None:
            raise _as_source_error(
                "select",
                UnsupportedError(
                    f"{root.digest} names no platform (it is not an image index, nor an image"
                    " whose config names one)",
                    hint="leave out --platform",
                ),
            )
        return found

    # -- referrers ----------------------------------------------------------------------------

    async def copy_referrers(self, root: Descriptor) -> None:
        """Copy every manifest that refers to ``root``, transitively, each as its own root.

        For an index, the referrers of each of its manifests are copied too, even when the index
        itself has none. A referrer is copied after what it refers to, so a destination never
        lists a signature whose image is missing.
        """
        dst = self.dst

        async def copy_referrer(desc: Descriptor) -> None:
            # for_each_referrer is transitive already: each referrer is copied alone.
            await self.copy_root(desc, (), with_referrers=False)
            if isinstance(dst, ReferrerIndexer) and self.known.get(desc.digest):
                # It was there already: an earlier copy may have stopped before listing it.
                content = await self._manifest(desc)
                await self._dst("push", dst.list_referrer(desc, content))

        await self.for_each_referrer(root, copy_referrer)

    async def for_each_referrer(
        self, root: Descriptor, action: Callable[[Descriptor], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``action`` on each referrer of ``root`` (and of an index's manifests), level by
        level, transitively, each referrer once."""
        if not isinstance(self.src, ReferrerLister):
            return
        visited = {root.digest}
        frontier = [root, *await self._child_manifests(root, visited)]
        while frontier:
            found: list[Descriptor] = []
            for listed in await asyncio.gather(*(self._referrers_of(d) for d in frontier)):
                for desc in listed:
                    if desc.digest not in visited:
                        visited.add(desc.digest)
                        found.append(desc.with_annotations(None))
            if found:
                async with asyncio.TaskGroup() as group:
                    for desc in found:
                        group.create_task(action(desc))
            frontier = list(found)
            for desc in found:
                frontier.extend(await self._child_manifests(desc, visited))

    async def _referrers_of(self, desc: Descriptor) -> list[Descriptor]:
        """List the source's referrers of ``desc``, asking the source once per digest."""
        cached = self.referrers.get(desc.digest)
        if cached is not None:
            return cached
        assert isinstance(self.src, ReferrerLister)
        try:
            async with self.sem:
                found = await self.src.referrers(desc)
        except OrascpError as exc:
            raise _as_source_error("referrers", exc) from exc
        self.referrers[desc.digest] = found
        return found

    async def _child_manifests(self, desc: Descriptor, visited: set[str]) -> list[Descriptor]:
        """Return the manifests an index lists that are not visited yet, marking them."""
        if desc.media_type not in (OCI_INDEX, DOCKER_MANIFEST_LIST):
            return []
        _, children = await self._children(desc)
        out = [c for c in children if is_manifest(c.media_type) and c.digest not in visited]
        visited.update(c.digest for c in out)
        return out

    async def run(self, root: Descriptor, tags: tuple[str, ...]) -> None:
        try:
            if not await self._exists(root):
                # Read and check every manifest of the graph before writing anything: a
                # malformed manifest deep in an index must not leave half a copy behind.
                await self._check_graph(root, ())
            await self._visit(root, (), tags)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None

    async def _exists(self, desc: Descriptor) -> bool:
        """Ask the destination whether it holds ``desc``, once per node (``--force`` aside)."""
        known = self.known.get(desc.digest)
        if known is not None:
            return known
        if self.opts.force and is_manifest(desc.media_type):
            exists = False
        else:
            async with self.sem:
                exists = await self._dst("exists", self.dst.exists(desc))
        self.known[desc.digest] = exists
        return exists

    async def _check_graph(self, desc: Descriptor, path: tuple[str, ...]) -> None:
        """Fetch and parse every manifest under ``desc`` that the destination lacks.

        The manifests are cached for the copy, and the existence answers too, so this costs no
        request the copy would not make anyway.
        """
        if not is_manifest(desc.media_type) or desc.digest in self.checked:
            return
        if path and await self._exists(desc):
            return  # skipped with its subtree by the copy: nothing in it will be written
        if desc.digest in path:
            raise _as_source_error(
                "walk", InvalidContentError(f"{desc.digest} refers back to itself (a cycle)")
            )
        if len(path) >= MAX_GRAPH_DEPTH:
            raise _as_source_error(
                "walk", InvalidContentError(f"the graph is nested deeper than {MAX_GRAPH_DEPTH}")
            )
        self.checked.add(desc.digest)
        _, children = await self._children(desc)
        if isinstance(self.src, LocalChecker):
            for child in children:
                if not is_manifest(child.media_type):
                    try:
                        self.src.check(child)
                    except OrascpError as exc:
                        raise _as_source_error("fetch", exc) from exc
        manifests = [c for c in children if is_manifest(c.media_type)]
        if manifests:
            async with asyncio.TaskGroup() as group:
                for child in manifests:
                    group.create_task(self._check_graph(child, (*path, desc.digest)))

    def _add_waits(self, parent: Descriptor, children: list[Descriptor]) -> None:
        """Record that ``parent`` waits for ``children``, refusing a wait that closes a cycle.

        Verified content cannot form a cycle (a digest would have to contain itself), but a
        custom ``find_successors`` can; two nodes waiting on each other would hang forever.
        """
        waits = self.waits.setdefault(parent.digest, set())
        for child in children:
            if self._reaches(child.digest, parent.digest):
                raise _as_source_error(
                    "walk",
                    InvalidContentError(f"{parent.digest} refers back to itself (a cycle)"),
                )
            waits.add(child.digest)

    def _reaches(self, start: str, target: str) -> bool:
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(self.waits.get(node, ()))
        return False

    async def tag_untagged(self, root: Descriptor) -> None:
        await self._dst("tag", self.dst.tag(root, []))

    # -- graph walk -------------------------------------------------------------------------

    async def _visit(
        self, desc: Descriptor, path: tuple[str, ...], tags: tuple[str, ...] = ()
    ) -> None:
        if len(path) >= MAX_GRAPH_DEPTH:
            raise _as_source_error(
                "walk", InvalidContentError(f"the graph is nested deeper than {MAX_GRAPH_DEPTH}")
            )
        seen = self.nodes.get(desc.digest)
        if seen is not None:
            owner, future = seen
            if owner.size != desc.size:
                raise _as_source_error(
                    "walk",
                    InvalidContentError(
                        f"{desc.digest} is listed with sizes {owner.size} and {desc.size}"
                    ),
                )
            # Shielded: cancelling one waiter must not cancel the copy another task owns.
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not future.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The owner was cancelled because its own part of the copy failed (another tag
                # of --all-tags, say), not this one: a CancelledError here would make this
                # manifest's task group carry on as if the node were copied. Copy it instead.
                if self.nodes.get(desc.digest) is seen:
                    del self.nodes[desc.digest]
                await self._visit(desc, path, tags)
                return
            if owner is not desc:
                _call(self.hooks.on_deduplicated, desc)
            return
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.nodes[desc.digest] = (desc, mine)
        try:
            await self._copy_node(desc, path, tags)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                mine.cancel()
            else:
                mine.set_exception(exc)
                mine.exception()  # mark as retrieved: the owner reports it, not the waiters
            raise
        mine.set_result(None)

    async def _copy_node(
        self, desc: Descriptor, path: tuple[str, ...], tags: tuple[str, ...]
    ) -> None:
        if await self._exists(desc):
            _call(self.hooks.on_copy_skipped, desc)
            if tags:
                await self._tag(desc, tags, pushed_with=None)
            return
        if not is_manifest(desc.media_type):
            async with self.sem:
                await self._copy_blob(desc)
            return
        content, children = await self._children(desc)
        if children:
            self._add_waits(desc, children)
            child_path = (*path, desc.digest)
            try:
                async with asyncio.TaskGroup() as group:
                    for child in children:
                        group.create_task(self._visit(child, child_path))
            finally:
                del self.waits[desc.digest]
        pushed_with = await self._push_healing(desc, content, children, tags[0] if tags else None)
        if tags:
            await self._tag(desc, tags, pushed_with=pushed_with)

    async def _push_healing(
        self, desc: Descriptor, content: bytes, children: list[Descriptor], tag: str | None
    ) -> str | None:
        """Push a manifest; if the destination says a child is missing, push them again once.

        A child can look present and not be (an interrupted earlier copy, a registry's garbage
        collection in between, a pull-through cache): the registry then refuses the parent
        with MANIFEST_BLOB_UNKNOWN or the like, and re-pushing the children mends it.
        """
        try:
            async with self.sem:
                return await self._push_manifest(desc, content, tag)
        except CopyError as exc:
            if not _refers_to_missing(exc):
                raise
        async with asyncio.TaskGroup() as group:
            for child in children:
                group.create_task(self._repush(child))
        async with self.sem:
            return await self._push_manifest(desc, content, tag)

    async def _repush(self, desc: Descriptor) -> None:
        """Push a child again during self-healing (blobs only if really missing)."""
        if not is_manifest(desc.media_type):
            async with self.sem:
                if not await self._dst("exists", self.dst.exists(desc)):
                    await self._copy_blob(desc)
            return
        content, children = await self._children(desc)
        await self._push_healing(desc, content, children, None)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a transfer, again from the start if it fails in a way worth retrying.

        Network and server trouble is retried a few times with backoff; bad bytes (a digest or
        size mismatch) once, in case they were damaged on the way, then the copy fails.
        """
        verification_retried = False
        for number in range(retry.MAX_TRANSFER_ATTEMPTS):
            try:
                return await attempt()
            except CopyError as exc:
                if number == retry.MAX_TRANSFER_ATTEMPTS - 1 or exc.cause.exhausted:
                    raise
                if isinstance(exc.cause, VerificationError):
                    if verification_retried:
                        raise
                    verification_retried = True
                elif not retry.is_retryable(exc.cause):
                    raise
            await asyncio.sleep(retry.backoff(number))
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- source side ------------------------------------------------------------------------

    async def _children(self, desc: Descriptor) -> tuple[bytes, list[Descriptor]]:
        """Return a manifest's bytes (fetched once) and the descriptors it points at."""
        content = await self._manifest(desc)
        try:
            return content, self.find_successors(desc, content)
        except OrascpError as exc:
            raise _as_source_error("parse", exc) from exc

    async def _manifest(self, desc: Descriptor) -> bytes:
        """Return a manifest's verified bytes, fetching them from the source only once."""
        cached = self.manifests.get(desc.digest)
        if cached is not None:
            return cached
        content = await self._read_small(desc, "manifest")
        self.manifests[desc.digest] = content
        return content

    async def _read_small(self, desc: Descriptor, what: str) -> bytes:
        """Fetch and verify small content (a manifest, a config) within the metadata limit."""
        if desc.size > self.max_metadata:
            raise _as_source_error(
                "fetch",
                SizeLimitError(
                    f"{what} {desc.digest} is {desc.size} bytes, above the"
                    f" {self.max_metadata}-byte limit for {what}s"
                ),
            )

        async def fetch() -> bytes:
            try:
                async with self.src.fetch(desc) as chunks:
                    # verified() stops at desc.size, so a lying source cannot make this grow.
                    return b"".join([chunk async for chunk in verified(chunks, desc)])
            except OrascpError as exc:
                raise _as_source_error("fetch", exc) from exc

        async with self.sem:
            return await self._with_retries(fetch)

    @asynccontextmanager
    async def _open_source(self, desc: Descriptor) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            stream = self.src.fetch(desc)
            chunks = await stream.__aenter__()
        except OrascpError as exc:
            raise _as_source_error("fetch", exc) from exc
        try:
            yield _attributed(chunks, desc, self.hooks.on_progress)
        except BaseException as exc:
            if not await stream.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await stream.__aexit__(None, None, None)

    # -- destination side -------------------------------------------------------------------

    async def _dst(self, op: str, call: Coroutine[Any, Any, T]) -> T:
        """Await a destination call, attributing its errors to the right side."""
        try:
            return await call
        except CopyError:
            raise
        except VerificationError as exc:
            # A target verifies what it is given; bad bytes came from the source.
            raise CopyError("fetch", Origin.SOURCE, exc) from exc
        except OrascpError as exc:
            raise CopyError(op, Origin.DESTINATION, exc) from exc

    def _candidates(self, desc: Descriptor) -> list[str]:
        if not isinstance(self.dst, Mounter) or self.opts.mount_from is None:
            return []
        return [c for c in self.opts.mount_from(desc) if c not in self.refused]

    async def _copy_blob(self, desc: Descriptor) -> None:
        candidates = self._candidates(desc)
        if candidates:
            assert isinstance(self.dst, Mounter)
            outcome = await self._mount(self.dst, desc, candidates)
            if outcome == "done":
                return
            if outcome == "upload-failed":
                # The bytes failed on their way into the mount's upload session (which was
                # cancelled); send them again the ordinary way, already announced.
                await self._transfer(desc, announce=False)
                return
        await self._transfer(desc)

    async def _mount(
        self, dst: Mounter, desc: Descriptor, candidates: list[str]
    ) -> Literal["done", "not-mounted", "upload-failed"]:
        """Try each candidate in order; say whether the blob is now at the destination.

        A candidate that opens an upload session instead (202) does not hold the blob: its
        session is cancelled, except the last one's, which receives the upload.
        """
        fell_back = False

        def fallback() -> FetchStream:
            # Called by the destination only on the last candidate's 202: the bytes go into
            # the upload session that answer opened, and this becomes an ordinary copy.
            nonlocal fell_back
            fell_back = True
            _call(self.hooks.pre_copy, desc)
            return self._open_source(desc)

        for i, repository in enumerate(candidates):
            last = i == len(candidates) - 1
            try:
                outcome = await self._dst(
                    "mount", dst.mount(desc, repository, fallback if last else None)
                )
            except SkipNode:
                return "done"
            except CopyError as exc:
                if fell_back:
                    if isinstance(exc.cause, VerificationError) or retry.is_retryable(exc.cause):
                        return "upload-failed"
                    raise
                if not isinstance(exc.cause, AuthenticationError):
                    raise
                # The destination's credentials may not read this repository: try the next
                # candidate, and copy if there is none.
                self.refused.add(repository)
                continue
            if outcome is MountOutcome.MOUNTED:
                _call(self.hooks.on_mounted, desc)
                return "done"
            if self.opts.on_mount_missed is not None:
                self.opts.on_mount_missed(desc, repository)
            if outcome is MountOutcome.UPLOADED:
                _call(self.hooks.post_copy, desc)
                return "done"
        return "not-mounted"

    async def _transfer(self, desc: Descriptor, *, announce: bool = True) -> None:
        if announce:
            try:
                _call(self.hooks.pre_copy, desc)
            except SkipNode:
                return

        async def attempt() -> None:
            # Each attempt reads the source from the start into a new upload session.
            async with self._open_source(desc) as chunks:
                await self._dst("push", self.dst.push(desc, chunks))

        try:
            await self._with_retries(attempt)
        except CopyError as exc:
            if not isinstance(exc.cause, AlreadyExistsError):
                raise
        _call(self.hooks.post_copy, desc)

    async def _push_manifest(self, desc: Descriptor, content: bytes, tag: str | None) -> str | None:
        """Push a manifest, by ``tag`` in the same request when the destination can; return it."""
        try:
            _call(self.hooks.pre_copy, desc)
        except SkipNode:
            return None
        pushed_with = None
        if tag is not None and isinstance(self.dst, ReferencePusher):
            await self._dst("push", self.dst.push_reference(desc, content, tag))
            pushed_with = tag
        else:
            try:
                await self._dst("push", self.dst.push(desc, _one_chunk(content)))
            except CopyError as exc:
                if not isinstance(exc.cause, AlreadyExistsError):
                    raise
        _call(self.hooks.post_copy, desc)
        return pushed_with

    async def _tag(self, desc: Descriptor, tags: tuple[str, ...], pushed_with: str | None) -> None:
        remaining = [t for t in tags if t != pushed_with]
        if not remaining:
            return
        content = self.manifests.get(desc.digest)
        dst = self.dst
        if content is not None and isinstance(dst, ReferencePusher):
            # One PUT per tag from the bytes already in memory, as oras's TagN does.
            async def put(tag: str, content: bytes = content) -> None:
                async with self.sem:
                    await self._dst("tag", dst.push_reference(desc, content, tag))

            async with asyncio.TaskGroup() as group:
                for tag in remaining:
                    group.create_task(put(tag))
        else:
            async with self.sem:
                await self._dst("tag", self.dst.tag(desc, remaining))


async def _one_chunk(content: bytes) -> AsyncIterator[bytes]:
    yield content
