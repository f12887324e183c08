"""Check what a copy left at its destination, reading it back without orascp."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.artifacts import (
    OCI_INDEX,
    OCI_MANIFEST,
    Artifact,
    digest_of,
    fetch_blob,
    fetch_manifest,
    files_under,
    layout_blob,
)

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX)


def is_manifest(blob_media_type: str) -> bool:
    return blob_media_type in MANIFEST_TYPES


def assert_registry_holds(host: str, repository: str, artifact: Artifact) -> None:
    """Assert that every manifest and blob of ``artifact`` is in the repository, byte for byte."""
    for blob in artifact.all:
        if is_manifest(blob.media_type):
            media_type, data = fetch_manifest(host, repository, blob.digest)
            assert media_type == blob.media_type, blob.digest
        else:
            data = fetch_blob(host, repository, blob.digest)
        assert digest_of(data) == blob.digest
        assert data == blob.data, f"{blob.digest} differs in {host}/{repository}"


def assert_layout_holds(path: Path, artifact: Artifact) -> None:
    """Assert that every manifest and blob of ``artifact`` is in the layout, byte for byte."""
    for blob in artifact.all:
        assert layout_blob(path, blob.digest) == blob.data, f"{blob.digest} differs in {path}"


def assert_clean_layout(path: Path, *artifacts: Artifact) -> None:
    """Assert the layout holds exactly the artifacts' files: no temporary or ingest leftovers."""
    expected = {"oci-layout", "index.json"}
    for artifact in artifacts:
        expected |= {f"blobs/sha256/{b.digest.split(':', 1)[1]}" for b in artifact.all}
    assert set(files_under(path)) == expected
    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((path / "index.json").read_text())
    assert index.get("schemaVersion") == 2
    assert index.get("mediaType", OCI_INDEX) == OCI_INDEX


def layout_snapshot(path: Path) -> dict[str, tuple[int, int, int]]:
    """Return ``{file: (inode, size, mtime_ns)}`` for every blob, to show none was rewritten."""
    out = {}
    for rel in files_under(path):
        if rel.startswith("blobs/"):
            st = (path / rel).stat()
            out[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out
