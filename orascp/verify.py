"""Verify streamed content against its descriptor while it passes through.

Every byte a copy moves goes through :func:`verified`: the digest and the length are computed on
the way, and a mismatch raises *before the last chunk is handed on*, so neither an OCI layout nor a
registry upload ever receives the final byte of bad content (the registry's own ``?digest=`` check
is only a second line of defence).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from orascp.descriptor import Descriptor
from orascp.errors import DigestMismatchError, SizeMismatchError

__all__ = ["check_bytes", "verified"]


def _check_digest(desc: Descriptor, actual_hex: str) -> None:
    if actual_hex != desc.hex:
        raise DigestMismatchError(
            f"content of {desc.digest} has digest {desc.algorithm}:{actual_hex}: the bytes are not"
            " what the descriptor names"
        )


def check_bytes(desc: Descriptor, content: bytes) -> bytes:
    """Return ``content`` if its size and digest match ``desc``; raise otherwise."""
    if len(content) != desc.size:
        raise SizeMismatchError(
            f"content of {desc.digest} is {len(content)} bytes, expected {desc.size}"
        )
    _check_digest(desc, hashlib.new(desc.algorithm, content).hexdigest())
    return content


async def verified(chunks: AsyncIterable[bytes], desc: Descriptor) -> AsyncIterator[bytes]:
    """Yield ``chunks`` unchanged while checking their total size and digest against ``desc``."""
    hasher = hashlib.new(desc.algorithm)
    seen = 0
    async for chunk in chunks:
        if not chunk:
            continue
        seen += len(chunk)
        if seen > desc.size:
            raise SizeMismatchError(
                f"content of {desc.digest} is longer than the expected {desc.size} bytes"
            )
        hasher.update(chunk)
        if seen == desc.size:
            _check_digest(desc, hasher.hexdigest())
        yield chunk
    if seen < desc.size:
        raise SizeMismatchError(f"content of {desc.digest} ended after {seen} of {desc.size} bytes")
    if desc.size == 0:
        _check_digest(desc, hasher.hexdigest())
