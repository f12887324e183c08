"""Faults injected between orascp and real registries: retries, timeouts and integrity.

Each test puts a :class:`FaultProxy` in front of the source registry (and one in front of the
destination registry), seeds the source directly, tampers with chosen requests, runs the real
``orascp cp`` through the proxies, and checks three things: the outcome (exit status, error
line), how many times the tampered request was sent (proxy counts: a retry happened, or a 4xx was
not retried), and that the destination holds nothing corrupt (every blob and manifest the
destination repository links is fetched straight from the registry and hashed; a layout's files
are hashed; no upload session is left open without a cancel; nothing is left in ``ingest/``).

What orascp is expected to do (the retry behaviour):

- 408, 429, 500, 502, 503, 504, a reset or refused connection and a read timeout are retried,
  with exponential backoff and jitter (about 0.2 s doubling), at most 5 attempts per request;
  ``Retry-After`` (seconds or an HTTP date) is honoured; any other 4xx fails at once;
- a streamed upload that fails is not replayed: its session is cancelled with DELETE, and the
  blob is fetched again from the source into a new POST session;
- a digest or size mismatch is retried once from the source, then the copy fails (exit 1) with an
  error naming the digest, and nothing with that digest is committed;
- ``ORASCP_READ_TIMEOUT`` (seconds) bounds how long a body may stop flowing.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.artifacts import Artifact, Blob, fetch_manifest, layout_tags, push, sample_image
from tests.support.checks import assert_clean_layout, assert_layout_holds, assert_registry_holds
from tests.support.cli import Result, run_orascp
from tests.support.faultproxy import (
    Action,
    Corrupt,
    Delay,
    Drip,
    FaultProxy,
    Reset,
    ResetUpload,
    Resize,
    Respond,
    Truncate,
    assert_layout_sound,
    assert_registry_sound,
    assert_uploads_cancelled,
    upload_session,
)
from tests.support.registry import Registry

# Big enough that a body can be cut well inside it, small enough to copy in a blink.
LAYER_SIZE = 256 * 1024
CUT = 64 * 1024
# The attempts orascp makes for one request at most, and for one blob with a bad digest.
MAX_ATTEMPTS = 5
DIGEST_ATTEMPTS = 2
# With ORASCP_READ_TIMEOUT=1, five attempts and backoffs (0.2+0.4+0.8+1.6 s) take about 8 s.
BOUNDED = 30.0

Destination = str  # "registry" (the other registry, through its proxy) or "layout"


@pytest.fixture
def src_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault proxy in front of the source registry."""
    with FaultProxy(registry) as proxy:
        yield proxy


@pytest.fixture
def dst_proxy(other_registry: Registry) -> Iterator[FaultProxy]:
    """A fault proxy in front of the destination registry."""
    with FaultProxy(other_registry) as proxy:
        yield proxy


