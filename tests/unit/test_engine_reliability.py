"""The engine's answers to faults: whole-blob retries, bad bytes, self-healing, --force."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from orascp import retry
from orascp.content import FetchStream
from orascp.descriptor import Descriptor
from orascp.engine import CopyOptions, copy
from orascp.errors import (
    CopyError,
    ErrorDetail,
    NetworkError,
    Origin,
    RegistryError,
    TLSError,
    VerificationError,
)
from orascp.memory import MemoryStore
from tests.unit.helpers import CountingStore, Graph

REAL_BACKOFF = retry.backoff


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # The waits themselves are not under test here (see test_backoff_*); keep the suite fast.
    monkeypatch.setattr(retry, "backoff", lambda attempt: 0.0)


class FlakySource(CountingStore):
    """A source whose blob streams fail (or lie) a given number of times."""

    def __init__(self, inner: MemoryStore, failures: dict[str, list[str]]) -> None:
        super().__init__(inner)
        self.failures = failures  # digest -> ["drop" | "corrupt", ...] consumed per fetch

    def fetch(self, desc: Descriptor) -> FetchStream:
        self.fetches[desc.digest] += 1
        plan = self.failures.get(desc.digest)
        mode = plan.pop(0) if plan else None
        return self._open(desc, mode)

    @asynccontextmanager
    async def _open(
        self, desc: Descriptor, mode: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        data = self.inner.blobs[desc.digest]

        async def chunks() -> AsyncIterator[bytes]:
            if mode == "drop":
                yield data[: len(data) // 2]
                raise NetworkError("connection reset by peer")
            if mode == "corrupt":
                yield bytes([data[0] ^ 0xFF]) + data[1:]
                return
            yield data

        yield chunks()


def _image() -> tuple[MemoryStore, Descriptor, Descriptor]:
    g = Graph()
    layer = g.blob(b"L" * 5000, title="layer")
    root = g.manifest([layer], seed="r")
    g.store.tags["v1"] = root
    return g.store, root, layer


def test_a_dropped_source_stream_is_fetched_again_and_the_copy_completes() -> None:
    store, _root, layer = _image()
    src = FlakySource(store, {layer.digest: ["drop", "drop"]})
    dst = CountingStore()
    asyncio.run(copy(src, "v1", dst, ["v1"]))
    assert src.fetches[layer.digest] == 3
    assert dst.inner.blobs[layer.digest] == store.blobs[layer.digest]


def test_persistent_network_failure_gives_up_after_the_attempt_limit() -> None:
    store, root, layer = _image()
    src = FlakySource(store, {layer.digest: ["drop"] * 10})
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        asyncio.run(copy(src, "v1", dst, ["v1"]))
    assert info.value.origin is Origin.SOURCE
    assert src.fetches[layer.digest] == retry.MAX_TRANSFER_ATTEMPTS
    assert root.digest not in dst.inner.blobs


def test_bad_bytes_are_fetched_again_once_then_succeed() -> None:
    store, _root, layer = _image()
    src = FlakySource(store, {layer.digest: ["corrupt"]})
    dst = CountingStore()
    asyncio.run(copy(src, "v1", dst, ["v1"]))
    assert src.fetches[layer.digest] == 2
    assert dst.inner.blobs[layer.digest] == store.blobs[layer.digest]


def test_bad_bytes_twice_fail_naming_the_digest_and_store_nothing_bad() -> None:
    store, root, layer = _image()
    src = FlakySource(store, {layer.digest: ["corrupt"] * 5})
    dst = CountingStore()
    with pytest.raises(CopyError) as info:
        asyncio.run(copy(src, "v1", dst, ["v1"]))
    assert isinstance(info.value.cause, VerificationError)
    assert layer.digest in str(info.value)
    assert src.fetches[layer.digest] == 2  # retried once, not more
    assert layer.digest not in dst.inner.blobs
    assert root.digest not in dst.inner.blobs


class ForgetfulDestination(CountingStore):
    """Claim a blob exists, then refuse the manifest that needs it until it is pushed."""

    def __init__(self, missing: Descriptor) -> None:
        super().__init__()
        self.missing = missing
        self.refusals = 0

    async def exists(self, desc: Descriptor) -> bool:
        self.exists_calls[desc.digest] += 1
        if desc.digest == self.missing.digest and self.refusals == 0:
            return True  # the lie a half-finished earlier copy or a pull-through cache tells
        return await self.inner.exists(desc)

    async def push(self, desc: Descriptor, chunks) -> None:  # type: ignore[no-untyped-def]
        if (
            desc.media_type.endswith("manifest.v1+json")
            and self.missing.digest not in self.inner.blobs
        ):
            self.refusals += 1
            async for _ in chunks:
                pass
            raise RegistryError(
                "PUT",
                "/v2/x/manifests/y",
                400,
                (ErrorDetail("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),),
            )
        await super().push(desc, chunks)


def test_a_manifest_refused_for_a_missing_child_pushes_its_children_again_once() -> None:
    store, root, layer = _image()
    src = CountingStore(store)
    dst = ForgetfulDestination(layer)
    asyncio.run(copy(src, "v1", dst, ["v1"]))
    assert dst.refusals == 1
    assert dst.inner.blobs[layer.digest] == store.blobs[layer.digest]
    assert dst.inner.tags["v1"] == root


def test_force_re_pushes_manifests_but_still_trusts_existing_blobs() -> None:
    store, root, layer = _image()
    dst = CountingStore()
    asyncio.run(copy(CountingStore(store), "v1", dst, ["v1"]))
    pushes_before = dst.pushes.copy()
    dst.exists_calls.clear()
    asyncio.run(copy(CountingStore(store), "v1", dst, ["v1"], CopyOptions(force=True)))
    assert dst.exists_calls[root.digest] == 0  # not trusted: not even asked
    assert dst.exists_calls[layer.digest] == 1  # blobs are still checked
    assert dst.pushes[layer.digest] == pushes_before[layer.digest]  # and not sent again


def test_is_retryable_classifies_errors() -> None:
    assert retry.is_retryable(NetworkError("reset"))
    assert not retry.is_retryable(TLSError("bad certificate"))
    assert retry.is_retryable(RegistryError("GET", "u", 503))
    assert retry.is_retryable(RegistryError("GET", "u", 429))
    assert not retry.is_retryable(RegistryError("GET", "u", 404))
    assert not retry.is_retryable(RegistryError("GET", "u", 400))


def test_retry_after_reads_seconds_and_dates_and_caps_them() -> None:
    assert retry.retry_after({"retry-after": "3"}) == 3.0
    assert retry.retry_after({"retry-after": "99999"}) == retry.MAX_RETRY_AFTER
    soon = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 5 <= (retry.retry_after({"retry-after": soon}) or 0) <= 10
    assert retry.retry_after({"retry-after": "soon-ish"}) is None
    assert retry.retry_after({}) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(8):
        ceiling = min(retry.MAX_DELAY, retry.BASE_DELAY * 2**attempt)
        samples = [REAL_BACKOFF(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
    assert len({round(REAL_BACKOFF(3), 6) for _ in range(20)}) > 1  # jittered
