"""Write and read OCI image layout directories: verified blobs, index.json under a lock."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orascp.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, descriptor_for
from orascp.errors import (
    AlreadyExistsError,
    DigestMismatchError,
    InvalidContentError,
    NotFoundError,
    OrascpError,
    SizeMismatchError,
)
from orascp.ocilayout import REF_NAME_ANNOTATION, OCILayout

LAYER = "application/vnd.oci.image.layer.v1.tar"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def push(layout: OCILayout, desc: Descriptor, *parts: bytes) -> None:
    asyncio.run(layout.push(desc, _chunks(*parts)))


def tag(layout: OCILayout, desc: Descriptor, references: list[str]) -> None:
    asyncio.run(layout.tag(desc, references))


def read(layout: OCILayout, desc: Descriptor) -> bytes:
    async def main() -> bytes:
        async with layout.fetch(desc) as chunks:
            return b"".join([c async for c in chunks])

    return asyncio.run(main())


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def manifest_bytes(seed: str) -> bytes:
    layer = descriptor_for(LAYER, seed.encode())
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor_for("application/vnd.oci.empty.v1+json", b"{}").to_json(),
            "layers": [layer.to_json()],
        }
    ).encode()


def manifest(seed: str) -> tuple[Descriptor, bytes]:
    content = manifest_bytes(seed)
    return descriptor_for(OCI_MANIFEST, content), content


def index_entries(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((path / "index.json").read_bytes())["manifests"]
    return entries


def ref_names(path: Path) -> dict[str, str]:
    out = {}
    for entry in index_entries(path):
        name = (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)
        if name is not None:
            assert name not in out, f"tag {name} listed twice"
            out[name] = entry["digest"]
    return out


# -- blobs ------------------------------------------------------------------------------------


def test_push_then_exists_and_fetch(tmp_path: Path) -> None:
    layout = OCILayout.open_destination(tmp_path / "out")
    desc = descriptor_for(LAYER, b"hello layout")
    assert asyncio.run(layout.exists(desc)) is False
    push(layout, desc, b"hello ", b"layout")
    assert asyncio.run(layout.exists(desc)) is True
    blob = tmp_path / "out" / "blobs" / "sha256" / desc.hex
    assert blob.read_bytes() == b"hello layout"
    assert read(layout, desc) == b"hello layout"
    assert json.loads((tmp_path / "out" / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }
    assert not list((tmp_path / "out" / "ingest").glob("*"))


def test_push_twice_is_already_exists(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc = descriptor_for(LAYER, b"once")
    push(layout, desc, b"once")
    with pytest.raises(AlreadyExistsError):
        push(layout, desc, b"once")


def test_push_zero_byte_blob(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc = descriptor_for(LAYER, b"")
    push(layout, desc)
    assert asyncio.run(layout.exists(desc)) is True
    assert read(layout, desc) == b""


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ((b"abcd", b"wrong"), DigestMismatchError),
        ((b"abcd",), SizeMismatchError),
        ((b"abcdefghi", b"jk"), SizeMismatchError),
    ],
)
def test_push_with_bad_bytes_leaves_nothing(
    tmp_path: Path, parts: tuple[bytes, ...], error: type[Exception]
) -> None:
    layout = OCILayout(tmp_path / "out")
    desc = descriptor_for(LAYER, b"abcdefghi")
    with pytest.raises(error):
        push(layout, desc, *parts)
    assert [p for p in files_under(tmp_path / "out") if p.startswith("blobs")] == []
    ingest = tmp_path / "out" / "ingest"
    assert not ingest.exists() or list(ingest.iterdir()) == []
    assert asyncio.run(layout.exists(desc)) is False


def test_exists_is_false_for_a_file_of_the_wrong_size(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc = descriptor_for(LAYER, b"complete content")
    blob = tmp_path / "blobs" / "sha256" / desc.hex
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"complete")  # a truncated leftover
    assert asyncio.run(layout.exists(desc)) is False
    push(layout, desc, b"complete content")
    assert blob.read_bytes() == b"complete content"


def test_symlinked_blob_is_refused(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path / "out")
    desc = descriptor_for(LAYER, b"elsewhere")
    outside = tmp_path / "outside"
    outside.write_bytes(b"elsewhere")
    blob = tmp_path / "out" / "blobs" / "sha256" / desc.hex
    blob.parent.mkdir(parents=True)
    blob.symlink_to(outside)
    with pytest.raises(InvalidContentError, match="not a regular file"):
        asyncio.run(layout.exists(desc))
    with pytest.raises(OrascpError):
        read(layout, desc)
    with pytest.raises(InvalidContentError):
        push(layout, desc, b"elsewhere")
    assert outside.read_bytes() == b"elsewhere"


def test_fetch_of_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    with pytest.raises(NotFoundError):
        read(layout, descriptor_for(LAYER, b"missing"))


def test_blob_path_validates_the_digest(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    with pytest.raises(InvalidContentError):
        layout.blob_path("sha256:../../etc/passwd")
    assert layout.blob_path("sha256:" + "a" * 64) == tmp_path / "blobs" / "sha256" / ("a" * 64)


# -- index.json -------------------------------------------------------------------------------


def test_tag_writes_ref_name_and_retag_replaces(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    (d1, c1), (d2, c2) = manifest("one"), manifest("two")
    push(layout, d1, c1)
    push(layout, d2, c2)
    tag(layout, d1, ["v1", "latest"])
    index = json.loads((tmp_path / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert ref_names(tmp_path) == {"v1": d1.digest, "latest": d1.digest}
    entry = index["manifests"][0]
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["size"] == d1.size
    tag(layout, d2, ["latest"])
    assert ref_names(tmp_path) == {"v1": d1.digest, "latest": d2.digest}
    assert len(index_entries(tmp_path)) == 2


def test_tag_without_references_lists_the_manifest_untagged_once(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc, content = manifest("untagged")
    push(layout, desc, content)
    tag(layout, desc, [])
    tag(layout, desc, [])
    entries = index_entries(tmp_path)
    assert entries == [{"mediaType": OCI_MANIFEST, "digest": desc.digest, "size": desc.size}]


def test_tag_keeps_foreign_entries(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc, content = manifest("x")
    push(layout, desc, content)
    other = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "e" * 64,
        "size": 3,
        "annotations": {REF_NAME_ANNOTATION: "other", "x-keep": "yes"},
    }
    index = json.loads((tmp_path / "index.json").read_bytes())
    index["manifests"].append(other)
    (tmp_path / "index.json").write_text(json.dumps(index))
    tag(layout, desc, ["mine"])
    assert other in index_entries(tmp_path)
    assert ref_names(tmp_path) == {"other": "sha256:" + "e" * 64, "mine": desc.digest}


@pytest.mark.parametrize("corrupt", [b"{corrupt", b"[]", b'{"manifests": {}}', b""])
def test_corrupt_index_is_refused_and_left_unchanged(tmp_path: Path, corrupt: bytes) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "index.json").write_bytes(corrupt)
    # Refused as soon as it is opened as a destination, before any blob is written...
    with pytest.raises(InvalidContentError):
        OCILayout.open_destination(tmp_path)
    assert not (tmp_path / "blobs").exists()
    # ...and by a store opened before index.json went bad, when it comes to tagging.
    layout = OCILayout(tmp_path)
    desc, content = manifest("c")
    push(layout, desc, content)
    with pytest.raises(InvalidContentError):
        tag(layout, desc, ["v1"])
    with pytest.raises(InvalidContentError):
        asyncio.run(layout.resolve("v1"))
    assert (tmp_path / "index.json").read_bytes() == corrupt
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- opening ----------------------------------------------------------------------------------


def test_open_destination_refuses_a_non_empty_non_layout_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidContentError, match="non-empty"):
        OCILayout.open_destination(tmp_path)
    assert files_under(tmp_path) == ["notes.txt"]


def test_open_destination_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidContentError, match="not a directory"):
        OCILayout.open_destination(tmp_path / "file")


def test_open_destination_refuses_an_unknown_layout_version(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(InvalidContentError, match=r"2\.0\.0"):
        OCILayout.open_destination(tmp_path)


def test_open_destination_accepts_an_empty_directory(tmp_path: Path) -> None:
    layout = OCILayout.open_destination(tmp_path)
    assert layout.path == tmp_path


def test_open_destination_creates_nothing_until_the_first_push(tmp_path: Path) -> None:
    target = tmp_path / "new" / "layout"
    layout = OCILayout.open_destination(target)
    assert not (tmp_path / "new").exists()
    with pytest.raises(NotFoundError):
        asyncio.run(layout.resolve("v1"))
    assert asyncio.run(layout.exists(descriptor_for(LAYER, b"x"))) is False
    assert not (tmp_path / "new").exists()
    push(layout, descriptor_for(LAYER, b"x"), b"x")
    assert {"oci-layout", "index.json"} <= {p.name for p in target.iterdir()}
    assert index_entries(target) == []


def test_open_source_requires_a_layout(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        OCILayout.open_source(tmp_path / "missing")
    with pytest.raises(NotFoundError, match="oci-layout"):
        OCILayout.open_source(tmp_path)


def test_close_removes_an_empty_ingest_directory(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    push(layout, descriptor_for(LAYER, b"x"), b"x")
    layout.close()
    assert not (tmp_path / "ingest").exists()
    assert (tmp_path / "blobs").is_dir()


# -- resolve ----------------------------------------------------------------------------------


def test_resolve_by_tag_and_by_digest(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc, content = manifest("resolve")
    push(layout, desc, content)
    tag(layout, desc, ["v1"])
    assert asyncio.run(layout.resolve("v1")) == desc
    by_digest = asyncio.run(layout.resolve(desc.digest))
    assert by_digest == desc
    assert by_digest.media_type == OCI_MANIFEST
    with pytest.raises(NotFoundError):
        asyncio.run(layout.resolve("v2"))
    with pytest.raises(NotFoundError):
        asyncio.run(layout.resolve("sha256:" + "0" * 64))


def test_resolve_a_digest_present_only_as_a_blob(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc, content = manifest("blob-only")
    push(layout, desc, content)
    assert index_entries(tmp_path) == []
    resolved = asyncio.run(layout.resolve(desc.digest))
    assert resolved == desc
    assert resolved.media_type == OCI_MANIFEST


def test_resolve_an_index_present_only_as_a_blob(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    content = json.dumps({"schemaVersion": 2, "manifests": []}).encode()  # no mediaType
    desc = descriptor_for(OCI_INDEX, content)
    push(layout, desc, content)
    assert asyncio.run(layout.resolve(desc.digest)) == desc


def test_resolve_a_layer_digest_is_not_a_manifest(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc = descriptor_for(LAYER, b"\x00\x01 not json")
    push(layout, desc, b"\x00\x01 not json")
    with pytest.raises(InvalidContentError, match="not a manifest"):
        asyncio.run(layout.resolve(desc.digest))


def test_resolve_refuses_a_bad_index_entry(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:nope", "size": 1}
    entry["annotations"] = {REF_NAME_ANNOTATION: "v1"}
    (tmp_path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    with pytest.raises(InvalidContentError, match="bad entry"):
        asyncio.run(OCILayout.open_source(tmp_path).resolve("v1"))


# -- concurrent writers -----------------------------------------------------------------------

ROUNDS = 20


def _tag_many(path: str, desc_json: dict[str, Any], prefix: str, barrier: Any) -> None:
    desc = Descriptor.from_json(desc_json)
    layout = OCILayout(path)

    async def main() -> None:
        for i in range(ROUNDS):
            await layout.tag(desc, [f"{prefix}-{i}"])

    barrier.wait()
    asyncio.run(main())


def _prepared(tmp_path: Path) -> tuple[Path, list[Descriptor]]:
    path = tmp_path / "shared"
    layout = OCILayout(path)
    descs = []
    for seed in ("a", "b"):
        desc, content = manifest(seed)
        push(layout, desc, content)
        descs.append(desc)
    return path, descs


def _expected(descs: list[Descriptor]) -> dict[str, str]:
    return {f"{p}-{i}": d.digest for p, d in zip("ab", descs, strict=True) for i in range(ROUNDS)}


def test_two_processes_tagging_one_layout_keep_every_tag(tmp_path: Path) -> None:
    path, descs = _prepared(tmp_path)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_tag_many, args=(str(path), d.to_json(), p, barrier))
        for p, d in zip("ab", descs, strict=True)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert ref_names(path) == _expected(descs)
    assert len(index_entries(path)) == 2 * ROUNDS
    assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []


def test_two_threads_tagging_one_layout_keep_every_tag(tmp_path: Path) -> None:
    path, descs = _prepared(tmp_path)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(prefix: str, desc: Descriptor) -> None:
        try:
            _tag_many(str(path), desc.to_json(), prefix, barrier)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(p, d)) for p, d in zip("ab", descs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert ref_names(path) == _expected(descs)


def test_index_json_is_replaced_atomically(tmp_path: Path) -> None:
    layout = OCILayout(tmp_path)
    desc, content = manifest("atomic")
    push(layout, desc, content)
    before = os.stat(tmp_path / "index.json").st_ino
    tag(layout, desc, ["v1"])
    assert os.stat(tmp_path / "index.json").st_ino != before
    assert ref_names(tmp_path) == {"v1": desc.digest}
