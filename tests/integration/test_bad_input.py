"""Bad input is refused with one clear ``Error:`` line, and nothing reaches the destination.

Every source here is prepared without orascp: raw bytes pushed to the registry with bare HTTP
requests, or an OCI layout written file by file. docker-registry 2.8.2 refuses to store a
manifest that is not JSON, whose ``mediaType`` disagrees with its Content-Type, or that lists an
invalid digest, so those sources are layouts; what the registry does store (absurd sizes, an
index entry whose media type disagrees with its child) is tested from the registry as well.

"Nothing written" means: for a registry destination, not one POST, PUT, PATCH or DELETE about
the destination repository in its access log, and no tag; for a layout destination, the
directory does not exist afterwards, or, when it existed, every entry in it (files, symlinks,
directories) is as it was, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accesslog import all_requests, touching
from tests.support.artifacts import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    digest_of,
    push,
    push_blob,
    put_manifest,
    sample_image,
    tree_snapshot,
    write_layout,
    write_raw_layout,
)
from tests.support.cli import Result, run_orascp
from tests.support.registry import Registry

pytestmark = pytest.mark.integration

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes that orascp must never copy for a graph it refuses\n" * 8
# Valid JSON nested deeper than Python's json decoder can recurse: 100 kB, far below the 4 MiB
# manifest cap and the 64 MiB index.json cap.
DEEP_JSON = b"[" * 100_000

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
DESTINATIONS = ["registry", "layout"]


# -- building raw content ----------------------------------------------------------------------


def desc(media_type: str, data: bytes, **override: Any) -> dict[str, Any]:
    """Return the descriptor of ``data``, with any field overridden (or removed with None)."""
    out: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    out.update(override)
    return {k: v for k, v in out.items() if v is not None}


def manifest(config: dict[str, Any], layers: list[dict[str, Any]], **fields: Any) -> bytes:
    obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config}
    obj["layers"] = layers
    obj.update(fields)
    return json.dumps(obj, indent=2).encode()


def index_of(children: list[dict[str, Any]]) -> bytes:
    obj = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    return json.dumps(obj, indent=2).encode()


def good_image(seed: str) -> tuple[bytes, list[bytes]]:
    """Return a valid image manifest of three layers and every blob it needs."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [f"{seed} layer {i}\n".encode() * 64 for i in range(3)]
    data = manifest(desc(OCI_CONFIG, config), [desc(OCI_LAYER_GZIP, b) for b in layers])
    return data, [config, *layers]


def tagged(entry: dict[str, Any], tag: str = "v1") -> dict[str, Any]:
    return {**entry, "annotations": {REF_NAME: tag}}


# -- running orascp and checking what it left ---------------------------------------------------


@dataclass
class Destination:
    """Where a copy goes, and how to prove afterwards that nothing was written there."""

    kind: str
    args: list[str]
    registry: Registry | None = None
    repository: str = ""
    path: Path | None = None
    _mark: int = 0
    _before: dict[str, tuple[str, bytes]] | None = None

    def mark(self) -> None:
        if self.registry is not None:
            self._mark = len(all_requests(self.registry))
        if self.path is not None:
            self._before = tree_snapshot(self.path)

    def assert_untouched(self, res: Result) -> None:
        if self.registry is not None:
            requests = touching(all_requests(self.registry)[self._mark :], self.repository)
            writes = [
                f"{r.method} {r.path} {r.status}" for r in requests if r.method in WRITE_METHODS
            ]
            assert writes == [], f"written to the destination:\n{writes}\n{res.describe()}"
            tags = httpx.get(
                f"http://{self.registry.host}/v2/{self.repository}/tags/list", timeout=30
            )
            assert tags.status_code == 404, f"the destination has tags: {tags.text}"
        if self.path is not None:
            after = tree_snapshot(self.path)
            if not self._before:
                assert not self.path.exists(), (
                    f"the layout was created: {sorted(after)}\n{res.describe()}"
                )
            else:
                changed = sorted(
                    name
                    for name in set(self._before) | set(after)
                    if self._before.get(name) != after.get(name)
                )
                assert changed == [], f"the layout changed: {changed}\n{res.describe()}"