@dataclass
class Copy:
    """One copy through the proxies: what to run and where the result lands."""

    art: Artifact
    src: FaultProxy
    dst: FaultProxy
    dst_registry: Registry
    destination: Destination
    dst_repo: str
    out: Path
    src_ref: str

    @property
    def layer(self) -> Blob:
        """The blob the faults are aimed at: a layer (``blobs[0]`` is the config)."""
        return self.art.blobs[1]

    @property
    def args(self) -> list[str]:
        if self.destination == "layout":
            return ["cp", self.src_ref, "--to-oci-layout", f"{self.out}:v1"]
        return ["cp", self.src_ref, f"{self.dst.host}/{self.dst_repo}:v1"]

    def run(self, env: dict[str, str] | None = None) -> tuple[Result, float]:
        start = time.monotonic()
        res = run_orascp(*self.args, env=env)
        return res, time.monotonic() - start

    def blob_gets(self, blob: Blob) -> int:
        """Count the source GETs of ``blob`` (through the source proxy)."""
        return len(self.src.requests("GET", f"/blobs/{blob.digest}$"))

    def assert_copied(self) -> None:
        """Assert the destination holds the whole artifact, byte for byte, and nothing else."""
        if self.destination == "layout":
            assert_layout_holds(self.out, self.art)
            assert_clean_layout(self.out, self.art)
            assert layout_tags(self.out) == {"v1": self.art.digest}
            return
        reg = self.dst_registry
        assert_registry_holds(reg.host, self.dst_repo, self.art)
        assert fetch_manifest(reg.host, self.dst_repo, "v1")[1] == self.art.root.data
        assert_registry_sound(reg, self.dst_repo)
        assert_uploads_cancelled(reg, self.dst_repo)

    def assert_not_committed(self, blob: Blob, *, sessions: bool = True) -> None:
        """Assert ``blob`` is nowhere at the destination, nor the tag, and nothing is corrupt.

        With ``sessions``, also that every upload session left unfinished was cancelled.
        """
        if self.destination == "layout":
            index = assert_layout_sound(self.out)
            assert not (self.out / "blobs" / "sha256" / blob.digest.split(":")[1]).exists()
            if index is not None:
                assert "v1" not in layout_tags(self.out)
            return
        reg = self.dst_registry
        r = httpx.head(f"{reg.url}/v2/{self.dst_repo}/blobs/{blob.digest}", timeout=10)
        assert r.status_code == 404, f"{blob.digest} was committed at the destination"
        r = httpx.head(
            f"{reg.url}/v2/{self.dst_repo}/manifests/v1",
            headers={"Accept": self.art.root.media_type},
            timeout=10,
        )
        assert r.status_code == 404, "the tag was pushed although a blob failed"
        assert_registry_sound(reg, self.dst_repo)
        if sessions:
            assert_uploads_cancelled(reg, self.dst_repo)


MakeCopy = Callable[..., Copy]


@pytest.fixture
def make_copy(
    registry: Registry,
    other_registry: Registry,
    src_proxy: FaultProxy,
    dst_proxy: FaultProxy,
    repo: str,
    tmp_path: Path,
) -> MakeCopy:
    """Seed the source with a two-layer image and describe a copy of it through the proxies."""

    def make(destination: Destination = "registry") -> Copy:
        art = sample_image(repo, layers=2, size=LAYER_SIZE)
        push(registry.host, f"{repo}/src", art, "v1")
        return Copy(
            art=art,
            src=src_proxy,
            dst=dst_proxy,
            dst_registry=other_registry,
            destination=destination,
            dst_repo=f"{repo}/dst",
            out=tmp_path / "out",
            src_ref=f"{src_proxy.host}/{repo}/src:v1",
        )

    return make


def _error_text(res: Result) -> str:
    return "\n".join(res.error_lines)


# -- transient statuses --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("where", "status"),
    [
        # Each retryable status once, each at a different kind of request.
        ("source manifest GET", 503),
        ("source blob GET", 502),
        ("destination blob HEAD", 504),
        ("destination upload POST", 500),
        ("destination manifest PUT", 408),
        ("source blob GET", 429),  # without Retry-After: plain backoff
    ],
)
def test_transient_statuses_are_retried(make_copy: MakeCopy, where: str, status: int) -> None:
    c = make_copy()
    fault = Respond(status)
    if where == "source manifest GET":
        rule = c.src.add("GET", r"/manifests/v1$", fault, times=2)
    elif where == "source blob GET":
        rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", fault, times=2)
    elif where == "destination blob HEAD":
        rule = c.dst.add("HEAD", f"/blobs/{c.layer.digest}$", fault, times=2)
    elif where == "destination upload POST":
        rule = c.dst.add("POST", r"/blobs/uploads/$", fault, times=2)
    else:
        rule = c.dst.add("PUT", r"/manifests/", fault, times=2)

    res, _ = c.run()

    assert res.returncode == 0, res.describe()
    assert rule.faulted == 2
    if where == "destination upload POST":
        # Every blob opens one session; two more POSTs replace the two that were refused.
        assert rule.count == len(c.art.blobs) + 2
    else:
        assert rule.count == 3, f"{where}: {rule.count} requests, expected 2 refused + 1"
    c.assert_copied()


