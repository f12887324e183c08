"""Interrupting a copy (SIGINT, SIGTERM, kill -9) and filling the disk: nothing half-written.

A copy of four 16 MiB layers runs through a :class:`FaultProxy` that drips two of the layers
(one byte every 0.2 s after their first MiB), so those two are surely in flight while the config
and the other layers complete. Once the proxy shows both drips started and the fast blobs are at
the destination, the process is signalled. Expected (see the README's exit codes):

- SIGINT exits 130 and SIGTERM 143 within a second or two; open upload sessions are cancelled
  (DELETE); an OCI layout keeps no temporary file (``ingest/`` holds no file, ``blobs/`` only
  complete verified blobs) and a valid ``index.json`` (or none, if it was never written);
- ``kill -9`` leaves the layout valid too (stray files only under ``ingest/``);
- running the same command again completes the copy and moves only what was missing.

A disk-full layout write (``RLIMIT_FSIZE`` in the child, with ``SIGXFSZ`` ignored, so writes
fail with EFBIG) fails with exit 1 and one ``Error:`` line, and leaves the old ``index.json``
intact, whether a blob or ``index.json`` itself was being written.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.artifacts import (
    Artifact,
    Blob,
    image,
    layer,
    layout_tags,
    push,
    sample_image,
    write_layout,
)
from tests.support.checks import assert_clean_layout, assert_layout_holds, assert_registry_holds
from tests.support.cli import Result, finish, run_orascp, start_orascp
from tests.support.faultproxy import (
    Delay,
    Drip,
    Entry,
    FaultProxy,
    Rule,
    assert_layout_sound,
    assert_registry_sound,
    assert_uploads_cancelled,
    open_uploads,
    upload_session,
)
from tests.support.registry import Registry

LAYERS = 4
LAYER_SIZE = 16 * 1024 * 1024
# The dripping layers send their first MiB at once, then one byte every DRIP seconds.
DRIP = 0.2
DRIP_AFTER = 1024 * 1024
# How long the fast part of the copy may take to get going on a loaded machine.
START_DEADLINE = 30.0
# The README: a signalled copy exits "within a second"; allow some slack for a loaded machine.
EXIT_WITHIN = 2.0
SOURCE = "test-interrupt/src"


@pytest.fixture(scope="module")
def big(registry: Registry) -> Artifact:
    """Push, once for the module, an image of four 16 MiB layers of random bytes."""
    rng = random.Random("test-interrupt")
    layers = [layer(rng.randbytes(LAYER_SIZE), f"big-{i}.bin") for i in range(LAYERS)]
    art = image(layers)
    push(registry.host, SOURCE, art, "v1")
    return art


@pytest.fixture
def src_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry) as proxy:
        yield proxy


@pytest.fixture
def dst_proxy(other_registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(other_registry) as proxy:
        yield proxy


def _split(art: Artifact) -> tuple[list[Blob], list[Blob]]:
    """Return (fast, slow): the config and first layers, and the last two layers."""
    return art.blobs[:-2], art.blobs[-2:]


def _hex(blob: Blob) -> str:
    return blob.digest.split(":", 1)[1]


def _drip(proxy: FaultProxy, blobs: list[Blob]) -> list[Rule]:
    return [proxy.add("GET", f"/blobs/{b.digest}$", Drip(DRIP, after=DRIP_AFTER)) for b in blobs]


def _wait_mid_transfer(
    proxy: FaultProxy, proc: subprocess.Popen[str], predicate: Callable[[], bool], what: str
) -> None:
    """Wait until ``predicate`` holds; fail (with orascp's output) if orascp exits first.

    The predicate is checked on every proxy event, and at least every 0.1 s.
    """
    proxy.wait_for(lambda: proc.poll() is not None or predicate(), START_DEADLINE, what)
    if proc.poll() is not None:
        res = finish(proc)
        raise AssertionError(f"orascp exited before {what}\n{res.describe()}")


def _signal_and_time(proc: subprocess.Popen[str], sig: int) -> tuple[Result, float]:
    """Send ``sig``; return orascp's result and how long it took to exit."""
    start = time.monotonic()
    proc.send_signal(sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    elapsed = time.monotonic() - start
    return finish(proc, timeout=5), elapsed


def _fetched(proxy: FaultProxy, since: int) -> list[str]:
    """Return the digests of the blobs GET through ``proxy`` since a mark, in order."""
    out = []
    for entry in proxy.requests()[since:]:
        if entry.method == "GET" and "/blobs/sha256:" in entry.path:
            out.append(entry.path.rsplit("/", 1)[1])
    return out


def _layout_blobs(out: Path) -> set[str]:
    directory = out / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in directory.iterdir()} if directory.is_dir() else set()


def _ingest_files(out: Path) -> list[Path]:
    ingest = out / "ingest"
    return [p for p in ingest.iterdir() if p.is_file()] if ingest.is_dir() else []


def _start_layout_copy(
    big: Artifact, src_proxy: FaultProxy, out: Path
) -> tuple[list[str], subprocess.Popen[str]]:
    fast, slow = _split(big)
    rules = _drip(src_proxy, slow)
    args = ["cp", f"{src_proxy.host}/{SOURCE}:v1", "--to-oci-layout", f"{out}:v1"]
    proc = start_orascp(*args)

    def mid_transfer() -> bool:
        return (
            all(r.dripping >= 1 for r in rules)
            and {b.digest for b in fast} <= _layout_blobs(out)
            and sum(1 for p in _ingest_files(out) if p.stat().st_size > 0) >= len(slow)
        )

    _wait_mid_transfer(
        src_proxy, proc, mid_transfer, "the fast blobs in blobs/ and the slow ones in ingest/"
    )
    return args, proc


def _assert_rerun_completes_layout(
    big: Artifact, src_proxy: FaultProxy, out: Path, args: list[str], *, stray_ingest: bool
) -> None:
    """Run the same command again without faults: it finishes, fetching only what was missing."""
    _fast, slow = _split(big)
    missing = {b.digest for b in big.blobs} - _layout_blobs(out)
    assert missing == {b.digest for b in slow}
    src_proxy.clear()
    mark = src_proxy.mark()

    rerun = run_orascp(*args)

    assert rerun.returncode == 0, rerun.describe()
    fetched = _fetched(src_proxy, mark)
    assert sorted(fetched) == sorted(missing), "the re-run fetched more (or less) than was missing"
    assert_layout_holds(out, big)
    assert layout_tags(out) == {"v1": big.digest}
    assert_layout_sound(out, stray_ingest=stray_ingest)
    if not stray_ingest:
        assert_clean_layout(out, big)


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_during_copy_to_layout(
    big: Artifact, src_proxy: FaultProxy, tmp_path: Path, sig: int, code: int
) -> None:
    out = tmp_path / "out"
    args, proc = _start_layout_copy(big, src_proxy, out)
    try:
        res, elapsed = _signal_and_time(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert res.returncode == code, res.describe()
    assert elapsed < EXIT_WITHIN, f"orascp took {elapsed:.2f} s to stop"
    assert len(res.error_lines) == 1, res.describe()
    index = assert_layout_sound(out)  # ingest/ empty, blobs/ verified, index.json valid
    if index is not None:
        assert "v1" not in layout_tags(out), "the tag was written before its content"
    fast, _slow = _split(big)
    assert _layout_blobs(out) == {b.digest for b in fast}

    _assert_rerun_completes_layout(big, src_proxy, out, args, stray_ingest=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_during_copy_to_registry(
    big: Artifact,
    src_proxy: FaultProxy,
    dst_proxy: FaultProxy,
    other_registry: Registry,
    repo: str,
    sig: int,
    code: int,
) -> None:
    fast, slow = _split(big)
    dst = f"{repo}/dst"
    rules = _drip(src_proxy, slow)
    args = ["cp", f"{src_proxy.host}/{SOURCE}:v1", f"{dst_proxy.host}/{dst}:v1"]
    reg_mark = other_registry.mark()
    proc = start_orascp(*args)

    def puts(blob: Blob) -> list[Entry]:
        return [e for e in dst_proxy.requests("PUT", r"/blobs/uploads/") if _hex(blob) in e.target]

    def mid_transfer() -> bool:
        return (
            all(r.dripping >= 1 for r in rules)
            and all(any(e.status == 201 for e in puts(b)) for b in fast)
            and all(any(not e.done for e in puts(b)) for b in slow)
        )

    try:
        _wait_mid_transfer(
            dst_proxy, proc, mid_transfer, "the fast blobs uploaded and the slow ones in flight"
        )
        in_flight = {upload_session(e.target) for b in slow for e in puts(b) if not e.done}
        res, elapsed = _signal_and_time(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert res.returncode == code, res.describe()
    assert elapsed < EXIT_WITHIN, f"orascp took {elapsed:.2f} s to stop"
    assert len(res.error_lines) == 1, res.describe()
    deleted = {
        upload_session(r.path) for r in other_registry.requests()[reg_mark:] if r.method == "DELETE"
    }
    assert None not in in_flight
    assert in_flight <= deleted, f"upload sessions not cancelled: {in_flight - deleted}"
    assert_uploads_cancelled(other_registry, dst, reg_mark)
    assert_registry_sound(other_registry, dst)
    with httpx.Client(base_url=other_registry.url, timeout=10) as http:
        for blob in big.blobs:
            status = http.head(f"/v2/{dst}/blobs/{blob.digest}").status_code
            assert status == (200 if blob in fast else 404), blob.digest
        tag = http.head(f"/v2/{dst}/manifests/v1", headers={"Accept": big.root.media_type})
        assert tag.status_code == 404, "the tag was pushed before its content"

    src_proxy.clear()
    src_mark, dst_mark = src_proxy.mark(), dst_proxy.mark()
    rerun = run_orascp(*args)

    assert rerun.returncode == 0, rerun.describe()
    assert sorted(_fetched(src_proxy, src_mark)) == sorted(b.digest for b in slow)
    committed = [
        e for e in dst_proxy.requests()[dst_mark:] if e.method == "PUT" and e.status == 201
    ]
    uploaded = sorted(b.digest for b in big.blobs for e in committed if _hex(b) in e.target)
    assert uploaded == sorted(b.digest for b in slow), "the re-run uploaded more than was missing"
    assert_registry_holds(other_registry.host, dst, big)
    assert_registry_sound(other_registry, dst)


@pytest.mark.integration
def test_sigint_while_upload_sessions_are_being_opened(
    registry: Registry,
    other_registry: Registry,
    dst_proxy: FaultProxy,
    repo: str,
) -> None:
    """The registry has opened sessions whose POST answers are still on their way: cancel them.

    Every upload POST is answered a second late; SIGINT arrives once the registry holds the
    sessions open, before orascp has seen their Location.
    """
    art = sample_image(repo, layers=2, size=64 * 1024)
    push(registry.host, f"{repo}/src", art, "v1")
    dst = f"{repo}/dst"
    dst_proxy.add("POST", r"/blobs/uploads/$", Delay(1.0))
    reg_mark = other_registry.mark()
    proc = start_orascp("cp", f"{registry.host}/{repo}/src:v1", f"{dst_proxy.host}/{dst}:v1")
    try:
        _wait_mid_transfer(
            dst_proxy,
            proc,
            lambda: len(open_uploads(other_registry, dst)) == len(art.blobs),
            "an upload session open for every blob",
        )
        res, elapsed = _signal_and_time(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert res.returncode == 130, res.describe()
    assert elapsed < EXIT_WITHIN, f"orascp took {elapsed:.2f} s to stop"
    assert_uploads_cancelled(other_registry, dst, reg_mark)
    assert open_uploads(other_registry, dst) == []


@pytest.mark.integration
def test_kill_9_during_copy_to_layout(big: Artifact, src_proxy: FaultProxy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args, proc = _start_layout_copy(big, src_proxy, out)
    proc.kill()
    res = finish(proc)

    assert res.returncode == -signal.SIGKILL
    # Partial files may stay in ingest/, and only there; blobs/ holds complete verified blobs.
    index = assert_layout_sound(out, stray_ingest=True)
    if index is not None:
        assert "v1" not in layout_tags(out)
    fast, _slow = _split(big)
    assert _layout_blobs(out) == {b.digest for b in fast}

    _assert_rerun_completes_layout(big, src_proxy, out, args, stray_ingest=True)


# -- disk full -----------------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Callable[[], None]:
    """Return a preexec_fn that caps file sizes: writes beyond ``limit`` fail with EFBIG."""

    def apply() -> None:
        # Without this, the kernel kills the process with SIGXFSZ instead of failing the write.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.integration
@pytest.mark.parametrize("failing", ["blob", "index.json"])
def test_disk_full_keeps_the_old_index(
    registry: Registry, repo: str, tmp_path: Path, failing: str
) -> None:
    out = tmp_path / "out"
    old = sample_image(f"{repo}-old", layers=1, size=1024)
    write_layout(out, old, "old")
    if failing == "blob":
        # A 1 MiB layer cannot be written under a 256 KiB limit.
        art = sample_image(repo, layers=2, size=1024 * 1024)
        limit = 256 * 1024
    else:
        # Small blobs pass, but index.json, with 400 tags, outgrows the 16 KiB limit.
        art = sample_image(repo, layers=2, size=1024)
        limit = 16 * 1024
        index = json.loads((out / "index.json").read_text())
        entry = index["manifests"][0]
        index["manifests"] += [
            {**entry, "annotations": {"org.opencontainers.image.ref.name": f"old-{i}"}}
            for i in range(400)
        ]
        (out / "index.json").write_text(json.dumps(index))
        assert (out / "index.json").stat().st_size > 2 * limit
    push(registry.host, f"{repo}/src", art, "v1")
    before = (out / "index.json").read_bytes()
    args = ["cp", f"{registry.host}/{repo}/src:v1", "--to-oci-layout", f"{out}:v1"]

    res = run_orascp(*args, preexec_fn=_file_size_limit(limit))

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert "Traceback" not in res.stderr
    if failing == "index.json":
        assert "index.json" in res.error_lines[0], res.describe()
    assert (out / "index.json").read_bytes() == before, "the old index.json was changed"
    assert_layout_sound(out)  # no temporary file anywhere, blobs/ verified
    if failing == "blob":
        big_layers = [b for b in art.blobs if len(b.data) > limit]
        assert big_layers
        for blob in big_layers:
            assert not (out / "blobs" / "sha256" / _hex(blob)).exists()

    rerun = run_orascp(*args)

    assert rerun.returncode == 0, rerun.describe()
    tags = layout_tags(out)
    assert tags["v1"] == art.digest
    assert tags["old"] == old.digest
    assert_layout_holds(out, art)
    assert_clean_layout(out, old, art)
