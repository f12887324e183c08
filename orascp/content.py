"""Declare the interfaces the copy engine works against.

As in oras-go, each capability is a small protocol; optional ones (:class:`Mounter`,
:class:`ReferenceFetcher`, :class:`ReferencePusher`) are discovered with ``isinstance`` at run
time, so a target only offers mounting when it can really do it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from orascp.descriptor import Descriptor

__all__ = [
    "FetchStream",
    "LocalChecker",
    "MountChecker",
    "Mounter",
    "MountOutcome",
    "ReadOnlyTarget",
    "ReferenceFetcher",
    "ReferencePusher",
    "ReferrerIndexer",
    "ReferrerLister",
    "TagLister",
    "Target",
]

FetchStream = AbstractAsyncContextManager[AsyncIterator[bytes]]
"""An open stream of content: entering it starts the transfer, leaving it releases it."""


@runtime_checkable
class ReadOnlyTarget(Protocol):
    """Read content by descriptor and resolve tags."""

    def fetch(self, desc: Descriptor) -> FetchStream:
        """Return a stream of the bytes of ``desc``; the caller verifies them."""
        ...

    async def exists(self, desc: Descriptor) -> bool:
        """Tell whether the target holds ``desc``."""
        ...

    async def resolve(self, reference: str) -> Descriptor:
        """Return the descriptor a tag or digest points at."""
        ...


@runtime_checkable
class Target(ReadOnlyTarget, Protocol):
    """Read and write content."""

    async def push(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Store the bytes of ``desc``, verifying their size and digest on the way.

        Raise :class:`~orascp.errors.AlreadyExistsError` if the content is already there.
        """
        ...

    async def tag(self, desc: Descriptor, references: list[str]) -> None:
        """Point each tag in ``references`` at the manifest ``desc``.

        With no references, record ``desc`` as an entry point where the target keeps such a list
        (an OCI layout's ``index.json``); targets without one do nothing.
        """
        ...


@runtime_checkable
class ReferenceFetcher(Protocol):
    """Resolve a reference and return the manifest bytes in one round trip."""

    async def fetch_reference(self, reference: str) -> tuple[Descriptor, bytes]:
        """Return the descriptor and the verified bytes of the manifest ``reference`` names."""
        ...


@runtime_checkable
class ReferencePusher(Protocol):
    """Push a manifest and tag it in one request."""

    async def push_reference(self, desc: Descriptor, content: bytes, reference: str) -> None:
        """Store manifest ``content`` and point ``reference`` at it."""
        ...


class MountOutcome(enum.Enum):
    """Say what a mount attempt did."""

    MOUNTED = "mounted"  # 201: the registry linked the blob, no bytes moved
    UPLOADED = "uploaded"  # 202, then the fallback's bytes went into the opened session
    NOT_MOUNTED = "not-mounted"  # 202 with no fallback: the session was cancelled


@runtime_checkable
class Mounter(Protocol):
    """Link a blob from another repository of the same registry."""

    async def mount(
        self,
        desc: Descriptor,
        from_repository: str,
        fallback: Callable[[], FetchStream] | None,
    ) -> MountOutcome:
        """Mount ``desc`` from ``from_repository``; on refusal upload ``fallback``'s bytes.

        When the registry opens an upload session instead of mounting, the bytes from
        ``fallback()`` are uploaded into that very session (no second POST). With no fallback
        the session is cancelled with DELETE and ``NOT_MOUNTED`` is returned.
        """
        ...


@runtime_checkable
class ReferrerIndexer(Protocol):
    """Keep a target's referrers listing right for a referrer it already holds."""

    async def list_referrer(self, desc: Descriptor, content: bytes) -> None:
        """Make sure the referrer ``desc`` (manifest ``content``) is listed under its subject."""
        ...


@runtime_checkable
class TagLister(Protocol):
    """List the tags a target holds."""

    async def tags(self) -> list[str]:
        """Return every tag, in the target's order."""
        ...


@runtime_checkable
class MountChecker(Protocol):
    """Tell, without writing, whether a blob could be mounted from another repository."""

    async def mountable(self, desc: Descriptor, from_repository: str) -> bool:
        """Return whether ``from_repository`` (same registry) holds ``desc`` and can be read."""
        ...


@runtime_checkable
class ReferrerLister(Protocol):
    """List the manifests that refer to a manifest through their ``subject``."""

    async def referrers(self, desc: Descriptor) -> list[Descriptor]:
        """Return the referrers of ``desc`` (descriptors with artifact type and annotations)."""
        ...


@runtime_checkable
class LocalChecker(Protocol):
    """Check cheaply, before a copy writes anything, that content can be read (local stores)."""

    def check(self, desc: Descriptor) -> None:
        """Raise if ``desc`` is missing, of the wrong size, or not safe to read."""
        ...