@pytest.mark.integration
def test_upload_put_refused_restarts_the_blob_in_a_new_session(make_copy: MakeCopy) -> None:
    """A 503 to a streamed PUT: cancel that session, fetch the blob again, upload anew."""
    c = make_copy()
    hex_ = c.layer.digest.split(":")[1]
    rule = c.dst.add("PUT", r"/blobs/uploads/", Respond(503), times=1, query=hex_)
    mark = c.dst_registry.mark()

    res, _ = c.run()

    assert res.returncode == 0, res.describe()
    assert rule.count == 2, "the blob was not uploaded again after the 503"
    assert c.blob_gets(c.layer) == 2, "the blob was not fetched again from the source"
    puts = c.dst.requests("PUT", r"/blobs/uploads/")
    refused = [e for e in puts if e.status == 503]
    assert len(refused) == 1
    session = upload_session(refused[0].target)
    deletes = [upload_session(e.target) for e in c.dst.requests("DELETE", r"/blobs/uploads/")]
    assert session in deletes, "the refused upload session was not cancelled"
    assert upload_session(next(e.target for e in puts if e.status == 201 and hex_ in e.target)) != (
        session
    ), "the refused session was used again"
    c.assert_copied()
    assert_uploads_cancelled(c.dst_registry, c.dst_repo, mark)


@pytest.mark.integration
def test_upload_reset_mid_body_restarts_the_blob_in_a_new_session(make_copy: MakeCopy) -> None:
    """A PUT cut half-way is never resumed nor replayed: DELETE, fetch again, new POST."""
    c = make_copy()
    hex_ = c.layer.digest.split(":")[1]
    rule = c.dst.add("PUT", r"/blobs/uploads/", ResetUpload(CUT), times=1, query=hex_)
    mark = c.dst_registry.mark()

    res, _ = c.run()

    assert res.returncode == 0, res.describe()
    assert rule.count == 2
    assert c.blob_gets(c.layer) == 2
    cut = next(e for e in c.dst.requests("PUT", r"/blobs/uploads/") if e.action == "ResetUpload")
    deletes = [upload_session(e.target) for e in c.dst.requests("DELETE", r"/blobs/uploads/")]
    assert upload_session(cut.target) in deletes, "the broken upload session was not cancelled"
    posts = c.dst.requests("POST", r"/blobs/uploads/$")
    assert len(posts) == len(c.art.blobs) + 1, "no new session was opened for the retry"
    c.assert_copied()
    assert_uploads_cancelled(c.dst_registry, c.dst_repo, mark)


@pytest.mark.integration
def test_upload_reset_on_every_attempt_gives_up_and_cancels_each_session(
    make_copy: MakeCopy,
) -> None:
    """Whole-blob retries are bounded, and every broken session is cancelled."""
    c = make_copy()
    hex_ = c.layer.digest.split(":")[1]
    rule = c.dst.add("PUT", r"/blobs/uploads/", ResetUpload(CUT), query=hex_)
    mark = c.dst_registry.mark()

    res, elapsed = c.run()

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert 2 <= rule.count <= MAX_ATTEMPTS, f"{rule.count} uploads of the blob"
    assert c.blob_gets(c.layer) == rule.count, "each upload attempt reads the source again"
    assert elapsed < BOUNDED
    cut = {
        upload_session(e.target)
        for e in c.dst.requests("PUT", r"/blobs/uploads/")
        if e.action == "ResetUpload"
    }
    assert len(cut) == rule.count, "an upload session was used twice"
    deletes = {upload_session(e.target) for e in c.dst.requests("DELETE", r"/blobs/uploads/")}
    assert cut <= deletes, f"sessions not cancelled: {cut - deletes}"
    c.assert_not_committed(c.layer)
    assert_uploads_cancelled(c.dst_registry, c.dst_repo, mark)


