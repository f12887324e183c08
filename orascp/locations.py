"""Decide where to mount each blob from, and remember where blobs were seen.

The candidates for a blob going to registry R, in order:

1. the repositories given with ``--mount-from`` (the user knows best);
2. the source repository, when the source is another repository of R;
3. the repositories of R that the blob-location cache (:mod:`orascp.blobcache`) last saw holding
   the blob, most recent first, a few at most.

A :class:`BlobLocations` also receives the copy's events (it has the engine hooks' methods) and
records in the cache every blob seen at the destination (copied, mounted, already there) and at a
registry source (pulled). A candidate that turns out not to hold the blob is forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from orascp.blobcache import BlobCache
from orascp.descriptor import Descriptor, is_manifest

__all__ = ["MAX_CACHED_CANDIDATES", "BlobLocations"]

# Each failed candidate costs a request; three covers "the base image is in a few places".
MAX_CACHED_CANDIDATES = 3

Location = tuple[str, str]  # (registry, repository)


class BlobLocations:
    """Offer mount candidates for one destination and record where blobs are."""

    wants_progress: ClassVar[bool] = False

    def __init__(
        self,
        cache: BlobCache | None,
        *,
        destination: Location | None,
        source: Location | None = None,
        explicit: Sequence[str] = (),
        source_mountable: bool = False,
    ) -> None:
        self.cache = cache
        self.destination = destination
        self.source = source
        self.explicit = tuple(explicit)
        # Whether the source repository is on the destination's registry, reached alike.
        self.source_mountable = source_mountable

    # -- candidates ---------------------------------------------------------------------------

    def candidates(self, desc: Descriptor) -> list[str]:
        """Return the repositories of the destination's registry to try mounting ``desc`` from."""
        if self.destination is None:
            return []
        registry, own = self.destination
        out: list[str] = []
        for repository in self.explicit:
            if repository != own and repository not in out:
                out.append(repository)
        if self.source_mountable and self.source is not None and self.source[1] not in out:
            out.append(self.source[1])
        if self.cache is not None:
            out.extend(
                self.cache.candidates(
                    registry, desc.digest, exclude=[own, *out], limit=MAX_CACHED_CANDIDATES
                )
            )
        return out

    def missed(self, desc: Descriptor, repository: str) -> None:
        """Forget a candidate that did not hold the blob (stale cache entry)."""
        if self.cache is not None and self.destination is not None:
            self.cache.forget(self.destination[0], repository, desc.digest)

    # -- recording (engine hooks) ---------------------------------------------------------------

    def _record(self, desc: Descriptor, *, pulled: bool = False) -> None:
        if self.cache is None or is_manifest(desc.media_type):
            return  # only blobs can be mounted
        entries = []
        if self.destination is not None:
            entries.append((*self.destination, desc.digest))
        if pulled and self.source is not None:
            entries.append((*self.source, desc.digest))
        self.cache.record_many(entries)

    def start(self) -> None:
        """Do nothing: the cache opens on first use."""

    def stop(self) -> None:
        """Do nothing: the caller closes the cache."""

    def pre_copy(self, desc: Descriptor) -> None:
        """Ignore a transfer that starts."""

    def post_copy(self, desc: Descriptor) -> None:
        """Record a blob copied: the destination holds it now, the source held it."""
        self._record(desc, pulled=True)

    def on_mounted(self, desc: Descriptor) -> None:
        """Record a blob mounted at the destination."""
        self._record(desc)

    def on_copy_skipped(self, desc: Descriptor) -> None:
        """Record a blob the destination already held."""
        self._record(desc)

    def on_deduplicated(self, desc: Descriptor) -> None:
        """Ignore a repeated descriptor."""

    def on_progress(self, desc: Descriptor, done: int) -> None:
        """Ignore byte progress."""
