"""The terminal display, the ``--format json`` record and the ``--debug`` trace, in process.

ProgressDisplay is drawn into a rich Console on a StringIO with a fixed size and a fake clock,
so every frame is exact; the trace is fed real httpx requests and responses, and its transport
runs over an httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import httpx
import jsonschema
import pytest
from rich.cells import cell_len
from rich.console import Console

from orascp.descriptor import OCI_MANIFEST, Descriptor
from orascp.display.record import SCHEMA_VERSION, Recorder, result_document
from orascp.display.tty import ProgressDisplay, format_size
from orascp.registry.trace import MAX_BODY, HttpTracer, TracingTransport, redact_url

MiB = 1024 * 1024
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
TITLE = "org.opencontainers.image.title"
SPINNER = re.compile("[\u2800-\u28ff]")  # the "dots" spinner is drawn with braille cells


def desc(n: int, size: int = 1000, title: str | None = None, media_type: str = LAYER) -> Descriptor:
    """Return a descriptor with a recognisable digest: ``n`` as two hex digits, repeated."""
    digest = "sha256:" + f"{n:02x}" * 32
    return Descriptor(media_type, digest, size, annotations={TITLE: title} if title else None)


def schema() -> dict[str, Any]:
    text = files("orascp").joinpath("schemas/cp-result.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_display(
    width: int = 120, height: int = 40, max_rows: int | None = None
) -> tuple[ProgressDisplay, Console, Clock]:
    console = Console(
        file=io.StringIO(),
        force_terminal=True,
        width=width,
        height=height,
        color_system=None,
        legacy_windows=False,
    )
    clock = Clock()
    return ProgressDisplay(console, max_rows=max_rows, clock=clock), console, clock


def frame(display: ProgressDisplay, console: Console) -> list[str]:
    """Return the lines of one printed frame (trailing spaces dropped)."""
    assert isinstance(console.file, io.StringIO)
    console.file.seek(0)
    console.file.truncate()
    console.print(display)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def row_of(lines: list[str], needle: str) -> str:
    found = [line for line in lines if needle in line]
    assert len(found) == 1, (needle, lines)
    return found[0]


# -- ProgressDisplay ---------------------------------------------------------------------------


def test_row_in_flight_shows_state_digest_title_bytes_speed_and_time() -> None:
    display, console, clock = make_display()
    layer = desc(0xAB, 30 * MiB, "big-layer.tar.gz")
    display.pre_copy(layer)
    clock.now += 4
    display.on_progress(layer, 12 * MiB)
    row = row_of(frame(display, console), "abababababab")
    assert SPINNER.match(row), row
    assert re.search(r"\bCopying abababababab big-layer\.tar\.gz\b", row), row
    assert "ababababababa" not in row  # the digest is cut to 12 hex characters
    assert "━" in row  # the bar
    assert re.search(r"12\.0 MiB/30\.0 MiB +3\.00 MiB/s +4\.0s$", row), row


def test_row_without_title_shows_media_type_and_moves_with_progress() -> None:
    display, console, clock = make_display(width=160)
    config = desc(0x12, 2048, media_type=CONFIG)
    display.pre_copy(config)
    clock.now += 0.5
    assert re.search(r"0 B/2\.00 KiB +0 B/s +0\.5s$", row_of(frame(display, console), CONFIG))
    display.on_progress(config, 1024)
    clock.now += 0.5
    row = row_of(frame(display, console), CONFIG)
    assert "Copying 121212121212 " + CONFIG in row
    assert re.search(r"1\.00 KiB/2\.00 KiB +1\.00 KiB/s +1\.0s$", row), row


def test_finished_rows_show_mark_state_name_and_full_digest() -> None:
    display, console, clock = make_display()
    copied, mounted, existing = desc(1, 3 * MiB, "a.tar"), desc(2, 10, "b.tar"), desc(3, 7)
    display.pre_copy(copied)
    clock.now += 1.5
    display.post_copy(copied)
    display.on_mounted(mounted)
    display.on_copy_skipped(existing)
    lines = frame(display, console)
    assert lines == [
        "✓ Copied  a.tar  3.00 MiB in 1.5s",
        f"  └─ {copied.digest}",
        "✓ Mounted b.tar",
        f"  └─ {mounted.digest}",
        f"✓ Exists  {LAYER}",
        f"  └─ {existing.digest}",
    ]
    assert not any("Copying" in line for line in lines)


def test_second_name_of_a_digest_is_shown_as_skipped_and_a_repeat_is_not() -> None:
    display, console, _ = make_display()
    first = desc(4, 100, "one.txt")
    display.pre_copy(first)
    display.post_copy(first)
    display.on_deduplicated(desc(4, 100, "one.txt"))  # same name: nothing new to say
    display.on_deduplicated(desc(4, 100, "two.txt"))
    lines = frame(display, console)
    assert [line for line in lines if not line.startswith("  └─")] == [
        "✓ Copied  one.txt  100 B in 0.0s",
        "- Skipped two.txt",
    ]


def test_progress_of_an_unknown_or_finished_blob_is_ignored() -> None:
    display, console, _ = make_display()
    blob = desc(5, 1000, "x")
    display.on_progress(blob, 10)  # never started
    assert frame(display, console) == []
    display.pre_copy(blob)
    display.post_copy(blob)
    display.on_progress(blob, 10)  # a late chunk callback
    assert frame(display, console)[0] == "✓ Copied  x  1000 B in 0.0s"


def test_only_newest_finished_rows_fit_above_rows_in_flight() -> None:
    # Height 12 leaves room for 9 lines: one row in flight, the "more done" line, then three
    # finished rows of two lines.
    display, console, _ = make_display(height=12)
    for n in range(10):
        display.on_mounted(desc(n, title=f"done-{n}"))
    display.pre_copy(desc(0x40, 5 * MiB, "busy"))
    lines = frame(display, console)
    assert lines[0] == "… 7 more done"
    shown = [m.group(1) for line in lines if (m := re.search(r"Mounted (done-\d+)", line))]
    assert shown == ["done-7", "done-8", "done-9"]
    assert "Copying" in lines[-1]
    assert "busy" in lines[-1]
    assert len(lines) < 12  # the whole frame fits: the live display never crops a row in flight


def test_max_rows_bounds_the_frame_whatever_the_height() -> None:
    display, console, _ = make_display(height=100, max_rows=5)
    for n in range(7):
        display.post_copy(desc(n, title=f"f{n}"))
    lines = frame(display, console)
    assert lines[0] == "… 5 more done"
    assert [line.split()[2] for line in lines[1:] if line.startswith("✓")] == ["f5", "f6"]


@pytest.mark.parametrize(("max_rows", "active"), [(4, 0), (5, 1), (6, 2)])
def test_frame_is_never_taller_than_max_rows(max_rows: int, active: int) -> None:
    display, console, _ = make_display(height=100, max_rows=max_rows)
    for n in range(10):
        display.post_copy(desc(n, title=f"f{n}"))
    for n in range(active):
        display.pre_copy(desc(0x70 + n, MiB, f"busy{n}"))
    assert len(frame(display, console)) <= max_rows


def test_rows_in_flight_are_never_hidden_for_finished_ones() -> None:
    display, console, _ = make_display(max_rows=4)
    for n in range(3):
        display.on_copy_skipped(desc(n, title=f"old{n}"))
    busy = [desc(0x50 + n, MiB, f"busy{n}") for n in range(4)]
    for d in busy:
        display.pre_copy(d)
    lines = frame(display, console)
    assert lines[0] == "… 3 more done"
    assert not any("old" in line for line in lines)
    for d in busy:
        assert "Copying " + d.hex[:12] in row_of(lines, d.title or "")


def test_a_finished_blob_leaves_the_rows_in_flight() -> None:
    display, console, _ = make_display()
    a, b = desc(0x61, MiB, "a"), desc(0x62, MiB, "b")
    display.pre_copy(a)
    display.pre_copy(b)
    display.post_copy(a)
    lines = frame(display, console)
    assert [line for line in lines if "Copying" in line] == [row_of(lines, "626262626262")]
    assert lines[0].startswith("✓ Copied  a")


@pytest.mark.parametrize(("done", "total"), [(12 * MiB, 30 * MiB), (1000 * MiB, 3 * 1024 * MiB)])
def test_narrow_terminal_keeps_every_column(done: int, total: int) -> None:
    display, console, clock = make_display(width=80)
    layer = desc(0xCD, total, "a-layer-with-a-long-name-that-cannot-fit-at-80-columns.tar.gz")
    display.pre_copy(layer)
    clock.now += 65
    display.on_progress(layer, done)
    lines = frame(display, console)
    row = row_of(lines, "cdcdcdcdcdcd")
    assert re.match(r"^\S Copying cdcdcdcdcdcd a-\S*… ", row), row  # only the name is cut
    sizes = f"{format_size(done)}/{format_size(total)}"
    assert re.search(re.escape(sizes) + r" +\S+ \S+/s +1m05s$", row), row
    assert all(cell_len(line) <= 80 for line in lines), lines
    display.post_copy(layer)
    lines = frame(display, console)
    assert lines[1] == f"  └─ {layer.digest}"  # the full digest still fits


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (10 * 1024, "10.0 KiB"),
        (100 * 1024, "100 KiB"),
        (12 * MiB, "12.0 MiB"),
        (MiB + MiB // 4, "1.25 MiB"),
        (5 * 1024**3, "5.00 GiB"),
        (2 * 1024**4, "2.00 TiB"),
        (2048 * 1024**4, "2048 TiB"),  # no unit above TiB
        (2.5 * MiB, "2.50 MiB"),  # speeds are floats
    ],
)
def test_format_size(size: float, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(("size", "text"), [(10239, "10.0 KiB"), (1048575, "1.00 MiB")])
def test_format_size_rounds_up_to_the_next_unit_with_three_digits(size: int, text: str) -> None:
    assert format_size(size) == text


# -- Recorder and the --format json document ---------------------------------------------------


def recorded_document(recorder: Recorder, root: Descriptor, tags: list[str]) -> dict[str, Any]:
    text = result_document(
        source={"type": "registry", "reference": "localhost:5000/src:v1"},
        destination={"type": "oci-layout", "reference": "out:v1"},
        root=root,
        tags=tags,
        recorder=recorder,
    )
    assert text.endswith("\n")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_recorder_actions_bytes_and_totals() -> None:
    recorder = Recorder()
    copied, mounted, existing = desc(1, 300, "a.tar"), desc(2, 500, "b.tar"), desc(3, 700)
    root = desc(9, 1234, media_type=OCI_MANIFEST)
    recorder.pre_copy(copied)  # a start is not a node
    recorder.on_progress(copied, 100)
    recorder.post_copy(copied)
    recorder.on_mounted(mounted)
    recorder.on_copy_skipped(existing)
    recorder.on_deduplicated(desc(1, 300, "a.tar"))  # same name: nothing
    recorder.on_deduplicated(desc(1, 300, "a-again.tar"))  # another name: skipped
    recorder.pre_copy(root)
    recorder.post_copy(root)

    doc = recorded_document(recorder, root, ["v1", "latest"])
    assert doc["nodes"] == [
        {
            "digest": copied.digest,
            "mediaType": LAYER,
            "size": 300,
            "action": "copied",
            "bytes": 300,
            "title": "a.tar",
        },
        {
            "digest": mounted.digest,
            "mediaType": LAYER,
            "size": 500,
            "action": "mounted",
            "bytes": 0,
            "title": "b.tar",
        },
        {
            "digest": existing.digest,
            "mediaType": LAYER,
            "size": 700,
            "action": "exists",
            "bytes": 0,
        },
        {
            "digest": copied.digest,
            "mediaType": LAYER,
            "size": 300,
            "action": "skipped",
            "bytes": 0,
            "title": "a-again.tar",
        },
        {
            "digest": root.digest,
            "mediaType": OCI_MANIFEST,
            "size": 1234,
            "action": "copied",
            "bytes": 1234,
        },
    ]
    assert doc["totals"] == {
        "nodes": 5,
        "copied": 2,
        "mounted": 1,
        "exists": 1,
        "skipped": 1,
        "bytes": 1534,
    }
    assert doc["schemaVersion"] == SCHEMA_VERSION == 1
    assert doc["root"] == {"mediaType": OCI_MANIFEST, "digest": root.digest, "size": 1234}
    assert doc["tags"] == ["v1", "latest"]
    assert doc["source"] == {"type": "registry", "reference": "localhost:5000/src:v1"}
    assert doc["destination"] == {"type": "oci-layout", "reference": "out:v1"}
    assert isinstance(doc["durationSeconds"], int | float)
    assert doc["durationSeconds"] >= 0
    jsonschema.Draft202012Validator(schema()).validate(doc)


def test_empty_record_is_a_valid_document() -> None:
    root = desc(7, 10, media_type=OCI_MANIFEST)
    doc = recorded_document(Recorder(), root, [])
    assert doc["nodes"] == []
    assert doc["totals"] == dict.fromkeys(
        ("nodes", "copied", "mounted", "exists", "skipped", "bytes"), 0
    )
    jsonschema.Draft202012Validator(schema()).validate(doc)


def test_schema_is_valid_draft_2020_12_and_documented() -> None:
    loaded = schema()
    jsonschema.Draft202012Validator.check_schema(loaded)
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert loaded["title"]
    assert loaded["description"]
    assert set(loaded["required"]) == {
        "schemaVersion",
        "source",
        "destination",
        "root",
        "tags",
        "nodes",
        "totals",
        "durationSeconds",
    }


def _valid_document() -> dict[str, Any]:
    recorder = Recorder()
    recorder.post_copy(desc(1, 300, "a.tar"))
    return recorded_document(recorder, desc(9, 1234, media_type=OCI_MANIFEST), ["v1"])


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set("schemaVersion", 2),
        _set("source.type", "directory"),
        _set("root.digest", "sha256:ABC"),
        _set("root.digest", "sha256:" + "a" * 63),
        _set("nodes.0.action", "moved"),
        _set("nodes.0.bytes", -1),
        _set("nodes.0.size", 1.5),
        _set("tags", ["v1", 2]),
        _set("durationSeconds", -0.1),
        _set("durationSeconds", "1s"),
        _drop("totals"),
        _drop("totals.skipped"),
        _drop("nodes.0.action"),
        _drop("destination.reference"),
    ],
)
def test_schema_rejects_documents_that_break_the_contract(
    change: Callable[[dict[str, Any]], None],
) -> None:
    doc = _valid_document()
    jsonschema.Draft202012Validator(schema()).validate(doc)
    change(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(doc)


def test_schema_accepts_fields_added_later() -> None:
    doc = _valid_document()
    doc["warnings"] = []
    doc["nodes"][0]["platform"] = {"os": "linux"}
    jsonschema.Draft202012Validator(schema()).validate(doc)


# -- trace redaction ---------------------------------------------------------------------------


def params(url: str) -> dict[str, str]:
    return dict(httpx.URL(url).params.multi_items())


def test_redact_url_hides_user_info_and_private_query_values() -> None:
    digest = "sha256:" + "ab" * 32
    url = (
        "https://alice:s3cret@reg.example:5000/v2/a/b/blobs/uploads/u1?_state=st4te&"
        f"digest={digest}&mount={digest}&from=team/app&n=10&last=v9&"
        "X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA%2F1&sig=xyz"
    )
    redacted = redact_url(url)
    for secret in ("alice", "s3cret", "st4te", "deadbeef", "AKIA", "xyz"):
        assert secret not in redacted, redacted
    parsed = httpx.URL(redacted)
    assert parsed.host == "reg.example"
    assert parsed.port == 5000
    assert parsed.path == "/v2/a/b/blobs/uploads/u1"
    assert parsed.username == "REDACTED"
    assert params(redacted) == {
        "_state": "REDACTED",
        "digest": digest,
        "mount": digest,
        "from": "team/app",
        "n": "10",
        "last": "v9",
        "X-Amz-Signature": "REDACTED",
        "X-Amz-Credential": "REDACTED",
        "sig": "REDACTED",
    }


def test_redact_url_leaves_plain_urls_alone() -> None:
    assert redact_url("https://reg.example/v2/a/manifests/v1") == (
        "https://reg.example/v2/a/manifests/v1"
    )
    relative = redact_url("/v2/a/blobs/uploads/u?_state=abc")
    assert relative.startswith("/v2/a/blobs/uploads/u?")
    assert params(relative) == {"_state": "REDACTED"}
    assert redact_url("https://reg.example/v2/a/tags/list?n=5") == (
        "https://reg.example/v2/a/tags/list?n=5"
    )


def trace_lines(blocks: list[str]) -> list[str]:
    return "".join(blocks).splitlines()


def test_request_block_masks_secret_headers_and_json_secrets() -> None:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append, secret_headers=["X-Api-Key", "x-tenant-token"])
    basic = base64.b64encode(b"alice:pw-123").decode()
    body = json.dumps(
        {
            "grant_type": "password",
            "password": "pw-123",
            "nested": {"Token": "tok-1", "list": [{"access_token": "tok-2"}]},
            "refresh_token": "tok-3",
            "identitytoken": "tok-4",
            "secret": "tok-5",
            "scope": "repository:a:pull",
        }
    ).encode()
    request = httpx.Request(
        "POST",
        "https://auth.example/token?service=reg&scope=repository:a:pull&account=alice",
        headers={
            "Authorization": f"Basic {basic}",
            "Proxy-Authorization": "Bearer proxy-tok",
            "Cookie": "session=cookie-value",
            "X-API-KEY": "s3cret-header",
            "X-Tenant-Token": "tenant-value",
            "Content-Type": "application/json",
            "User-Agent": "orascp-test",
        },
        content=body,
    )
    tracer.request(tracer.next_number(), request, request.content)
    assert len(blocks) == 1
    text = blocks[0]
    for secret in (
        basic,
        "pw-123",
        "tok-1",
        "tok-2",
        "tok-3",
        "tok-4",
        "tok-5",
        "proxy-tok",
        "cookie-value",
        "s3cret-header",
        "tenant-value",
        "alice",
    ):
        assert secret not in text, (secret, text)
    lines = trace_lines(blocks)
    assert lines[0] == "--> Request #0"
    assert lines[1].startswith("  POST https://auth.example/token?")
    for header in ("authorization", "proxy-authorization", "cookie", "x-api-key", "x-tenant-token"):
        assert f"  {header}: *****" in lines
    assert "  user-agent: orascp-test" in lines
    shown = json.loads("\n".join(line for line in lines[2:] if not re.match(r"  [\w-]+: ", line)))
    assert shown["password"] == shown["refresh_token"] == shown["secret"] == "*****"
    assert shown["nested"] == {"Token": "*****", "list": [{"access_token": "*****"}]}
    assert shown["scope"] == "repository:a:pull"
    assert shown["grant_type"] == "password"
    assert text.endswith("\n\n")


def test_response_block_masks_cookies_and_redacts_locations() -> None:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append)
    response = httpx.Response(
        202,
        headers=[
            ("Set-Cookie", "sid=cookie-1"),
            ("Set-Cookie", "other=cookie-2"),
            ("Location", "/v2/a/blobs/uploads/u1?_state=st4te-value"),
            ("Content-Location", "https://s3.example/b?X-Amz-Signature=sig-value"),
            ("Link", '<https://reg.example/v2/a/tags/list?n=2&last=b&token=link-tok>; rel="next"'),
            ("Docker-Upload-UUID", "u1"),
        ],
    )
    tracer.response(7, response, None, 0.0123)
    text = blocks[0]
    lines = trace_lines(blocks)
    assert lines[:2] == ["<-- Response #7", "  202 Accepted (12 ms)"]
    for secret in ("cookie-1", "cookie-2", "st4te-value", "sig-value", "link-tok"):
        assert secret not in text, text
    assert lines.count("  set-cookie: *****") == 2
    location = row_of(lines, "location: /v2")
    assert params(location.split(": ", 1)[1]) == {"_state": "REDACTED"}
    link = row_of(lines, "link:")
    assert link.endswith('>; rel="next"'), link
    assert params(re.search(r"<([^>]*)>", link).group(1)) == {  # type: ignore[union-attr]
        "n": "2",
        "last": "b",
        "token": "REDACTED",
    }
    assert "  docker-upload-uuid: u1" in lines


def test_json_body_above_the_limit_and_other_bodies_are_not_shown() -> None:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append)
    big = json.dumps({"filler": "x" * MAX_BODY}).encode()
    assert len(big) > MAX_BODY
    json_response = httpx.Response(200, headers={"Content-Type": "application/json"})
    tracer.response(1, json_response, big, 0.001)
    assert "xxxx" not in blocks[-1]
    assert f"({len(big)} bytes of JSON, not shown: above {MAX_BODY})" in blocks[-1]

    at_limit = json.dumps({"f": "y" * (MAX_BODY - 9)}).encode()
    assert len(at_limit) == MAX_BODY
    tracer.response(2, json_response, at_limit, 0.001)
    assert "yyyy" in blocks[-1]

    for content_type in ("application/octet-stream", "text/plain", ""):
        response = httpx.Response(
            200, headers={"Content-Type": content_type} if content_type else {}
        )
        tracer.response(3, response, b'{"token": "visible?"}', 0.001)
        assert "visible?" not in blocks[-1]
        assert "token" not in blocks[-1]

    manifest = httpx.Response(200, headers={"Content-Type": OCI_MANIFEST + "; charset=utf-8"})
    tracer.response(4, manifest, b'{"schemaVersion": 2}', 0.001)
    assert '"schemaVersion": 2' in blocks[-1]  # +json media types are JSON

    tracer.response(5, json_response, b"{not json", 0.001)
    assert "(9 bytes, not valid JSON)" in blocks[-1]
    assert "{not json" not in blocks[-1]


def test_control_characters_never_reach_the_terminal() -> None:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append)
    response = httpx.Response(
        400,
        headers={"Content-Type": "application/json", "X-Message": "a\x1b[31mred\x07"},
    )
    body = json.dumps({"errors": [{"message": "x\x1b]0;title\x07y\u009b2Jz\r\t"}]}).encode()
    tracer.response(1, response, body, 0.001)
    tracer.failure(2, OSError("boom\x1b[2J\x1bc"), 0.001)
    text = "".join(blocks)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert "red" in text
    assert "boom" in text


def test_failure_block() -> None:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append)
    tracer.failure(3, httpx.ConnectError("connection refused"), 0.25)
    assert blocks == ["<-- Response #3\n  failed after 250 ms: connection refused\n\n"]


# -- TracingTransport --------------------------------------------------------------------------


TOKEN_BODY = json.dumps({"token": "jwt-abc", "access_token": "jwt-abc", "expires_in": 300})


def streamed(status: int, body: bytes, content_type: str) -> httpx.Response:
    """Return a response whose body is still to be read, as a network transport returns it.

    (``httpx.Response(json=...)`` would arrive already read, which no real transport does.)
    """
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def mock_registry(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/token":
        return streamed(200, TOKEN_BODY.encode(), "application/json")
    if path == "/big":
        filler = json.dumps({"filler": "z" * (MAX_BODY + 1)}).encode()
        return streamed(200, filler, "application/json")
    if path == "/blob":
        return streamed(200, b"\x00\x01blob-bytes", "application/octet-stream")
    if path == "/down":
        raise httpx.ConnectError("connection refused", request=request)
    return streamed(404, b'{"errors": [{"code": "NAME_UNKNOWN"}]}', "application/json")


def run_client(body: Callable[[httpx.AsyncClient], Any]) -> tuple[Any, list[str]]:
    blocks: list[str] = []
    tracer = HttpTracer(blocks.append)

    async def main() -> Any:
        transport = TracingTransport(httpx.MockTransport(mock_registry), tracer)
        async with httpx.AsyncClient(transport=transport, base_url="https://reg.example") as c:
            return await body(c)

    return asyncio.run(main()), blocks


def test_traced_json_response_is_still_readable_as_a_stream() -> None:
    async def body(client: httpx.AsyncClient) -> bytes:
        async with client.stream("GET", "/token") as response:
            return b"".join([chunk async for chunk in response.aiter_raw()])

    raw, blocks = run_client(body)
    assert json.loads(raw) == json.loads(TOKEN_BODY)
    assert len(blocks) == 2
    assert "jwt-abc" not in "".join(blocks)
    assert '"token": "*****"' in blocks[1]
    assert '"expires_in": 300' in blocks[1]


def test_traced_json_response_is_still_readable_with_aread() -> None:
    async def body(client: httpx.AsyncClient) -> tuple[int, Any]:
        async with client.stream("GET", "/token") as response:
            await response.aread()
            return response.status_code, response.json()

    (status, data), blocks = run_client(body)
    assert (status, data) == (200, json.loads(TOKEN_BODY))
    assert blocks[0].startswith("--> Request #0\n  GET https://reg.example/token\n")
    assert blocks[1].startswith("<-- Response #0\n  200 OK (")


def test_large_and_binary_bodies_pass_through_untraced() -> None:
    async def body(client: httpx.AsyncClient) -> tuple[bytes, bytes, int]:
        big = await client.get("/big")
        blob = await client.get("/blob")
        head = await client.head("/token")
        return big.content, blob.content, head.status_code

    (big, blob, head_status), blocks = run_client(body)
    assert json.loads(big)["filler"] == "z" * (MAX_BODY + 1)
    assert blob == b"\x00\x01blob-bytes"
    assert head_status == 200
    text = "".join(blocks)
    assert "zzzz" not in text
    assert "blob-bytes" not in text
    assert "jwt-abc" not in text
    assert len(blocks) == 6


def test_request_bodies_are_shown_only_when_json_and_in_memory() -> None:
    async def chunks() -> Any:
        yield b'{"password": "streamed-secret"}'

    async def body(client: httpx.AsyncClient) -> None:
        await client.put("/x", content=b'{"layers": []}', headers={"Content-Type": OCI_MANIFEST})
        await client.put("/y", content=chunks(), headers={"Content-Type": "application/json"})
        await client.post("/z", data={"password": "form-secret"})

    _, blocks = run_client(body)
    assert '"layers": []' in blocks[0]
    assert "streamed-secret" not in "".join(blocks)
    assert "form-secret" not in "".join(blocks)


def test_failed_exchange_is_traced_and_the_error_propagates() -> None:
    async def body(client: httpx.AsyncClient) -> str:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get("/down")
        return str(caught.value)

    message, blocks = run_client(body)
    assert message == "connection refused"
    assert blocks[0].startswith("--> Request #0\n  GET https://reg.example/down\n")
    assert re.fullmatch(
        r"<-- Response #0\n  failed after \d+ ms: connection refused\n\n", blocks[1]
    )
    assert len(blocks) == 2


def test_concurrent_exchanges_get_unique_numbers_and_whole_blocks() -> None:
    async def body(client: httpx.AsyncClient) -> None:
        await asyncio.gather(*(client.get(f"/token?n={i}") for i in range(20)))

    _, blocks = run_client(body)
    assert len(blocks) == 40
    requests = [int(m.group(1)) for b in blocks if (m := re.match(r"--> Request #(\d+)\n", b))]
    responses = [int(m.group(1)) for b in blocks if (m := re.match(r"<-- Response #(\d+)\n", b))]
    assert sorted(requests) == sorted(responses) == list(range(20))
    assert all(b.endswith("\n\n") and b.count("\n\n") == 1 for b in blocks)


def test_tracing_accepts_a_response_that_was_already_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token": "jwt-abc"})

    async def main() -> Any:
        transport = TracingTransport(httpx.MockTransport(handler), HttpTracer(lambda _: None))
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get("https://reg.example/token")).json()

    assert asyncio.run(main()) == {"token": "jwt-abc"}