@pytest.mark.integration
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_storm_honours_retry_after(make_copy: MakeCopy, form: str) -> None:
    c = make_copy()
    if form == "seconds":
        retry_after: tuple[tuple[str, str | Callable[[], str]], ...] = (("Retry-After", "1"),)
        times = 2
    else:
        # An HTTP date two seconds ahead: whole seconds only, so the wait is between 1 and 2 s.
        retry_after = (
            ("Retry-After", lambda: email.utils.formatdate(time.time() + 2, usegmt=True)),
        )
        times = 1
    rule = c.src.add("GET", r"/manifests/v1$", Respond(429, retry_after), times=times)

    res, elapsed = c.run()

    assert res.returncode == 0, res.describe()
    assert rule.count == times + 1
    starts = [e.started for e in c.src.requests("GET", r"/manifests/v1$")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Without Retry-After the waits would be about 0.2, 0.4, 0.8 s.
    assert all(gap >= 0.9 for gap in gaps), f"Retry-After not honoured: waits {gaps}"
    assert elapsed < BOUNDED
    c.assert_copied()


@pytest.mark.integration
def test_endless_503_gives_up_after_five_attempts(make_copy: MakeCopy) -> None:
    c = make_copy("layout")
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", Respond(503))

    res, elapsed = c.run()

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert rule.count == MAX_ATTEMPTS, f"{rule.count} attempts, expected {MAX_ATTEMPTS}"
    assert elapsed < BOUNDED
    c.assert_not_committed(c.layer)


# -- client errors -------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "where", ["source manifest GET 404", "source blob GET 400", "destination manifest PUT 400"]
)
def test_client_errors_are_not_retried(make_copy: MakeCopy, where: str) -> None:
    c = make_copy()
    if where == "source manifest GET 404":
        rule = c.src.add("GET", r"/manifests/v1$", Respond(404, code="MANIFEST_UNKNOWN"))
    elif where == "source blob GET 400":
        rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", Respond(400, code="UNSUPPORTED"))
    else:
        rule = c.dst.add("PUT", r"/manifests/", Respond(400, code="MANIFEST_INVALID"))

    res, elapsed = c.run()

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert rule.count == 1, f"{where} was sent {rule.count} times: a 4xx must not be retried"
    assert elapsed < 10, "a 4xx must fail at once"
    if where == "source manifest GET 404":
        assert c.dst.requests() == [], "an unknown source tag must write nothing anywhere"
    if where == "destination manifest PUT 400":
        assert_registry_sound(c.dst_registry, c.dst_repo)
        assert_uploads_cancelled(c.dst_registry, c.dst_repo)
    else:
        # Whether a sibling's upload POST is in flight when the 400 lands is a matter of timing
        # here; test_a_failing_copy_cancels_the_sessions_it_opened makes it certain.
        c.assert_not_committed(c.layer, sessions=False)


@pytest.mark.integration
def test_a_failing_copy_cancels_the_sessions_it_opened(make_copy: MakeCopy) -> None:
    """Transfers cut short by another blob's failure cancel their upload sessions too.

    Every upload POST is answered a second late (the registry has opened the session by then),
    and the layer's GET fails with a 400 after 0.3 s: the other blobs' POSTs are in flight when
    the copy fails, and the sessions the registry opened for them must still be cancelled.
    """
    c = make_copy()
    c.dst.add("POST", r"/blobs/uploads/$", Delay(1.0))
    rule = c.src.add(
        "GET", f"/blobs/{c.layer.digest}$", Respond(400, code="UNSUPPORTED", delay=0.3)
    )
    mark = c.dst_registry.mark()

    res, _ = c.run()

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert rule.count == 1
    assert c.dst.requests("POST", r"/blobs/uploads/$"), "no upload was in flight: proves nothing"
    c.assert_not_committed(c.layer, sessions=False)
    assert_uploads_cancelled(c.dst_registry, c.dst_repo, mark)


