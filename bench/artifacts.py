"""Build benchmark artifacts on disk, streaming, and push them with a plain HTTP client.

Every layer is a real gzip stream (level 0, "stored" blocks) around a real tar file holding
random bytes: skopeo sniffs layer bytes and would recompress anything else, changing digests.
Nothing here holds a whole layer in memory, and nothing here uses orascp (it is what is measured).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MIB = 1024 * 1024
CHUNK = MIB
TAG = "v1"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class BlobFile:
    """A blob stored in a layout: its descriptor fields and the file holding its bytes."""

    media_type: str
    digest: str
    size: int
    path: Path

    def descriptor(self) -> dict[str, Any]:
        """Return the OCI descriptor of this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Artifact:
    """One benchmark artifact: an OCI image layout on disk and what it holds."""

    label: str
    layout: Path
    config: BlobFile
    layers: tuple[BlobFile, ...]
    manifest_digest: str
    manifest_bytes: bytes
    repo: str
    tag: str = TAG

    @property
    def blobs(self) -> tuple[BlobFile, ...]:
        """Return every blob (config first, then the layers)."""
        return (self.config, *self.layers)

    @property
    def total_bytes(self) -> int:
        """Return the size of every blob together (the manifest left out)."""
        return sum(b.size for b in self.blobs)


@dataclass(frozen=True)
class ArtifactSpec:
    """What to build: a label, the number of layers and the random payload of each layer."""

    label: str
    layers: int
    payload_per_layer: int


class _HashingWriter:
    """A write-only file object that hashes and counts what it passes to the real file."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Write ``data`` to the file, hashing and counting it on the way."""
        self.sha.update(data)
        self.size += len(data)
        self._raw.write(data)
        return len(data)

    def flush(self) -> None:
        """Flush the underlying file."""
        self._raw.flush()


def _tar_header(name: str, size: int) -> bytes:
    """Return the 512-byte ustar header of a regular file of ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def _tar_pieces(name: str, payload: int) -> Iterator[bytes]:
    """Yield a tar file holding ``payload`` random bytes, in pieces of at most 1 MiB."""
    yield _tar_header(name, payload)
    remaining = payload
    while remaining:
        piece = os.urandom(min(CHUNK, remaining))
        remaining -= len(piece)
        yield piece
    yield b"\0" * (-payload % 512) + b"\0" * 1024  # pad the member, then two end blocks


def write_layer(blobs_dir: Path, name: str, payload: int) -> tuple[BlobFile, str]:
    """Write one gzip+tar layer into ``blobs_dir`` streaming; return it and its diff_id."""
    scratch = blobs_dir / f".{name}.partial"
    tar_sha = hashlib.sha256()
    with open(scratch, "wb") as raw:
        out = _HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=0, mtime=0) as gz:
            for piece in _tar_pieces(name, payload):
                tar_sha.update(piece)
                gz.write(piece)
    hex_digest = out.sha.hexdigest()
    final = blobs_dir / hex_digest
    scratch.rename(final)
    blob = BlobFile(OCI_LAYER_GZIP, f"sha256:{hex_digest}", out.size, final)
    return blob, f"sha256:{tar_sha.hexdigest()}"


def write_json_blob(blobs_dir: Path, media_type: str, doc: dict[str, Any]) -> BlobFile:
    """Write a JSON document as a blob into ``blobs_dir`` and return it."""
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    hex_digest = hashlib.sha256(data).hexdigest()
    path = blobs_dir / hex_digest
    path.write_bytes(data)
    return BlobFile(media_type, f"sha256:{hex_digest}", len(data), path)


def _image_config(diff_ids: list[str]) -> dict[str, Any]:
    """Return a minimal valid OCI image config for layers with these diff_ids."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "orascp bench"} for _ in diff_ids],
    }


def _write_index(layout: Path, manifest: BlobFile, tag: str) -> None:
    """Write ``oci-layout`` and an ``index.json`` naming ``manifest`` under ``tag``."""
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entry = manifest.descriptor() | {"annotations": {REF_NAME: tag}}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(index))


def build_artifact(spec: ArtifactSpec, root: Path) -> Artifact:
    """Build the OCI image layout of ``spec`` under ``root`` and return it."""
    layout = root / f"layout-{spec.label}"
    blobs_dir = layout / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)
    layers: list[BlobFile] = []
    diff_ids: list[str] = []
    for i in range(spec.layers):
        blob, diff_id = write_layer(
            blobs_dir, f"{spec.label}-layer-{i}.bin", spec.payload_per_layer
        )
        layers.append(blob)
        diff_ids.append(diff_id)
    config = write_json_blob(blobs_dir, OCI_CONFIG, _image_config(diff_ids))
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    manifest = write_json_blob(blobs_dir, OCI_MANIFEST, manifest_doc)
    _write_index(layout, manifest, TAG)
    return Artifact(
        label=spec.label,
        layout=layout,
        config=config,
        layers=tuple(layers),
        manifest_digest=manifest.digest,
        manifest_bytes=manifest.path.read_bytes(),
        repo=f"src-{spec.label.lower()}",
    )


def _file_pieces(path: Path) -> Iterator[bytes]:
    """Yield the bytes of ``path`` in pieces of 1 MiB."""
    with open(path, "rb") as f:
        while piece := f.read(CHUNK):
            yield piece


def _with_digest(location: str, digest: str) -> str:
    """Return the upload ``location`` with ``digest=`` added to its query."""
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def push_blob(client: httpx.Client, host: str, repo: str, blob: BlobFile) -> None:
    """Upload one blob with a POST and a streamed monolithic PUT."""
    started = client.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        raise RuntimeError(f"upload POST for {blob.digest}: HTTP {started.status_code}")
    location = str(started.url.join(started.headers["Location"]))
    done = client.put(
        _with_digest(location, blob.digest),
        content=_file_pieces(blob.path),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
    )
    if done.status_code != 201:
        raise RuntimeError(f"upload PUT for {blob.digest}: HTTP {done.status_code} {done.text}")


def push_artifact(artifact: Artifact, host: str, *, parallel: int = 4) -> None:
    """Push every blob of ``artifact`` (``parallel`` at a time), then its manifest under its tag."""
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [
                pool.submit(push_blob, client, host, artifact.repo, b) for b in artifact.blobs
            ]
            for future in futures:
                future.result()
        url = f"http://{host}/v2/{artifact.repo}/manifests/{artifact.tag}"
        response = client.put(
            url, content=artifact.manifest_bytes, headers={"Content-Type": OCI_MANIFEST}
        )
        if response.status_code != 201:
            raise RuntimeError(f"manifest PUT {url}: HTTP {response.status_code} {response.text}")
        if response.headers.get("Docker-Content-Digest") != artifact.manifest_digest:
            raise RuntimeError(f"manifest PUT {url}: the registry computed another digest")
