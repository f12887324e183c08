"""Build sample OCI content without orascp: layouts written by hand, and a plain HTTP pusher.

Tests seed their sources with these helpers so that what is checked (orascp) is never also what
prepared the check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"


def digest_of(data: bytes) -> str:
    """Return the sha256 digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    """Content with its media type and optional annotations."""

    media_type: str
    data: bytes
    annotations: dict[str, str] | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.annotations:
            desc["annotations"] = self.annotations
        desc.update(extra)
        return desc


@dataclass
class Artifact:
    """A graph of content: every blob and manifest, and the root."""

    root: Blob
    blobs: list[Blob] = field(default_factory=list)  # everything but the root, children first

    @property
    def all(self) -> list[Blob]:
        return [*self.blobs, self.root]

    @property
    def digest(self) -> str:
        return self.root.digest


def layer(data: bytes, title: str | None = None) -> Blob:
    """Return a layer blob (labelled tar+gzip, as artifacts commonly are)."""
    return Blob(OCI_LAYER_GZIP, data, {TITLE: title} if title else None)


def tar_gz_layer(payload: bytes, name: str = "data.bin", title: str | None = None) -> Blob:
    """Return a real gzip stream (level 0: stored, fast) around a real tar holding ``payload``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    data = gzip.compress(raw.getvalue(), compresslevel=0, mtime=0)
    return layer(data, title)


def image(
    layers: list[Blob],
    config: bytes | None = None,
    *,
    artifact_type: str | None = None,
    subject: Blob | None = None,
    annotations: dict[str, str] | None = None,
) -> Artifact:
    """Return an OCI image manifest over ``layers``."""
    cfg = Blob(
        OCI_CONFIG,
        config
        if config is not None
        else json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode(),
    )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    if subject is not None:
        manifest["subject"] = subject.descriptor()
    if annotations:
        manifest["annotations"] = annotations
    root = Blob(OCI_MANIFEST, json.dumps(manifest, indent=2).encode())
    unique: dict[str, Blob] = {}
    for b in [cfg, *layers]:
        unique.setdefault(b.digest, b)
    return Artifact(root, list(unique.values()))


def index(children: list[tuple[Artifact, dict[str, Any] | None]]) -> Artifact:
    """Return an OCI image index over ``children`` (each with an optional platform)."""
    manifests = []
    blobs: dict[str, Blob] = {}
    for child, platform in children:
        extra = {"platform": platform} if platform else {}
        manifests.append(child.root.descriptor(**extra))
        for b in child.all:
            blobs.setdefault(b.digest, b)
    root = Blob(
        OCI_INDEX,
        json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, indent=2
        ).encode(),
    )
    return Artifact(root, list(blobs.values()))


def sample_image(seed: str = "sample", layers: int = 3, size: int = 4096) -> Artifact:
    """Return an image of ``layers`` distinct titled layers of ``size`` pseudo-random bytes."""
    blobs = [
        tar_gz_layer(_pseudo_random(f"{seed}-{i}", size), title=f"{seed}-layer-{i}.tar.gz")
        for i in range(layers)
    ]
    return image(blobs)


def multi_platform(seed: str = "multi") -> Artifact:
    """Return an index of three platform images that share one base layer."""
    base = tar_gz_layer(_pseudo_random(f"{seed}-base", 8192), title="base.tar.gz")
    children = []
    for arch in ("amd64", "arm64", "s390x"):
        own = tar_gz_layer(_pseudo_random(f"{seed}-{arch}", 4096), title=f"{arch}.tar.gz")
        cfg = json.dumps({"architecture": arch, "os": "linux"}).encode()
        children.append((image([base, own], cfg), {"architecture": arch, "os": "linux"}))
    return index(children)


def _pseudo_random(seed: str, size: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def write_layout(path: Path, artifact: Artifact, tag: str | None = None) -> None:
    """Write ``artifact`` into an OCI image layout at ``path`` (created if missing)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for blob in artifact.all:
        algorithm, encoded = blob.digest.split(":")
        target = path / "blobs" / algorithm / encoded
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.data)
    index_path = path / "index.json"
    idx = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    entry = artifact.root.descriptor()
    if tag:
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    idx["manifests"].append(entry)
    index_path.write_text(json.dumps(idx))