# -- broken and slow bodies ----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["registry", "layout"])
@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("reset mid-body", Reset(CUT)),
        ("reset before the response", Reset(None)),
        ("truncated body", Truncate(CUT)),
    ],
)
def test_broken_source_body_is_fetched_again(
    make_copy: MakeCopy, destination: Destination, name: str, fault: Action
) -> None:
    c = make_copy(destination)
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", fault, times=1)

    res, _ = c.run()

    assert res.returncode == 0, f"{name}\n{res.describe()}"
    assert rule.count == 2, f"{name}: {rule.count} GETs, expected 1 broken + 1"
    c.assert_copied()


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["registry", "layout"])
def test_slow_drip_times_out_and_is_retried(make_copy: MakeCopy, destination: Destination) -> None:
    c = make_copy(destination)
    # One byte every 3 s after the first 64 KiB: the body stalls for longer than the timeout.
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", Drip(3.0, after=CUT), times=1)

    res, elapsed = c.run(env={"ORASCP_READ_TIMEOUT": "1"})

    assert res.returncode == 0, res.describe()
    assert rule.count == 2
    assert elapsed < BOUNDED
    c.assert_copied()


@pytest.mark.integration
def test_slow_drip_on_every_attempt_fails_in_bounded_time(make_copy: MakeCopy) -> None:
    c = make_copy("layout")
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", Drip(3.0, after=CUT))

    res, elapsed = c.run(env={"ORASCP_READ_TIMEOUT": "1"})

    assert res.returncode == 1, res.describe()
    assert len(res.error_lines) == 1, res.describe()
    assert 2 <= rule.count <= MAX_ATTEMPTS, f"{rule.count} attempts"
    assert elapsed < BOUNDED, f"gave up after {elapsed:.1f} s"
    c.assert_not_committed(c.layer)


# -- integrity -----------------------------------------------------------------------------------

MISMATCHES = [
    ("wrong byte", Corrupt(CUT + 7)),
    ("short body", Resize(-1)),
    ("extra bytes", Resize(+3)),
]


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["registry", "layout"])
@pytest.mark.parametrize(("name", "fault"), MISMATCHES)
def test_bad_content_on_every_attempt_fails_and_commits_nothing(
    make_copy: MakeCopy, destination: Destination, name: str, fault: Action
) -> None:
    c = make_copy(destination)
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", fault)
    mark = c.dst_registry.mark()

    res, elapsed = c.run()

    assert res.returncode == 1, f"{name}\n{res.describe()}"
    assert len(res.error_lines) == 1, res.describe()
    assert c.layer.digest in _error_text(res), f"the error does not name the digest:\n{res.stderr}"
    assert rule.count == DIGEST_ATTEMPTS, f"{name}: {rule.count} GETs, expected one retry"
    assert elapsed < BOUNDED
    c.assert_not_committed(c.layer)
    if destination == "registry":
        assert_uploads_cancelled(c.dst_registry, c.dst_repo, mark)
        uploads = c.dst.requests("PUT", r"/blobs/uploads/")
        assert not [
            e for e in uploads if e.status == 201 and c.layer.digest.split(":")[1] in e.target
        ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("destination", "name", "fault"),
    [
        ("registry", *MISMATCHES[0]),
        ("layout", *MISMATCHES[0]),
        ("registry", *MISMATCHES[1]),
        ("layout", *MISMATCHES[2]),
    ],
)
def test_bad_content_once_is_fetched_again(
    make_copy: MakeCopy, destination: Destination, name: str, fault: Action
) -> None:
    c = make_copy(destination)
    rule = c.src.add("GET", f"/blobs/{c.layer.digest}$", fault, times=1)

    res, _ = c.run()

    assert res.returncode == 0, f"{name}\n{res.describe()}"
    assert rule.count == DIGEST_ATTEMPTS
    c.assert_copied()
