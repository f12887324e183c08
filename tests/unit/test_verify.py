"""Check streamed content against its descriptor, failing before bad bytes are handed on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from orascp.descriptor import Descriptor, descriptor_for
from orascp.errors import DigestMismatchError, SizeMismatchError, VerificationError
from orascp.verify import check_bytes, verified

LAYER = "application/vnd.oci.image.layer.v1.tar"


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _consume(parts: list[bytes], desc: Descriptor) -> tuple[list[bytes], BaseException | None]:
    """Return the chunks ``verified`` yielded and the error it raised, if any."""

    async def run() -> tuple[list[bytes], BaseException | None]:
        seen: list[bytes] = []
        try:
            async for chunk in verified(_chunks(parts), desc):
                seen.append(chunk)
        except VerificationError as exc:
            return seen, exc
        return seen, None

    return asyncio.run(run())


def test_good_content_passes_unchanged() -> None:
    desc = descriptor_for(LAYER, b"hello world")
    seen, error = _consume([b"hello", b" ", b"world"], desc)
    assert error is None
    assert seen == [b"hello", b" ", b"world"]


def test_empty_chunks_are_ignored() -> None:
    desc = descriptor_for(LAYER, b"abc")
    seen, error = _consume([b"", b"abc", b""], desc)
    assert error is None
    assert b"".join(seen) == b"abc"


def test_sha512_content() -> None:
    data = b"sha512 content"
    desc = Descriptor(LAYER, "sha512:" + hashlib.sha512(data).hexdigest(), len(data))
    seen, error = _consume([data[:3], data[3:]], desc)
    assert error is None
    assert b"".join(seen) == data
    bad, error = _consume([b"x" * len(data)], desc)
    assert isinstance(error, DigestMismatchError)
    assert bad == []


def test_short_body_is_a_size_mismatch() -> None:
    desc = descriptor_for(LAYER, b"abcdef")
    seen, error = _consume([b"abc"], desc)
    assert isinstance(error, SizeMismatchError)
    assert "ended after 3 of 6 bytes" in str(error)
    assert b"".join(seen) == b"abc"


def test_long_body_is_refused_before_the_extra_chunk() -> None:
    desc = descriptor_for(LAYER, b"abcd")
    seen, error = _consume([b"abcd", b"e"], desc)
    assert isinstance(error, SizeMismatchError)
    assert seen == [b"abcd"]


def test_long_single_chunk_is_never_yielded() -> None:
    desc = descriptor_for(LAYER, b"abcd")
    seen, error = _consume([b"ab", b"cdef"], desc)
    assert isinstance(error, SizeMismatchError)
    assert seen == [b"ab"]


def test_wrong_bytes_raise_before_the_final_chunk() -> None:
    desc = descriptor_for(LAYER, b"abcd")
    seen, error = _consume([b"ab", b"ce"], desc)
    assert isinstance(error, DigestMismatchError)
    assert desc.digest in str(error)
    assert seen == [b"ab"]


def test_wrong_bytes_in_one_chunk_yield_nothing() -> None:
    desc = descriptor_for(LAYER, b"abcd")
    seen, error = _consume([b"abce"], desc)
    assert isinstance(error, DigestMismatchError)
    assert seen == []


def test_zero_byte_content() -> None:
    desc = descriptor_for(LAYER, b"")
    assert desc.size == 0
    seen, error = _consume([], desc)
    assert error is None
    assert seen == []
    seen, error = _consume([b""], desc)
    assert error is None
    assert seen == []


def test_zero_byte_descriptor_with_a_wrong_digest() -> None:
    desc = Descriptor(LAYER, "sha256:" + "0" * 64, 0)
    seen, error = _consume([], desc)
    assert isinstance(error, DigestMismatchError)
    assert seen == []


def test_zero_byte_descriptor_refuses_any_byte() -> None:
    desc = descriptor_for(LAYER, b"")
    seen, error = _consume([b"x"], desc)
    assert isinstance(error, SizeMismatchError)
    assert seen == []


def test_check_bytes() -> None:
    desc = descriptor_for(LAYER, b"abcd")
    assert check_bytes(desc, b"abcd") == b"abcd"
    with pytest.raises(SizeMismatchError):
        check_bytes(desc, b"abc")
    with pytest.raises(SizeMismatchError):
        check_bytes(desc, b"abcde")
    with pytest.raises(DigestMismatchError):
        check_bytes(desc, b"abce")