def destination(kind: str, other_registry: Registry, repo: str, tmp_path: Path) -> Destination:
    if kind == "registry":
        repository = f"{repo}/dst"
        return Destination(
            kind,
            [f"{other_registry.host}/{repository}:v1"],
            registry=other_registry,
            repository=repository,
        )
    out = tmp_path / "out"
    return Destination(kind, ["--to-oci-layout", f"{out}:v1"], path=out)


def assert_one_line_error(res: Result, *, side: str, needle: str, code: int = 1) -> None:
    """Assert exit ``code`` and one ``Error:`` line naming ``side`` and matching ``needle``."""
    assert res.returncode == code, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    lines = res.stderr.splitlines()
    assert lines, res.describe()
    assert lines[0].startswith("Error: "), res.describe()
    assert all(line.startswith("Hint: ") for line in lines[1:]), res.describe()
    assert len(lines) <= 2, res.describe()
    # README: "Errors are one Error: line on stderr naming the side (source/destination)".
    assert lines[0].startswith(f"Error: {side} "), f"the error does not name the {side}: {lines[0]}"
    assert re.search(needle, lines[0], re.IGNORECASE), f"{needle!r} not in: {lines[0]}"


def copy_and_check(
    source_args: list[str], dst: Destination, *, needle: str, side: str = "source", code: int = 1
) -> Result:
    dst.mark()
    res = run_orascp("cp", *source_args, *dst.args)
    assert_one_line_error(res, side=side, needle=needle, code=code)
    dst.assert_untouched(res)
    return res


# -- layout sources: the root manifest ---------------------------------------------------------


def _root_not_json(src: Path) -> None:
    data = b"this is not JSON {"
    write_raw_layout(src, [data], [tagged(desc(OCI_MANIFEST, data))])


def _root_deeply_nested_json(src: Path) -> None:
    write_raw_layout(src, [DEEP_JSON], [tagged(desc(OCI_MANIFEST, DEEP_JSON))])


def _root_declares_index_but_listed_as_manifest(src: Path) -> None:
    data = manifest(desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)], mediaType=OCI_INDEX)
    write_raw_layout(src, [CONFIG, LAYER, data], [tagged(desc(OCI_MANIFEST, data))])


def _root_declares_docker_but_listed_as_oci(src: Path) -> None:
    data = manifest(
        desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)], mediaType=DOCKER_MANIFEST
    )
    write_raw_layout(src, [CONFIG, LAYER, data], [tagged(desc(OCI_MANIFEST, data))])


def _root_declares_manifest_but_listed_as_index(src: Path) -> None:
    data = manifest(desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)])
    write_raw_layout(src, [CONFIG, LAYER, data], [tagged(desc(OCI_INDEX, data))])


ROOT_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "root-not-json": (_root_not_json, "JSON"),
    "root-deeply-nested-json": (_root_deeply_nested_json, "JSON"),
    "root-declares-index-listed-as-manifest": (
        _root_declares_index_but_listed_as_manifest,
        "mediaType",
    ),
    "root-declares-docker-listed-as-oci": (_root_declares_docker_but_listed_as_oci, "mediaType"),
    "root-declares-manifest-listed-as-index": (
        _root_declares_manifest_but_listed_as_index,
        "mediaType",
    ),
}


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("case", sorted(ROOT_CASES))
def test_bad_root_manifest_in_a_layout_is_refused(
    case: str, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    build, needle = ROOT_CASES[case]
    src = tmp_path / "src"
    build(src)
    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle=needle,
    )


# -- layout sources: descriptors with a bad digest or size --------------------------------------

BAD_DIGESTS = {
    "not-hex": "sha256:XYZ",
    "uppercase-hex": "sha256:" + digest_of(LAYER).split(":")[1].upper(),
    "md5": "md5:" + "0123456789abcdef" * 2,
    "path-traversal": "sha256:../../etc/passwd",
    "sha512-of-64-hex": "sha512:" + digest_of(LAYER).split(":")[1],
    "trailing-newline": digest_of(LAYER) + "\n",
}


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("bad", sorted(BAD_DIGESTS))
def test_layer_with_an_invalid_digest_is_refused(
    bad: str, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    data = manifest(
        desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER, digest=BAD_DIGESTS[bad])]
    )
    write_raw_layout(src, [CONFIG, LAYER, data], [tagged(desc(OCI_MANIFEST, data))])
    # Were the traversal ever followed from blobs/sha256/, this is what it would find.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(LAYER)

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle="invalid digest",
    )


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("bad", ["path-traversal", "uppercase-hex"])
def test_index_json_entry_with_an_invalid_digest_is_refused(
    bad: str, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    data = manifest(desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)])
    entry = tagged(desc(OCI_MANIFEST, data, digest=BAD_DIGESTS[bad]))
    write_raw_layout(src, [CONFIG, LAYER, data], [entry])

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle="invalid digest",
    )