def push_with(
    client: httpx.Client,
    repository: str,
    artifact: Artifact,
    tag: str | None = None,
    *,
    workers: int = 1,
) -> None:
    """Push ``artifact`` through ``client`` (which has the registry as ``base_url``).

    Bare requests: POST then a monolithic PUT per blob, ``workers`` blobs at a time, then the
    manifests, children first (a registry checks that the content a manifest lists exists).
    """
    from concurrent.futures import ThreadPoolExecutor

    base = f"/v2/{repository}"
    uploads = client.base_url.join(f"{base}/blobs/uploads/")

    def upload(blob: Blob) -> None:
        r = client.post(uploads)
        r.raise_for_status()
        r = client.put(
            uploads.join(r.headers["location"]).copy_merge_params({"digest": blob.digest}),
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()

    is_manifest = {OCI_MANIFEST, OCI_INDEX}
    blobs = [b for b in artifact.all if b.media_type not in is_manifest]
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(upload, blobs))
    else:
        for blob in blobs:
            upload(blob)
    for blob in artifact.all:
        if blob.media_type in is_manifest:
            ref = tag if blob is artifact.root and tag else blob.digest
            r = client.put(
                f"{base}/manifests/{ref}",
                content=blob.data,
                headers={"Content-Type": blob.media_type},
            )
            r.raise_for_status()


def push(host: str, repository: str, artifact: Artifact, tag: str | None = None) -> None:
    """Push ``artifact`` to a plain-HTTP registry with bare POST/PUT requests."""
    with httpx.Client(base_url=f"http://{host}", timeout=60) as client:
        push_with(client, repository, artifact, tag)


def fetch_manifest(host: str, repository: str, reference: str) -> tuple[str, bytes]:
    """Return the media type and bytes of a manifest, read with a bare GET."""
    r = httpx.get(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ", ".join([OCI_MANIFEST, OCI_INDEX])},
        timeout=30,
    )
    r.raise_for_status()
    return r.headers["content-type"], r.content


def fetch_blob(host: str, repository: str, digest: str) -> bytes:
    """Return a blob's bytes, read with a bare GET."""
    r = httpx.get(f"http://{host}/v2/{repository}/blobs/{digest}", timeout=60)
    r.raise_for_status()
    return r.content


def layout_blob(path: Path, digest: str) -> bytes:
    """Return a blob's bytes from a layout directory."""
    algorithm, encoded = digest.split(":")
    return (path / "blobs" / algorithm / encoded).read_bytes()


def layout_tags(path: Path) -> dict[str, str]:
    """Return the layout's tags as ``{ref.name: digest}``."""
    idx = json.loads((path / "index.json").read_text())
    out = {}
    for m in idx["manifests"]:
        name = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if name:
            out[name] = m["digest"]
    return out


def files_under(path: Path) -> list[str]:
    """Return every file below ``path``, relative, sorted (to show nothing else was written)."""
    if not path.exists():
        return []
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
    )


# -- raw content: sources that orascp must refuse, and large graphs ----------------------------


def many_blobs_image(count: int, seed: str = "many", size: int = 300) -> Artifact:
    """Return an image of ``count`` distinct titled layers of about ``size`` bytes each.

    The sizes vary a little (``size`` to ``size + 63``) so that no two blobs could be confused
    by length alone.
    """
    layers = [
        layer(_pseudo_random(f"{seed}-{i}", size + i % 64), title=f"{seed}-{i:04d}.bin")
        for i in range(count)
    ]
    return image(layers)


def push_concurrently(
    host: str, repository: str, artifact: Artifact, tag: str | None = None, workers: int = 16
) -> None:
    """Push ``artifact`` like :func:`push`, its blobs ``workers`` at a time."""
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(base_url=f"http://{host}", timeout=60, limits=limits) as client:
        push_with(client, repository, artifact, tag, workers=workers)


