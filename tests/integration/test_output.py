"""What the real ``orascp cp`` prints: ``--format json``, plain lines, a terminal, ``--debug``.

- ``--format json``: one JSON document on stdout (validated against the schema the package
  ships), nothing else; errors stay on stderr.
- Without a terminal (or with ``--no-tty``, ``TERM=dumb``): ``oras``-style status lines and the
  summary on stdout, and not one escape character anywhere.
- On a pseudo-terminal: the live display on stderr (rows in flight with bytes, finished rows with
  a mark), then the summary. The source is reached through :class:`ResponseGate`, which holds a
  blob's bytes half-way until the test has seen a progress frame: no timing assumptions.
- ``--debug``: numbered request/response blocks on stderr, with every secret redacted.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.support.artifacts import (
    OCI_INDEX,
    OCI_MANIFEST,
    Artifact,
    image,
    layer,
    layout_tags,
    push,
    sample_image,
    tar_gz_layer,
)
from tests.support.authdata import ALICE_PASSWORD
from tests.support.authhttp import client_for, push_artifact
from tests.support.cli import (
    STATUS_RE,
    TIMEOUT,
    Result,
    orascp_command,
    run_orascp,
    short_digest,
    status_line,
)
from tests.support.registry import Registry
from tests.support.tokenserver import TokenServer

pytest_plugins = ["tests.support.authfixtures"]

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
ESC = "\x1b"
ANSI_RE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
SPINNER_OR_BAR = re.compile("[\u2800-\u28ff━╸╺]")  # rich's "dots" spinner, its bar
SECRET_HEADER = "s3cret-header"


def schema() -> dict[str, Any]:
    text = files("orascp").joinpath("schemas/cp-result.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def document(res: Result) -> dict[str, Any]:
    """Return the one JSON document a successful ``--format json`` run printed, validated."""
    assert res.returncode == 0, res.describe()
    assert res.stderr == "", res.describe()
    assert res.stdout.startswith("{"), res.describe()
    assert res.stdout.endswith("}\n"), res.describe()
    doc: dict[str, Any] = json.loads(res.stdout)  # "Extra data" if anything follows it
    jsonschema.Draft202012Validator(schema()).validate(doc)
    return doc


def by_digest(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = {node["digest"]: node for node in doc["nodes"]}
    assert len(nodes) == len(doc["nodes"]), doc["nodes"]
    return nodes


def registry_digest(registry: Registry, repository: str, reference: str) -> str:
    """Return the digest the registry reports for a manifest (read without orascp)."""
    r = httpx.head(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.headers["docker-content-digest"]


def assert_totals(doc: dict[str, Any]) -> None:
    actions = Counter(node["action"] for node in doc["nodes"])
    assert doc["totals"] == {
        "nodes": len(doc["nodes"]),
        "copied": actions["copied"],
        "mounted": actions["mounted"],
        "exists": actions["exists"],
        "skipped": actions["skipped"],
        "bytes": sum(node["bytes"] for node in doc["nodes"]),
    }


def assert_one_error(res: Result) -> None:
    """Exit 1, nothing on stdout, one ``Error:`` line and at most one ``Hint:`` line."""
    assert res.returncode == 1, res.describe()
    assert res.stdout == "", res.describe()
    lines = res.stderr.splitlines()
    assert lines, res.describe()
    assert lines[0].startswith("Error: "), res.describe()
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), res.describe()


# -- --format json -----------------------------------------------------------------------------


def test_json_same_registry_copy_mounts_every_blob(registry: Registry, repo: str) -> None:
    art = sample_image(repo, layers=3, size=4096)
    push(registry.host, f"{repo}/src", art, "v1")
    src, dst = f"{registry.host}/{repo}/src:v1", f"{registry.host}/{repo}/dst:v1"
    doc = document(run_orascp("cp", "--format", "json", src, dst))

    assert doc["schemaVersion"] == 1
    assert doc["source"] == {"type": "registry", "reference": src}
    assert doc["destination"] == {"type": "registry", "reference": dst}
    assert doc["tags"] == ["v1"]
    assert doc["root"] == {
        "mediaType": OCI_MANIFEST,
        "digest": art.digest,
        "size": len(art.root.data),
    }
    assert doc["root"]["digest"] == registry_digest(registry, f"{repo}/dst", "v1")
    nodes = by_digest(doc)
    assert set(nodes) == {b.digest for b in art.all}
    for blob in art.blobs:
        node = nodes[blob.digest]
        assert (node["action"], node["bytes"], node["size"]) == ("mounted", 0, len(blob.data))
        assert node["mediaType"] == blob.media_type
        assert node.get("title") == (blob.annotations or {}).get("org.opencontainers.image.title")
    root = nodes[art.digest]
    assert (root["action"], root["bytes"]) == ("copied", len(art.root.data))
    assert "title" not in root
    assert_totals(doc)
    assert doc["totals"]["mounted"] == len(art.blobs)
    assert doc["totals"]["bytes"] == len(art.root.data)


def test_json_cross_registry_copy_with_tags(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=64 * 1024)
    push(registry.host, f"{repo}/src", art, "v1")
    src = f"{registry.host}/{repo}/src:v1"
    dst = f"{other_registry.host}/{repo}/dst:v1"
    doc = document(run_orascp("cp", "--format", "json", src, dst + ",latest"))

    assert doc["tags"] == ["v1", "latest"]
    assert doc["destination"] == {"type": "registry", "reference": dst}
    for tag in ("v1", "latest"):
        assert registry_digest(other_registry, f"{repo}/dst", tag) == doc["root"]["digest"]
    assert doc["root"]["digest"] == art.digest
    nodes = by_digest(doc)
    assert set(nodes) == {b.digest for b in art.all}
    for blob in art.all:
        node = nodes[blob.digest]
        assert (node["action"], node["size"], node["bytes"]) == (
            "copied",
            len(blob.data),
            len(blob.data),
        )
    assert_totals(doc)
    assert doc["totals"]["bytes"] == sum(len(b.data) for b in art.all)

    # Everything is there now: a second run moves nothing and says so.
    again = document(run_orascp("cp", "--format", "json", src, dst))
    assert [(n["digest"], n["action"], n["bytes"]) for n in again["nodes"]] == [
        (art.digest, "exists", 0)
    ]
    assert_totals(again)
    assert again["totals"]["bytes"] == 0


def test_json_copy_to_a_layout(registry: Registry, repo: str, tmp_path: Path) -> None:
    art = sample_image(repo, layers=2, size=8192)
    push(registry.host, f"{repo}/src", art, "v1")
    out = tmp_path / "out"
    doc = document(
        run_orascp(
            "cp", "--format", "json", f"{registry.host}/{repo}/src:v1", "--to-oci-layout",
            f"{out}:v1,stable",
        )
    )  # fmt: skip
    assert doc["destination"] == {"type": "oci-layout", "reference": f"{out}:v1"}
    assert doc["tags"] == ["v1", "stable"]
    assert layout_tags(out) == {"v1": doc["root"]["digest"], "stable": doc["root"]["digest"]}
    assert all(n["action"] == "copied" and n["bytes"] == n["size"] for n in doc["nodes"])
    assert {n["digest"] for n in doc["nodes"]} == {b.digest for b in art.all}
    assert_totals(doc)


def test_json_mirrors_the_status_lines_including_a_renamed_duplicate(
    registry: Registry, repo: str, tmp_path: Path
) -> None:
    payload = os.urandom(5000)
    twin_a, twin_b = tar_gz_layer(payload, title="a.tar.gz"), tar_gz_layer(payload, title="b.tgz")
    assert twin_a.digest == twin_b.digest
    art = image([twin_a, twin_b, layer(b"other bytes", "c.bin")])
    push(registry.host, f"{repo}/src", art, "v1")
    src = f"{registry.host}/{repo}/src:v1"

    # Two fresh layouts: nothing can be mounted or found there, both runs copy alike.
    text = run_orascp("cp", src, "--to-oci-layout", f"{tmp_path / 'text'}:v1")
    assert text.returncode == 0, text.describe()
    doc = document(run_orascp("cp", "--format", "json", src, "--to-oci-layout", f"{tmp_path}/j:v1"))

    skipped = [n for n in doc["nodes"] if n["action"] == "skipped"]
    assert len(skipped) == 1
    assert skipped[0]["digest"] == twin_a.digest
    assert skipped[0]["bytes"] == 0
    assert skipped[0]["title"] in {"a.tar.gz", "b.tgz"}
    assert doc["totals"]["skipped"] == 1
    assert_totals(doc)
    # One line per node in the text run (but the "Copying" announcements), one node in JSON.
    # (Which twin is copied and which skipped is up to the copy: compare what does not depend
    # on it.)
    verbs = {"copied": "Copied", "mounted": "Mounted", "exists": "Exists", "skipped": "Skipped"}
    done = [s for s in text.statuses if s.verb != "Copying"]
    assert Counter((verbs[n["action"]], short_digest(n["digest"])) for n in doc["nodes"]) == (
        Counter((s.verb, s.short) for s in done)
    ), text.describe()
    assert Counter(
        (short_digest(n["digest"]), n.get("title") or n["mediaType"]) for n in doc["nodes"]
    ) == Counter((s.short, s.name) for s in done), text.describe()
    assert [s.verb for s in done].count("Skipped") == 1


def test_json_error_prints_nothing_on_stdout(registry: Registry, repo: str) -> None:
    res = run_orascp(
        "cp",
        "--format",
        "json",
        f"{registry.host}/{repo}/nothing:v1",
        f"{registry.host}/{repo}/d:v1",
    )
    assert_one_error(res)
    assert "not found" in res.stderr


# -- plain lines -------------------------------------------------------------------------------


def expected_plain(art: Artifact, src: str, dst: str) -> tuple[list[str], list[str]]:
    """Return the status lines of a cross-registry copy of ``art`` (sorted), and the summary."""
    statuses = sorted(status_line(verb, b) for b in art.all for verb in ("Copying", "Copied"))
    return statuses, [f"Copied [registry] {src} => [registry] {dst}", f"Digest: {art.digest}"]


@pytest.mark.parametrize(
    "env",
    [{}, {"NO_COLOR": "1"}, {"TERM": "dumb"}, {"FORCE_COLOR": "1", "TERM": "xterm-256color"}],
    ids=["default", "no-color", "term-dumb", "force-color"],
)
def test_plain_lines_without_a_terminal(
    registry: Registry, other_registry: Registry, repo: str, env: dict[str, str]
) -> None:
    art = sample_image(repo, layers=2, size=4096)
    push(registry.host, f"{repo}/src", art, "v1")
    src, dst = f"{registry.host}/{repo}/src:v1", f"{other_registry.host}/{repo}/dst:v1"
    res = run_orascp("cp", src, dst + ",extra", env=env)
    assert res.returncode == 0, res.describe()
    statuses, summary = expected_plain(art, src, dst)
    assert sorted(res.lines[:-3]) == statuses, res.describe()
    assert res.lines[-3:] == [summary[0], "Tagged extra", summary[1]], res.describe()
    assert ESC not in res.stdout
    assert ESC not in res.stderr
    assert res.stderr == ""


# -- a pseudo-terminal -------------------------------------------------------------------------


class ResponseGate:
    """Forward TCP connections to a registry; hold each connection's answers after ``threshold``
    bytes until :meth:`open` is called.

    Only a blob of more than ``threshold`` bytes gets there, so the copy stalls mid-blob with
    its row on screen, for as long as the test needs to see it.
    """

    def __init__(self, upstream: Registry, threshold: int) -> None:
        host, _, port = upstream.host.rpartition(":")
        self.upstream = (host, int(port))
        self.threshold = threshold
        self.opened = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"

    def open(self) -> None:
        self.opened.set()

    def __enter__(self) -> ResponseGate:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.opened.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.upstream)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        sent = 0
        try:
            while data := src.recv(64 * 1024):
                if gated and not self.opened.is_set() and sent + len(data) > self.threshold:
                    cut = max(0, self.threshold - sent)
                    dst.sendall(data[:cut])
                    sent, data = sent + cut, data[cut:]
                    if not self.opened.wait(TIMEOUT):
                        break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@dataclass
class TtyRun:
    returncode: int
    output: str  # what the terminal received (\r\n made \n), escape sequences included
    stdout: str | None  # stdout, when it was a pipe rather than the terminal

    @property
    def plain(self) -> str:
        """Return the terminal output without escape sequences."""
        return ANSI_RE.sub("", self.output)

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.plain.split("\n") if line.strip()]

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- terminal\n{self.output!r}\n--- stdout\n{self.stdout!r}"


def run_on_pty(
    *args: str,
    env: dict[str, str] | None = None,
    stdout_pipe: bool = False,
    until: Callable[[str], bool] | None = None,
    then: Callable[[], None] | None = None,
) -> TtyRun:
    """Run orascp with stdin, stderr (and stdout, unless ``stdout_pipe``) on a 120x40 pty.

    Everything is read with select until EOF; the first time ``until(output so far)`` holds,
    ``then()`` is called.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    clean = ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    child_env = {k: v for k, v in os.environ.items() if k not in clean}
    child_env["TERM"] = "xterm-256color"
    child_env.update(env or {})
    try:
        proc = subprocess.Popen(
            [*orascp_command(), *args],
            stdin=slave,
            stdout=subprocess.PIPE if stdout_pipe else slave,
            stderr=slave,
            env=child_env,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    terminal, piped = bytearray(), bytearray()
    streams = {master: terminal}
    if proc.stdout is not None:
        streams[proc.stdout.fileno()] = piped
    deadline = time.monotonic() + TIMEOUT
    fired = until is None
    until = until or (lambda _: False)
    try:
        while streams:
            left = deadline - time.monotonic()
            assert left > 0, f"orascp did not finish: {bytes(terminal)!r}"
            ready, _, _ = select.select(list(streams), [], [], left)
            for fd in ready:
                try:
                    data = os.read(fd, 64 * 1024)
                except OSError as exc:  # EIO: the terminal's last writer is gone
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    del streams[fd]
                    continue
                streams[fd] += data
                if not fired and fd == master and until(terminal.decode(errors="replace")):
                    fired = True
                    if then is not None:
                        then()
        returncode = proc.wait(timeout=TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert fired, f"never saw what was awaited: {bytes(terminal)!r}"
    return TtyRun(
        returncode,
        terminal.decode().replace("\r\n", "\n"),
        piped.decode() if stdout_pipe else None,
    )


def big_image(seed: str) -> Artifact:
    """Return an image with one 4 MiB layer (random: never already at a destination)."""
    return image([layer(os.urandom(4 * MiB), f"{seed}.bin")])


def progress_frame(text: str) -> bool:
    """Tell whether a frame with a row in flight, its bytes moving, has been drawn."""
    plain = ANSI_RE.sub("", text)
    return bool(
        re.search(r"Copying [0-9a-f]{12} \S+.*\d+(\.\d+)? (B|KiB|MiB)/4\.00 MiB .*/s", plain)
        and SPINNER_OR_BAR.search(plain)
    )


@pytest.fixture
def gated_source(registry: Registry, repo: str) -> Iterator[tuple[ResponseGate, Artifact, str]]:
    art = big_image(repo.replace("/", "-"))
    push(registry.host, f"{repo}/src", art, "v1")
    with ResponseGate(registry, threshold=MiB) as gate:
        yield gate, art, f"{gate.host}/{repo}/src:v1"


def test_live_display_on_a_terminal(
    gated_source: tuple[ResponseGate, Artifact, str], other_registry: Registry, repo: str
) -> None:
    gate, art, src = gated_source
    dst = f"{other_registry.host}/{repo}/dst:v1"
    seen: list[str] = []

    def release() -> None:
        seen.append("frame")
        gate.open()

    run = run_on_pty("cp", src, dst, until=progress_frame, then=release)
    assert run.returncode == 0, run.describe()
    assert seen == ["frame"]
    assert ESC in run.output  # a live display redraws in place
    layer_blob = art.blobs[-1]
    title = (layer_blob.annotations or {})["org.opencontainers.image.title"]
    assert f"✓ Copied  {title}" in run.plain
    assert f"└─ {layer_blob.digest}" in run.plain
    assert "Copying " + short_digest(layer_blob.digest) in run.plain
    assert run.lines[-2:] == [
        f"Copied [registry] {src} => [registry] {dst}",
        f"Digest: {art.digest}",
    ], run.describe()
    assert registry_digest(other_registry, f"{repo}/dst", "v1") == art.digest


def test_live_display_leaves_stdout_to_the_summary(
    gated_source: tuple[ResponseGate, Artifact, str], other_registry: Registry, repo: str
) -> None:
    gate, art, src = gated_source
    dst = f"{other_registry.host}/{repo}/dst:v1,latest"
    run = run_on_pty("cp", src, dst, stdout_pipe=True, until=progress_frame, then=gate.open)
    assert run.returncode == 0, run.describe()
    assert run.stdout == (
        f"Copied [registry] {src} => [registry] {dst.split(',')[0]}\n"
        f"Tagged latest\nDigest: {art.digest}\n"
    ), run.describe()
    assert "✓ Copied" in run.plain
    assert "Digest:" not in run.plain  # the terminal got the display only


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--no-tty"], {}), ([], {"TERM": "dumb"}), (["-d"], {})],
    ids=["no-tty", "term-dumb", "debug"],
)
def test_plain_lines_on_a_terminal(
    registry: Registry,
    other_registry: Registry,
    repo: str,
    flags: list[str],
    env: dict[str, str],
) -> None:
    art = sample_image(repo, layers=2, size=4096)
    push(registry.host, f"{repo}/src", art, "v1")
    src, dst = f"{registry.host}/{repo}/src:v1", f"{other_registry.host}/{repo}/dst:v1"
    run = run_on_pty("cp", *flags, src, dst, env=env)
    assert run.returncode == 0, run.describe()
    assert ESC not in run.output, run.describe()
    statuses, summary = expected_plain(art, src, dst)
    lines = [line for line in run.output.splitlines() if STATUS_RE.match(line)]
    assert sorted(lines) == statuses, run.describe()
    assert [
        line for line in run.output.splitlines() if line.startswith(("Copied [", "Digest:"))
    ] == (summary), run.describe()
    assert "✓" not in run.output
    if flags == ["-d"]:
        assert "--> Request #" in run.output
    else:
        # Nothing but status lines and the summary.
        assert len(run.output.splitlines()) == len(statuses) + 2, run.describe()


# -- --debug -----------------------------------------------------------------------------------


TRACE_HEAD = re.compile(r"^(-->) Request #(\d+)$|^(<--) Response #(\d+)$")


def trace_numbers(stderr: str) -> tuple[list[int], list[int]]:
    """Return the request and response numbers; assert stderr holds trace blocks only."""
    requests: list[int] = []
    responses: list[int] = []
    for block in stderr.split("\n\n"):
        if not block:
            continue
        head, *rest = block.split("\n")
        m = TRACE_HEAD.match(head)
        assert m, f"not a trace block: {block!r}"
        (requests if m.group(1) else responses).append(int(m.group(2) or m.group(4)))
        assert rest, block
        assert all(line.startswith("  ") for line in rest), block
    return requests, responses


def test_debug_traces_every_exchange_on_stderr(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=4096)
    push(registry.host, f"{repo}/src", art, "v1")
    src, dst = f"{registry.host}/{repo}/src:v1", f"{other_registry.host}/{repo}/dst:v1"
    mark_src, mark_dst = registry.mark(), other_registry.mark()
    res = run_orascp("cp", "-d", src, dst)
    assert res.returncode == 0, res.describe()
    statuses, summary = expected_plain(art, src, dst)
    assert sorted(res.lines[:-2]) == statuses, res.describe()
    assert res.lines[-2:] == summary
    assert ESC not in res.stdout + res.stderr

    requests, responses = trace_numbers(res.stderr)
    assert len(requests) == len(set(requests)), requests
    assert sorted(requests) == sorted(responses), res.stderr
    # Every exchange either registry served is traced, once (the /v2/ probe is not logged).
    traced = Counter(
        (method, httpx.URL(url).path)
        for method, url in re.findall(r"^--> Request #\d+\n  (\S+) (\S+)$", res.stderr, re.M)
        if httpx.URL(url).path != "/v2/"
    )
    served = Counter(
        (r.method, r.path.split("?", 1)[0])
        for r in [*registry.requests()[mark_src:], *other_registry.requests()[mark_dst:]]
    )
    assert traced == served, res.stderr
    # Upload sessions are named by a _state value the trace never shows.
    assert "_state=REDACTED" in res.stderr
    assert not re.search(r"_state=(?!REDACTED)", res.stderr), res.stderr
    # The manifest pushed is shown (JSON, small); blob bytes never are.
    assert '"schemaVersion": 2' in res.stderr


def assert_no_secret(res: Result, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in res.stdout, (secret, res.describe())
        assert secret not in res.stderr, (secret, res.describe())
    values = re.findall(r"^  (?:proxy-)?authorization: (.*)$", res.stderr, re.MULTILINE)
    assert values, res.stderr
    assert set(values) == {"*****"}, values
    assert re.findall(r"^  x-api-key: (.*)$", res.stderr, re.MULTILINE) != []
    assert set(re.findall(r"^  x-api-key: (.*)$", res.stderr, re.MULTILINE)) == {"*****"}


def test_debug_with_basic_auth_shows_no_secret(
    basic_registry: Registry, registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=4096)
    with client_for(basic_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, f"{repo}/src", art, "v1")
    res = run_orascp(
        "cp", "-d", "--from-username", "alice", "--from-password", ALICE_PASSWORD,
        "--to-header", f"X-Api-Key: {SECRET_HEADER}",
        f"{basic_registry.host}/{repo}/src:v1", f"{registry.host}/{repo}/dst:v1",
    )  # fmt: skip
    assert res.returncode == 0, res.describe()
    basic = base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode()
    assert_no_secret(res, ALICE_PASSWORD, basic, SECRET_HEADER)
    assert registry_digest(registry, f"{repo}/dst", "v1") == art.digest


def test_debug_with_token_auth_shows_no_secret(
    token_registry: Registry,
    token_server: TokenServer,
    registry: Registry,
    repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    art = sample_image(repo, layers=1, size=4096)
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, f"{repo}/src", art, "v1")
    issued: list[str] = []
    issue = token_server.issue

    def recording_issue(*args: Any, **kwargs: Any) -> tuple[str, str]:
        token, issued_at = issue(*args, **kwargs)
        issued.append(token)
        return token, issued_at

    monkeypatch.setattr(token_server, "issue", recording_issue)
    res = run_orascp(
        "cp", "-d", "--from-username", "alice", "--from-password", ALICE_PASSWORD,
        "--to-header", f"X-Api-Key: {SECRET_HEADER}",
        f"{token_registry.host}/{repo}/src:v1", f"{registry.host}/{repo}/dst:v1",
    )  # fmt: skip
    assert res.returncode == 0, res.describe()
    assert issued, "no token was issued"
    basic = base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode()
    assert_no_secret(res, ALICE_PASSWORD, basic, SECRET_HEADER, *issued)
    # Every part of a token is secret enough: the signature alone must not show either.
    for token in issued:
        assert token.rsplit(".", 1)[1] not in res.stderr
    # The token service's answer was traced, its tokens masked.
    assert '"token": "*****"' in res.stderr, res.stderr
    assert '"expires_in": ' in res.stderr
    assert registry_digest(registry, f"{repo}/dst", "v1") == art.digest