BAD_SIZES = {"negative": -1, "2-pow-62": 2**62}
SIZE_NEEDLE = "size|bytes"


def _config_only_manifest(size: int) -> bytes:
    # The config is the only blob, so whether anything is written before the bad size is noticed
    # does not depend on which of several concurrent transfers goes first.
    return manifest(desc(OCI_CONFIG, CONFIG, size=size), [])


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("bad", sorted(BAD_SIZES))
def test_blob_descriptor_with_a_bad_size_in_a_layout_is_refused(
    bad: str, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    data = _config_only_manifest(BAD_SIZES[bad])
    write_raw_layout(src, [CONFIG, data], [tagged(desc(OCI_MANIFEST, data))])

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle=SIZE_NEEDLE,
    )


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("bad", sorted(BAD_SIZES))
def test_blob_descriptor_with_a_bad_size_in_a_registry_is_refused(
    bad: str, kind: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = f"{repo}/src"
    push_blob(registry.host, src, CONFIG)
    data = _config_only_manifest(BAD_SIZES[bad])
    stored = put_manifest(registry.host, src, "v1", data, OCI_MANIFEST)
    assert stored.status_code == 201, stored.text  # distribution does not check sizes

    copy_and_check(
        [f"{registry.host}/{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle=SIZE_NEEDLE,
    )


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("bad", sorted(BAD_SIZES))
def test_child_manifest_descriptor_with_a_bad_size_is_refused(
    bad: str, kind: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = f"{repo}/src"
    child, blobs = good_image(repo)
    for blob in blobs:
        push_blob(registry.host, src, blob)
    assert (
        put_manifest(registry.host, src, digest_of(child), child, OCI_MANIFEST).status_code == 201
    )
    data = index_of([desc(OCI_MANIFEST, child, size=BAD_SIZES[bad])])
    stored = put_manifest(registry.host, src, "v1", data, OCI_INDEX)
    assert stored.status_code == 201, stored.text

    copy_and_check(
        [f"{registry.host}/{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle=SIZE_NEEDLE,
    )


# -- a bad node deeper in the graph --------------------------------------------------------------


def _index_with_bad_child(src: Path, depth: int) -> None:
    """Write ``v1``: an index of a valid image and, ``depth`` indexes down, a non-JSON manifest."""
    good, blobs = good_image("good")
    bad = b"this manifest is not JSON"
    node = desc(OCI_MANIFEST, bad)
    nodes = [bad]
    for _ in range(depth - 1):
        wrapper = index_of([node])
        nodes.append(wrapper)
        node = desc(OCI_INDEX, wrapper)
    root = index_of([desc(OCI_MANIFEST, good), node])
    write_raw_layout(src, [*blobs, good, *nodes, root], [tagged(desc(OCI_INDEX, root))])


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("depth", [1, 3])
def test_index_with_a_malformed_manifest_below_a_valid_one_writes_nothing(
    depth: int, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    # Shows whether the whole graph is checked before the first byte is written: the valid
    # sibling's blobs must not reach the destination of a copy that is going to fail.
    src = tmp_path / "src"
    _index_with_bad_child(src, depth)
    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle="JSON",
    )


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("with_valid_sibling", [False, True], ids=["alone", "after-a-valid-one"])
def test_index_entry_whose_media_type_disagrees_with_the_child_is_refused(
    with_valid_sibling: bool,
    kind: str,
    registry: Registry,
    other_registry: Registry,
    repo: str,
    tmp_path: Path,
) -> None:
    # The registry stores the child as an OCI manifest; the index calls it a Docker manifest.
    src = f"{repo}/src"
    children = []
    for seed in ("good", "mislabelled") if with_valid_sibling else ("mislabelled",):
        child, blobs = good_image(f"{repo}-{seed}")
        for blob in blobs:
            push_blob(registry.host, src, blob)
        stored = put_manifest(registry.host, src, digest_of(child), child, OCI_MANIFEST)
        assert stored.status_code == 201, stored.text
        media_type = OCI_MANIFEST if seed == "good" else DOCKER_MANIFEST
        children.append(desc(media_type, child))
    data = index_of(children)
    stored = put_manifest(registry.host, src, "v1", data, OCI_INDEX)
    assert stored.status_code == 201, stored.text

    copy_and_check(
        [f"{registry.host}/{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        # distribution answers 404 for a manifest asked for with another media type.
        needle=r"not found|media ?type|served as",
    )


# -- layout sources: index.json and oci-layout ----------------------------------------------------


def _valid_layout_with(
    src: Path, *, index_json: bytes | None = None, version: str = "1.0.0"
) -> None:
    data = manifest(desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)])
    entries: list[dict[str, Any]] | bytes = [tagged(desc(OCI_MANIFEST, data))]
    write_raw_layout(
        src,
        [CONFIG, LAYER, data],
        index_json if index_json is not None else entries,
        layout_version=version,
    )


BAD_LAYOUTS: dict[str, tuple[dict[str, Any], str]] = {
    "index-json-not-json": ({"index_json": b'{"manifests": [ oops'}, "index.json"),
    "index-json-truncated": (
        {"index_json": b'{"schemaVersion":2,"manifests":[{"mediaT'},
        "index.json",
    ),
    "index-json-deeply-nested": ({"index_json": b'{"manifests":' + DEEP_JSON}, "index.json"),
    "index-json-a-list": ({"index_json": b"[]"}, "index.json"),
    "layout-version-2": ({"version": "2.0.0"}, "version"),
}


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("case", sorted(BAD_LAYOUTS))
def test_broken_layout_as_source_is_refused(
    case: str, kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    fields, needle = BAD_LAYOUTS[case]
    src = tmp_path / "src"
    _valid_layout_with(src, **fields)
    before = tree_snapshot(src)

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle=needle,
    )
    assert tree_snapshot(src) == before


@pytest.mark.parametrize("case", sorted(BAD_LAYOUTS))
def test_broken_layout_as_destination_is_refused_and_left_as_it_was(
    case: str, registry: Registry, repo: str, tmp_path: Path
) -> None:
    fields, needle = BAD_LAYOUTS[case]
    art = sample_image(repo, layers=2, size=2048)
    push(registry.host, f"{repo}/src", art, "v1")
    out = tmp_path / "out"
    _valid_layout_with(out, **fields)
    dst = Destination("layout", ["--to-oci-layout", f"{out}:v1"], path=out)

    copy_and_check([f"{registry.host}/{repo}/src:v1"], dst, needle=needle, side="destination")


def test_non_layout_directory_as_destination_is_refused_and_left_as_it_was(
    registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=2, size=2048)
    push(registry.host, f"{repo}/src", art, "v1")
    out = tmp_path / "out"
    (out / "docs").mkdir(parents=True)
    (out / "notes.txt").write_text("not a layout\n")
    (out / "docs" / "readme.md").write_text("# mine\n")
    (out / "blobs").mkdir()  # a layout-looking name must not make it a layout
    dst = Destination("layout", ["--to-oci-layout", f"{out}:v1"], path=out)
    mark = len(all_requests(registry))

    copy_and_check(
        [f"{registry.host}/{repo}/src:v1"], dst, needle="not.*layout|non-empty", side="destination"
    )
    # Refused before the source was even resolved.
    assert touching(all_requests(registry)[mark:], f"{repo}/src") == []


# -- symlinked blobs -----------------------------------------------------------------------------


class FifoWatch:
    """A FIFO that records whether anything opened it for reading.

    A thread blocks opening the FIFO for writing; that open returns only once a reader opens the
    other end. The writer closes at once, so a reader sees end-of-file instead of hanging.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return
        self.opened.set()
        os.close(fd)

    def was_read(self) -> bool:
        """Return whether a reader opened the FIFO; then release the waiting thread."""
        # A reader that opened the FIFO did so before orascp exited; give the thread a moment.
        read = self.opened.wait(0.5)
        if not read:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(5)
            os.close(fd)
        return read


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoWatch]:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    watch = FifoWatch(outside / "fifo")
    yield watch
    if not watch.opened.is_set():
        watch.was_read()


def _layout_with_symlinked_blob(src: Path, target: Path, *, sibling: bool = False) -> None:
    """Write ``v1`` whose blob ``LAYER`` is a symlink to ``target``.

    Without ``sibling`` that blob is the manifest's only one (its config), so nothing else
    could be copied before it is refused; with ``sibling`` a regular config comes first and the
    symlink is a layer.
    """
    if sibling:
        data = manifest(desc(OCI_CONFIG, CONFIG), [desc(OCI_LAYER_GZIP, LAYER)])
        blobs = [CONFIG, data]
    else:
        data = manifest(desc(OCI_CONFIG, LAYER), [])
        blobs = [data]
    write_raw_layout(src, blobs, [tagged(desc(OCI_MANIFEST, data))])
    link = src / "blobs" / "sha256" / digest_of(LAYER).split(":")[1]
    link.symlink_to(target)


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_symlinked_blob_in_a_source_layout_is_refused(
    kind: str, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    # The target holds exactly the right bytes: following the link would make the copy succeed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "layer").write_bytes(LAYER)
    src = tmp_path / "src"
    _layout_with_symlinked_blob(src, outside / "layer")

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        destination(kind, other_registry, repo, tmp_path),
        needle="symbolic link|symlink|regular file",
    )


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_symlinked_blob_in_a_source_layout_is_not_followed(
    kind: str, fifo: FifoWatch, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _layout_with_symlinked_blob(src, fifo.path)
    dst = destination(kind, other_registry, repo, tmp_path)
    dst.mark()

    res = run_orascp("cp", "--from-oci-layout", f"{src}:v1", *dst.args)

    # Checked first: this is what the test is about, whatever else goes wrong.
    assert not fifo.was_read(), "orascp opened the symlink's target outside the layout"
    assert_one_line_error(res, side="source", needle="symbolic link|symlink|regular file")
    dst.assert_untouched(res)


def test_symlinked_blob_after_a_valid_sibling_leaves_no_layout_behind(tmp_path: Path) -> None:
    # The regular config is handed to the destination before the symlinked layer is opened:
    # only the manifests are checked before writing, not whether every blob can be read.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "layer").write_bytes(LAYER)
    src = tmp_path / "src"
    _layout_with_symlinked_blob(src, outside / "layer", sibling=True)
    out = tmp_path / "out"

    copy_and_check(
        ["--from-oci-layout", f"{src}:v1"],
        Destination("layout", ["--to-oci-layout", f"{out}:v1"], path=out),
        needle="symbolic link|symlink|regular file",
    )


@pytest.mark.parametrize("target", ["file", "fifo"])
def test_symlinked_blob_in_a_destination_layout_is_refused_and_left_as_it_was(
    target: str, fifo: FifoWatch, registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=2, size=2048)
    push(registry.host, f"{repo}/src", art, "v1")
    out = tmp_path / "out"
    # A valid layout holding another artifact, and a link where one of ours would go.
    write_layout(out, sample_image(f"{repo}-other", layers=1, size=512), "other")
    precious = tmp_path / "outside" / "precious"
    precious.write_bytes(b"not orascp's to read or overwrite\n")
    link = out / "blobs" / "sha256" / art.blobs[-1].digest.split(":")[1]
    link.symlink_to(precious if target == "file" else fifo.path)
    dst = Destination("layout", ["--to-oci-layout", f"{out}:v1"], path=out)

    dst.mark()

    res = run_orascp("cp", f"{registry.host}/{repo}/src:v1", *dst.args)

    assert not fifo.was_read(), "orascp opened the symlink's target outside the layout"
    assert precious.read_bytes() == b"not orascp's to read or overwrite\n"
    assert_one_line_error(res, side="destination", needle="symbolic link|symlink|regular file")
    dst.assert_untouched(res)


# -- references the parser must refuse (exit 2), not crash on ------------------------------------


@pytest.mark.parametrize("side", ["source", "destination"])
def test_port_of_thousands_of_digits_is_a_usage_error(
    side: str, registry: Registry, repo: str, tmp_path: Path
) -> None:
    # int() refuses to read more than 4300 digits: the parser must turn that into exit 2.
    huge = f"127.0.0.1:{'1' * 5000}/{repo}/x:v1"
    good = f"{registry.host}/{repo}/src:v1"
    args = [huge, good] if side == "source" else [good, huge]
    before = len(all_requests(registry))

    res = run_orascp("cp", *args)

    assert_one_line_error(res, side="invalid reference", needle="port", code=2)
    assert all_requests(registry)[before:] == []
    assert list(tmp_path.iterdir()) == []
