"""Remember which repositories of a registry hold a blob, so that a later copy can mount it.

A registry mounts a blob into a repository from another repository of its own
(``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>``) without a byte being sent, but
only when the client names a repository that holds the blob. Like docker's and skopeo's blob-info
caches, this one records each (registry, repository, digest) seen to exist -- found by a HEAD,
pulled, pushed or mounted -- with the time it was last confirmed, so that a copy to that registry
can offer the most recently confirmed repositories as mount sources. A candidate that fails to
mount is forgotten.

The cache is a hint, never a source of truth: a wrong entry costs one refused mount, after which
the blob is uploaded as usual. So it must never fail a copy. Any sqlite or file-system error (a
database locked for longer than ``BUSY_TIMEOUT``, a corrupt or unreadable file, a directory that
cannot be written) turns the cache off for the rest of the process: every method then does
nothing and returns nothing, and ``BlobCache.disabled`` says why, for a debug line.

Design:

- one SQLite file (``default_path()``) shared by concurrent orascp processes: WAL journal, so
  readers never wait for a writer; a busy timeout; one short statement (or one short transaction
  for ``record_many``) per write;
- ``PRAGMA user_version`` holds the schema version; any other version drops and recreates the
  table (losing a cache costs mounts, not data);
- at most ``MAX_ROWS`` rows: above that, the least recently confirmed are deleted down to
  ``PRUNE_TO``; checked on open and every ``PRUNE_EVERY`` writes of a process;
- the file is ``0o600`` in a ``0o700`` directory. It holds registry hosts, repository names,
  digests and times, nothing else: there is no column for credentials, tokens or anything else
  from a request, and a registry that looks like ``user:password@host`` is refused.

Times come from the ``clock`` given to :class:`BlobCache` (``time.time`` by default; tests pass
their own). The connection is opened on first use, or at once by :meth:`BlobCache.open`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    # Imported where used instead: with datetime it costs about 3 ms, on every run, and a copy
    # between OCI layouts never opens the cache.
    import sqlite3

__all__ = [
    "BUSY_TIMEOUT",
    "MAX_ROWS",
    "PRUNE_EVERY",
    "PRUNE_TO",
    "SCHEMA_VERSION",
    "BlobCache",
    "default_path",
]

# Bump on any change to the table: an older or newer file is then dropped and recreated.
SCHEMA_VERSION = 1
# Seconds to wait for another process's write; beyond it the cache turns itself off rather than
# hold up a copy.
BUSY_TIMEOUT = 5.0
# 100k locations (about 25 MB on disk) cover thousands of images, each in several repositories.
MAX_ROWS = 100_000
# Prune below the limit, so that the next prune (a sort of the whole table) is many writes away.
PRUNE_TO = 90_000
# A long-lived process (a big copy) checks the size again after this many writes.
PRUNE_EVERY = 1_000

_TABLE = "blob_locations"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
# Host names, IPv4 and [IPv6] literals, with a port: no '@' or '/', so that a URL with user
# information in it can never be stored.
_REGISTRY_RE = re.compile(r"[A-Za-z0-9.\-:\[\]]{1,255}")
# distribution/reference caps a name at 255 characters; the grammar itself is reference.py's job.
_REPOSITORY_RE = re.compile(r"[A-Za-z0-9._\-/]{1,255}")

_SCHEMA = (
    f"CREATE TABLE {_TABLE} ("
    " registry TEXT NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL,"
    " last_seen REAL NOT NULL,"
    " PRIMARY KEY (registry, repository, digest)"
    ") WITHOUT ROWID",
    f"CREATE INDEX {_TABLE}_by_digest ON {_TABLE} (registry, digest, last_seen)",
)
# max(): a process whose clock lags must not make a fresh entry look old.
_UPSERT = (
    f"INSERT INTO {_TABLE} (registry, repository, digest, last_seen) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)
_COUNT = f"SELECT count(*) FROM {_TABLE}"

_T = TypeVar("_T")


def default_path() -> Path:
    """Return ``$XDG_CACHE_HOME/orascp/blob-locations.sqlite``, else under ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG base directory spec says a relative path is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "orascp" / "blob-locations.sqlite"


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _is_location(entry: object) -> bool:
    """Tell whether ``entry`` is a well-formed (registry, repository, digest) to store."""
    return (
        isinstance(entry, tuple)
        and len(entry) == 3
        and _matches(_REGISTRY_RE, entry[0])
        and _matches(_REPOSITORY_RE, entry[1])
        and _matches(_DIGEST_RE, entry[2])
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY at once, without waiting, when another process wrote in between.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.execute("COMMIT")


def _close_quietly(conn: sqlite3.Connection) -> None:
    import sqlite3

    # Closing rolls back an open transaction; a failure to close is one more reason to let go.
    with suppress(sqlite3.Error):
        conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    with _transaction(conn):
        # Another process may have created the table while this one waited for the lock.
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            conn.execute(f"DROP TABLE IF EXISTS {_TABLE}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def _prune(conn: sqlite3.Connection) -> None:
    (rows,) = conn.execute(_COUNT).fetchone()
    if rows <= MAX_ROWS:
        return
    with _transaction(conn):
        # Counted again under the lock: two processes pruning at once must not both delete.
        (rows,) = conn.execute(_COUNT).fetchone()
        if rows > MAX_ROWS:
            conn.execute(
                f"DELETE FROM {_TABLE} WHERE (registry, repository, digest) IN"
                f" (SELECT registry, repository, digest FROM {_TABLE}"
                " ORDER BY last_seen LIMIT ?)",
                (rows - PRUNE_TO,),
            )


class BlobCache:
    """Record and look up the repositories of a registry known to hold a blob.

    Every method is safe to call from several threads and never raises because of the database:
    after the first failure the cache is off (``disabled`` holds the reason) and does nothing.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Prepare a cache in the file ``path``, opened on first use; ``clock`` dates entries."""
        self.path = path
        # Why the cache turned itself off, for a debug line; None while it works.
        self.disabled: str | None = None
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._writes = 0
        # One connection serves every thread; Python's sqlite3 does not keep a transaction's
        # statements together on its own.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> BlobCache:
        """Open (creating if needed) the cache in ``path`` now; it is disabled if that fails."""
        cache = cls(path, clock=clock)
        with cache._lock:
            cache._connection()
        return cache

    def __enter__(self) -> BlobCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record(self, registry: str, repository: str, digest: str) -> None:
        """Note that ``repository`` on ``registry`` holds ``digest``, as of now."""
        self.record_many([(registry, repository, digest)])

    def record_many(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Note several (registry, repository, digest) locations at once, in one transaction."""
        valid = [entry for entry in entries if _is_location(entry)]
        if not valid:
            return
        now = self._clock()
        rows = [(*entry, now) for entry in valid]

        def write(conn: sqlite3.Connection) -> None:
            if len(rows) == 1:
                # Autocommit: one statement is its own transaction.
                conn.execute(_UPSERT, rows[0])
            else:
                with _transaction(conn):
                    conn.executemany(_UPSERT, rows)
            self._writes += len(rows)
            if self._writes >= PRUNE_EVERY:
                self._writes = 0
                _prune(conn)

        self._run("record", write, None)

    def candidates(
        self, registry: str, digest: str, *, exclude: Iterable[str] = (), limit: int = 3
    ) -> list[str]:
        """Return up to ``limit`` repositories of ``registry`` known to hold ``digest``.

        The most recently confirmed come first; repositories in ``exclude`` (the destination
        itself, say) are left out.
        """
        if limit <= 0 or not (_matches(_REGISTRY_RE, registry) and _matches(_DIGEST_RE, digest)):
            return []
        # A lone repository name passed as ``exclude`` would otherwise exclude its letters.
        skip = {exclude} if isinstance(exclude, str) else set(exclude)

        def look_up(conn: sqlite3.Connection) -> list[str]:
            cursor = conn.execute(
                f"SELECT repository FROM {_TABLE} WHERE registry = ? AND digest = ?"
                " ORDER BY last_seen DESC, repository LIMIT ?",
                (registry, digest, limit + len(skip)),
            )
            return [repo for (repo,) in cursor if repo not in skip][:limit]

        return self._run("look up", look_up, [])

    def forget(self, registry: str, repository: str, digest: str) -> None:
        """Drop one location, a candidate the registry failed to mount from."""
        if not _is_location((registry, repository, digest)):
            return

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"DELETE FROM {_TABLE} WHERE registry = ? AND repository = ? AND digest = ?",
                (registry, repository, digest),
            )

        self._run("forget", delete, None)

    def close(self) -> None:
        """Close the database; the cache does nothing afterwards."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    def _run(self, what: str, op: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        """Run ``op`` on the open database, or return ``default`` if the cache is off or fails."""
        with self._lock:
            conn = self._connection()
            if conn is None:
                return default
            import sqlite3

            try:
                return op(conn)
            except (sqlite3.Error, OSError) as exc:
                self._disable(what, exc)
                return default

    def _connection(self) -> sqlite3.Connection | None:
        """Return the open database, opening it first if needed; None if the cache is off."""
        if self._conn is None and self.disabled is None and not self._closed:
            import sqlite3

            try:
                self._conn = self._connect()
            except (sqlite3.Error, OSError) as exc:
                self._disable("open", exc)
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created here rather than by sqlite so that it is private from the start; sqlite gives
        # the -wal and -shm files the mode of the database file.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT,
            # Transactions are begun explicitly (see _transaction), never behind our back.
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode, NORMAL keeps the file consistent but skips an fsync per commit: a
            # power cut may lose the last few entries, which costs a mount, not a copy.
            conn.execute("PRAGMA synchronous = NORMAL")
            _migrate(conn)
            _prune(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _disable(self, what: str, exc: BaseException) -> None:
        self.disabled = f"{what} in {self.path}: {exc}"
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)
