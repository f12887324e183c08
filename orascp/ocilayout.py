"""Read and write OCI image layout directories (image-spec v1.1 ``image-layout.md``).

A layout is ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``), ``index.json`` (its entry
points; tags are the ``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<hex>``.

Writes are crash-safe and safe between processes:

- a blob is written to ``ingest/`` in the same file system, verified (size and digest) while it is
  written, fsynced, renamed into ``blobs/`` and the directory fsynced, so ``blobs/`` only ever holds
  complete, verified files, and a killed copy leaves at most a stray temporary file in ``ingest/``;
- ``index.json`` is read, changed and replaced (temporary file, fsync, ``os.replace``) while an
  exclusive ``flock`` is held on the layout directory, and it is re-read under that lock, so two
  processes tagging the same layout at once both keep their tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from orascp.content import FetchStream
from orascp.descriptor import (
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    load_json,
    successors,
    validate_digest,
)
from orascp.errors import (
    AlreadyExistsError,
    InvalidContentError,
    NotFoundError,
    OrascpError,
    SizeMismatchError,
    quote,
)
from orascp.referrers import referrer_descriptor, subject_of
from orascp.verify import check_bytes, verified

__all__ = ["REF_NAME_ANNOTATION", "OCILayout"]

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# What a layout directory may hold while orascp is still creating it.
_LAYOUT_ENTRIES = frozenset({"oci-layout", "index.json", "blobs", "ingest"})
_TEMP_PREFIXES = (".oci-layout.", ".index.json.")
LAYOUT_VERSION = "1.0.0"
# Large reads keep per-chunk overhead low; 1 MiB is what the hashing and socket layers like.
READ_CHUNK = 1024 * 1024
# index.json of a layout with thousands of tags is still far below this.
MAX_INDEX_BYTES = 64 * 1024 * 1024
# Manifests above this are refused by every registry and tool (oras, containerd: 4 MiB).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(action: str, path: Path, exc: OSError) -> OrascpError:
    reason = exc.strerror or str(exc)
    hint = None
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        hint = "free some space on the destination file system and run the same command again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check that the layout directory is writable"
    return OrascpError(f"cannot {action} {path}: {reason}", hint=hint)


class OCILayout:
    """Store content in an OCI image layout directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._initialised = False
        # subject digest -> referrers, built on the first referrers() call.
        self._subjects: dict[str, list[Descriptor]] | None = None

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open_source(cls, path: str | os.PathLike[str]) -> OCILayout:
        """Open an existing layout for reading; raise if it is missing or not a layout."""
        layout = cls(path)
        if not layout.path.is_dir():
            raise NotFoundError(f"OCI layout {layout.path} does not exist or is not a directory")
        layout._check_layout_file(required=True)
        return layout

    @classmethod
    def open_destination(cls, path: str | os.PathLike[str]) -> OCILayout:
        """Open a layout for writing without creating anything yet.

        The directory is created on the first write, so a copy whose source cannot be resolved
        leaves no trace. A non-empty directory that is not a layout is refused.
        """
        layout = cls(path)
        if layout.path.exists() or layout.path.is_symlink():
            if not layout.path.is_dir():
                raise InvalidContentError(
                    f"destination {layout.path} exists and is not a directory",
                    hint="give the path of a new or existing OCI layout directory",
                )
            if not layout._check_layout_file(required=False):
                layout._refuse_foreign_files()
            elif (layout.path / "index.json").exists():
                # Checked now, not when tagging: a broken index.json refuses the copy before
                # any blob is written, and is never overwritten.
                layout.read_index()
        return layout

    def _refuse_foreign_files(self) -> None:
        """Refuse a directory holding anything but what a layout being created may hold.

        Another orascp process may be creating the layout right now (or was killed while doing
        it), so ``blobs/``, ``ingest/``, ``index.json`` and our temporary files are tolerated.
        """
        foreign = [
            entry.name
            for entry in self.path.iterdir()
            if entry.name not in _LAYOUT_ENTRIES and not entry.name.startswith(_TEMP_PREFIXES)
        ]
        if foreign:
            raise InvalidContentError(
                f"destination {self.path} is a non-empty directory without an oci-layout"
                f" file (it holds {quote(sorted(foreign)[0])}); refusing to write into it",
                hint="give the path of a new or empty directory, or of an OCI layout",
            )

    def _check_layout_file(self, *, required: bool) -> bool:
        marker = self.path / "oci-layout"
        try:
            raw = marker.read_bytes()
        except FileNotFoundError:
            if required:
                raise NotFoundError(
                    f"{self.path} is not an OCI layout: it has no oci-layout file"
                ) from None
            return False
        except OSError as exc:
            raise _io_error("read", marker, exc) from None
        try:
            version = load_json(raw).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if version != LAYOUT_VERSION:
            raise InvalidContentError(
                f"{marker} declares an unsupported layout version {quote(version)}"
                f" (supported: {LAYOUT_VERSION})"
            )
        return True

    def _initialise(self) -> None:
        """Create the directory, ``oci-layout`` and ``index.json`` if they are missing."""
        if self._initialised:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not self._check_layout_file(required=False):
                    # Checked again under the lock: open_destination could only look.
                    self._refuse_foreign_files()
                    self._write_atomic(
                        self.path / "oci-layout",
                        json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode(),
                    )
                if not (self.path / "index.json").exists():
                    self._write_atomic(self.path / "index.json", _encode_index(_empty_index()))
                (self.path / "blobs").mkdir(exist_ok=True)
        except OSError as exc:
            raise _io_error("create the layout in", self.path, exc) from None
        self._initialised = True

    # -- reading ----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Return where a blob lives; the digest is validated before it becomes a path."""
        algorithm, _, encoded = validate_digest(digest).partition(":")
        return self.path / "blobs" / algorithm / encoded

    def _stat_blob(self, desc: Descriptor) -> os.stat_result | None:
        path = self.blob_path(desc.digest)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error("inspect", path, exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise InvalidContentError(
                f"{path} is not a regular file (a symlink or a directory); refusing to use it"
            )
        return st

    def check(self, desc: Descriptor) -> None:
        """Raise unless a regular file of the right size holds ``desc`` (no symlinks)."""
        st = self._stat_blob(desc)
        if st is None:
            raise NotFoundError(f"{desc.digest}: blob not found in {self.path}")
        if st.st_size != desc.size:
            raise SizeMismatchError(
                f"{desc.digest} in {self.path} is {st.st_size} bytes, the descriptor says"
                f" {desc.size}"
            )

    async def exists(self, desc: Descriptor) -> bool:
        """Tell whether a complete blob of the right size is stored for ``desc``."""
        st = self._stat_blob(desc)
        # A file of the wrong size is a leftover of a non-atomic writer: treat it as missing.
        return st is not None and st.st_size == desc.size

    @asynccontextmanager
    async def _open(self, desc: Descriptor) -> AsyncIterator[AsyncIterator[bytes]]:
        path = self.blob_path(desc.digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFoundError(f"{desc.digest}: blob not found in {self.path}") from None
        except OSError as exc:
            raise _io_error("read", path, exc) from None

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                try:
                    chunk = os.read(fd, READ_CHUNK)
                except OSError as exc:
                    raise _io_error("read", path, exc) from None
                if not chunk:
                    return
                yield chunk

        try:
            yield chunks()
        finally:
            os.close(fd)

    def fetch(self, desc: Descriptor) -> FetchStream:
        """Return a stream of the stored bytes of ``desc`` (verified by whoever consumes them)."""
        return self._open(desc)

    def read_index(self) -> dict[str, Any]:
        """Return the parsed ``index.json``; raise if it is unreadable or malformed."""
        path = self.path / "index.json"
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_INDEX_BYTES + 1)
        except FileNotFoundError:
            return _empty_index()
        except OSError as exc:
            raise _io_error("read", path, exc) from None
        if len(raw) > MAX_INDEX_BYTES:
            raise InvalidContentError(f"{path} is larger than {MAX_INDEX_BYTES} bytes")
        try:
            index = load_json(raw)
        except ValueError as exc:
            raise InvalidContentError(
                f"{path} is not valid JSON ({exc}); refusing to use or overwrite it",
                hint="restore index.json from a backup or copy into a new layout directory",
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise InvalidContentError(f"{path} is not an OCI image index; refusing to use it")
        return index

    async def resolve(self, reference: str) -> Descriptor:
        """Return the descriptor a tag (``ref.name``) or a digest names in this layout."""
        entries = self.read_index().get("manifests", [])
        if reference.startswith(("sha256:", "sha512:")):
            for entry in entries:
                if isinstance(entry, dict) and entry.get("digest") == reference:
                    return _entry_descriptor(entry, self.path)
            return self._describe_blob(reference)
        found = None
        for entry in entries:
            annotations = entry.get("annotations") if isinstance(entry, dict) else None
            if isinstance(annotations, dict) and annotations.get(REF_NAME_ANNOTATION) == reference:
                found = entry  # the last entry wins, as when a tag is overwritten
        if found is None:
            raise NotFoundError(f"{reference}: not found in OCI layout {self.path}")
        return _entry_descriptor(found, self.path)

    async def tags(self) -> list[str]:
        """List the tags (``ref.name`` annotations) of ``index.json``, each once, in order."""
        names = [
            _ref_name(e) for e in self.read_index().get("manifests", []) if isinstance(e, dict)
        ]
        return list(dict.fromkeys(n for n in names if n))

    async def referrers(self, desc: Descriptor) -> list[Descriptor]:
        """List the manifests of this layout whose ``subject`` is ``desc``.

        A layout has no referrers API: every manifest reachable from ``index.json`` is read once
        and its ``subject`` noted.
        """
        if self._subjects is None:
            self._subjects = self._scan_subjects()
        return list(self._subjects.get(desc.digest, ()))

    def _scan_subjects(self) -> dict[str, list[Descriptor]]:
        subjects: dict[str, list[Descriptor]] = {}
        seen: set[str] = set()
        stack = [
            _entry_descriptor(entry, self.path) for entry in self.read_index().get("manifests", [])
        ]
        while stack:
            desc = stack.pop()
            if desc.digest in seen or desc.media_type not in MANIFEST_MEDIA_TYPES:
                continue
            seen.add(desc.digest)
            content = self._read_manifest(desc)
            if content is None:
                continue  # missing or damaged: the copy itself will report it if it needs it
            subject = subject_of(desc.media_type, content)
            if subject is not None:
                listed = referrer_descriptor(desc, content)
                subjects.setdefault(subject.digest, []).append(listed)
            try:
                stack.extend(successors(desc, content))
            except InvalidContentError:
                continue
        return subjects

    def _read_manifest(self, desc: Descriptor) -> bytes | None:
        """Return a manifest's verified bytes, or None if it is absent, too large or damaged."""
        if desc.size > MAX_MANIFEST_BYTES:
            return None
        try:
            with open(self.blob_path(desc.digest), "rb", opener=_nofollow) as fh:
                content = fh.read(desc.size + 1)
            check_bytes(desc, content)
        except (OSError, OrascpError):
            return None
        return content

    def _describe_blob(self, digest: str) -> Descriptor:
        """Describe a manifest stored as a blob but not listed in ``index.json``."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb", opener=_nofollow) as fh:
                raw = fh.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{digest}: not found in OCI layout {self.path}") from None
        except OSError as exc:
            raise _io_error("read", path, exc) from None
        try:
            obj = load_json(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise InvalidContentError(f"{digest} in {self.path} is not a manifest")
        media_type = obj.get("mediaType")
        if media_type not in MANIFEST_MEDIA_TYPES:
            media_type = OCI_INDEX if "manifests" in obj else OCI_MANIFEST
        return Descriptor(media_type, digest, len(raw))

    # -- writing ----------------------------------------------------------------------------

    async def push(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Write a verified blob: temporary file, fsync, rename, fsync of the directory."""
        final = self.blob_path(desc.digest)
        if await self.exists(desc):
            raise AlreadyExistsError(f"{desc.digest}: already exists in {self.path}")
        await asyncio.to_thread(self._initialise)
        ingest = self.path / "ingest"
        tmp = ingest / f"{desc.hex}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = self._create_temp(tmp)
        except OSError as exc:
            raise _io_error("write", tmp, exc) from None
        try:
            try:
                async for chunk in verified(chunks, desc):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fchmod(fd, 0o444)
                # fsync can take a while for large blobs: keep the event loop free meanwhile.
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            await asyncio.to_thread(_fsync_dir, final.parent)
        except OSError as exc:
            raise _io_error("write", final, exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _create_temp(self, tmp: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            return os.open(tmp, flags, 0o600)
        except FileNotFoundError:
            # ingest/ is created lazily and may have just been removed by another process.
            tmp.parent.mkdir(parents=True, exist_ok=True)
            return os.open(tmp, flags, 0o600)

    async def tag(self, desc: Descriptor, references: list[str]) -> None:
        """Point each reference at ``desc`` in ``index.json``; with none, list ``desc`` untagged."""
        await asyncio.to_thread(self._tag, desc, references)

    def _tag(self, desc: Descriptor, references: list[str]) -> None:
        self._initialise()
        try:
            with self._locked():
                # Re-read under the lock: another process may have tagged since we last looked.
                index = self.read_index()
                manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
                entry = desc.with_annotations(None).to_json()
                if references:
                    names = set(references)
                    manifests = [m for m in manifests if _ref_name(m) not in names]
                    for reference in references:
                        manifests.append({**entry, "annotations": {REF_NAME_ANNOTATION: reference}})
                elif not any(m.get("digest") == desc.digest for m in manifests):
                    manifests.append(entry)
                else:
                    return
                index["manifests"] = manifests
                self._write_atomic(self.path / "index.json", _encode_index(index))
        except OSError as exc:
            raise _io_error("update", self.path / "index.json", exc) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive advisory lock on the layout directory itself (no lock file)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def close(self) -> None:
        """Remove the ``ingest/`` directory if this or an earlier run left it empty."""
        with contextlib.suppress(OSError):
            (self.path / "ingest").rmdir()


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _ref_name(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    return annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None


def _entry_descriptor(entry: Any, path: Path) -> Descriptor:
    try:
        return Descriptor.from_json(entry)
    except InvalidContentError as exc:
        raise InvalidContentError(f"index.json of {path} has a bad entry: {exc}") from None


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def _encode_index(index: dict[str, Any]) -> bytes:
    return json.dumps(index, separators=(",", ":")).encode()
