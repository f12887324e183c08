"""Keep content in memory: a :class:`~orascp.content.Target` for tests and small graphs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager

from orascp.content import FetchStream
from orascp.descriptor import Descriptor, validate_digest
from orascp.errors import AlreadyExistsError, InvalidContentError, NotFoundError
from orascp.verify import verified

__all__ = ["MemoryStore"]

# Chunk size when replaying stored content, small enough to exercise streaming paths in tests.
_CHUNK = 64 * 1024


class MemoryStore:
    """Store content and tags in dictionaries."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.descriptors: dict[str, Descriptor] = {}
        self.tags: dict[str, Descriptor] = {}

    def add(self, desc: Descriptor, content: bytes) -> None:
        """Store ``content`` under ``desc`` without verification (for building test graphs)."""
        self.blobs[desc.digest] = content
        self.descriptors[desc.digest] = desc

    @asynccontextmanager
    async def _open(self, desc: Descriptor) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            content = self.blobs[desc.digest]
        except KeyError:
            raise NotFoundError(f"{desc.digest}: not found") from None

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(content), _CHUNK):
                yield content[start : start + _CHUNK]

        yield chunks()

    def fetch(self, desc: Descriptor) -> FetchStream:
        """Return a stream of the stored bytes of ``desc``."""
        return self._open(desc)

    async def exists(self, desc: Descriptor) -> bool:
        """Tell whether ``desc`` is stored."""
        return desc.digest in self.blobs

    async def resolve(self, reference: str) -> Descriptor:
        """Return the descriptor of a tag or a stored digest."""
        if reference in self.tags:
            return self.tags[reference]
        if reference in self.descriptors:
            return self.descriptors[reference]
        raise NotFoundError(f"{reference}: not found")

    async def push(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Store the verified bytes of ``desc``."""
        validate_digest(desc.digest)
        if desc.digest in self.blobs:
            raise AlreadyExistsError(f"{desc.digest}: already exists")
        content = b"".join([chunk async for chunk in verified(chunks, desc)])
        self.add(desc, content)

    async def tag(self, desc: Descriptor, references: list[str]) -> None:
        """Point each reference at ``desc``."""
        if desc.digest not in self.blobs:
            raise InvalidContentError(f"cannot tag {desc.digest}: it is not stored")
        for reference in references:
            self.tags[reference] = desc