def push_blob(host: str, repository: str, data: bytes) -> str:
    """Upload ``data`` as a blob with a bare POST and PUT; return its digest."""
    base = f"http://{host}/v2/{repository}"
    digest = digest_of(data)
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{base}/blobs/uploads/")
        r.raise_for_status()
        location = httpx.URL(f"{base}/blobs/uploads/").join(r.headers["location"])
        r = client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()
    return digest


def put_manifest(
    host: str, repository: str, reference: str, data: bytes, media_type: str
) -> httpx.Response:
    """PUT ``data`` as a manifest under ``reference`` exactly as given; return the raw answer.

    Nothing is checked or raised: a test decides what the registry's answer means.
    """
    return httpx.put(
        f"http://{host}/v2/{repository}/manifests/{reference}",
        content=data,
        headers={"Content-Type": media_type},
        timeout=30,
    )


def write_layout_blob(path: Path, data: bytes) -> str:
    """Store ``data`` as a blob of the layout at ``path``, nothing else; return its digest."""
    digest = digest_of(data)
    target = path / "blobs" / "sha256" / digest.split(":", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return digest


def write_raw_layout(
    path: Path,
    blobs: list[bytes],
    manifests: list[dict[str, Any]] | bytes,
    *,
    layout_version: str | bytes = "1.0.0",
) -> None:
    """Write a layout by hand from raw parts, whatever they hold.

    ``manifests`` is the list of ``index.json`` entries, or the whole ``index.json`` as bytes;
    ``layout_version`` is the ``imageLayoutVersion`` to declare, or the whole ``oci-layout`` file
    as bytes.
    """
    path.mkdir(parents=True, exist_ok=True)
    if isinstance(layout_version, bytes):
        (path / "oci-layout").write_bytes(layout_version)
    else:
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": layout_version}))
    for data in blobs:
        write_layout_blob(path, data)
    if isinstance(manifests, bytes):
        (path / "index.json").write_bytes(manifests)
    else:
        idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (path / "index.json").write_text(json.dumps(idx))


def tree_snapshot(path: Path) -> dict[str, tuple[str, bytes]]:
    """Return every entry below ``path`` (directories, files, symlinks) with what it holds.

    Files map to ``("file", bytes)``, symlinks to ``("link", target)``, directories to
    ``("dir", b"")``; symlinks are never followed. Two equal snapshots mean nothing was
    created, removed, rewritten or re-pointed.
    """
    out: dict[str, tuple[str, bytes]] = {}
    if not path.exists() and not path.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            rel = os.path.relpath(full, path)
            if full.is_symlink():
                out[rel] = ("link", os.fsencode(os.readlink(full)))
            elif full.is_dir():
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("file", full.read_bytes())
    return out


def fetch_all(
    host: str, repository: str, artifact: Artifact, workers: int = 16
) -> dict[str, tuple[str | None, bytes]]:
    """Read every manifest and blob of ``artifact`` back with bare GETs, ``workers`` at a time.

    Returns ``{digest: (manifest media type or None for a blob, bytes)}``. One client serves
    every request: :func:`fetch_blob` builds a client (and its TLS context) per call, which
    costs about 30 ms, too much for hundreds of blobs.
    """
    from concurrent.futures import ThreadPoolExecutor

    base = f"http://{host}/v2/{repository}"
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(timeout=60, limits=limits) as client:

        def read(blob: Blob) -> tuple[str, tuple[str | None, bytes]]:
            if blob.media_type in (OCI_MANIFEST, OCI_INDEX):
                r = client.get(
                    f"{base}/manifests/{blob.digest}",
                    headers={"Accept": ", ".join([OCI_MANIFEST, OCI_INDEX])},
                )
                r.raise_for_status()
                return blob.digest, (r.headers["content-type"], r.content)
            r = client.get(f"{base}/blobs/{blob.digest}", follow_redirects=True)
            r.raise_for_status()
            return blob.digest, (None, r.content)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(read, artifact.all))
