"""Record and look up blob locations; share the file between processes; never fail a copy."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orascp import blobcache
from orascp.blobcache import BlobCache, default_path

REGISTRY = "registry.test:5000"
OTHER_REGISTRY = "other.test"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
SHA512 = "sha512:" + "ef" * 64
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand: each reading is one second after the previous one."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "blob-locations.sqlite"


@pytest.fixture
def cache(path: Path) -> Iterator[BlobCache]:
    with BlobCache.open(path, clock=Clock()) as opened:
        assert opened.disabled is None
        yield opened


def _rows(path: Path) -> list[tuple[str, str, str, float]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT registry, repository, digest, last_seen FROM blob_locations"
            " ORDER BY registry, repository, digest"
        ).fetchall()
    finally:
        conn.close()


def _assert_no_op(cache: BlobCache) -> None:
    """Check that every method of a disabled cache returns quietly and empty."""
    cache.record(REGISTRY, "a/b", DIGEST)
    cache.record_many([(REGISTRY, "a/c", DIGEST), (REGISTRY, "a/d", DIGEST)])
    cache.forget(REGISTRY, "a/b", DIGEST)
    assert cache.candidates(REGISTRY, DIGEST) == []
    cache.close()


# Recording and looking up


def test_candidates_come_most_recently_confirmed_first(cache: BlobCache) -> None:
    cache.record(REGISTRY, "team/old", DIGEST)
    cache.record(REGISTRY, "team/middle", DIGEST)
    cache.record(REGISTRY, "team/new", DIGEST)
    assert cache.candidates(REGISTRY, DIGEST) == ["team/new", "team/middle", "team/old"]

    # Seeing the blob again in the oldest repository makes it the freshest.
    cache.record(REGISTRY, "team/old", DIGEST)
    assert cache.candidates(REGISTRY, DIGEST) == ["team/old", "team/new", "team/middle"]


def test_a_lagging_clock_does_not_age_an_entry(path: Path) -> None:
    clock = Clock()
    with BlobCache.open(path, clock=clock) as cache:
        cache.record(REGISTRY, "a/first", DIGEST)
        cache.record(REGISTRY, "a/second", DIGEST)
        clock.now = 0.0  # another process, its clock behind
        cache.record(REGISTRY, "a/second", DIGEST)
        cache.record(REGISTRY, "a/first", DIGEST)
        assert cache.candidates(REGISTRY, DIGEST) == ["a/second", "a/first"]


def test_candidates_honour_limit_and_exclude(cache: BlobCache) -> None:
    for name in ["r/1", "r/2", "r/3", "r/4", "r/5"]:
        cache.record(REGISTRY, name, DIGEST)

    assert cache.candidates(REGISTRY, DIGEST) == ["r/5", "r/4", "r/3"]
    assert cache.candidates(REGISTRY, DIGEST, limit=1) == ["r/5"]
    assert cache.candidates(REGISTRY, DIGEST, limit=10) == ["r/5", "r/4", "r/3", "r/2", "r/1"]
    assert cache.candidates(REGISTRY, DIGEST, limit=0) == []
    # Excluded repositories do not use up the limit.
    assert cache.candidates(REGISTRY, DIGEST, exclude=["r/5", "r/3"]) == ["r/4", "r/2", "r/1"]
    assert cache.candidates(REGISTRY, DIGEST, exclude=iter(["r/4"]), limit=2) == ["r/5", "r/3"]
    # A lone name is one repository, not a set of letters.
    assert cache.candidates(REGISTRY, DIGEST, exclude="r/5", limit=1) == ["r/4"]


def test_registries_and_digests_are_kept_apart(cache: BlobCache) -> None:
    cache.record(REGISTRY, "shared/name", DIGEST)
    cache.record(OTHER_REGISTRY, "only/there", DIGEST)
    cache.record(REGISTRY, "other/blob", OTHER_DIGEST)

    assert cache.candidates(REGISTRY, DIGEST) == ["shared/name"]
    assert cache.candidates(OTHER_REGISTRY, DIGEST) == ["only/there"]
    assert cache.candidates(REGISTRY, OTHER_DIGEST) == ["other/blob"]
    assert cache.candidates(OTHER_REGISTRY, OTHER_DIGEST) == []
    assert cache.candidates("unknown.test", DIGEST) == []


def test_forget_drops_one_location_only(cache: BlobCache) -> None:
    cache.record(REGISTRY, "a/gone", DIGEST)
    cache.record(REGISTRY, "a/kept", DIGEST)
    cache.record(OTHER_REGISTRY, "a/gone", DIGEST)
    cache.record(REGISTRY, "a/gone", OTHER_DIGEST)

    cache.forget(REGISTRY, "a/gone", DIGEST)
    cache.forget(REGISTRY, "never/seen", DIGEST)

    assert cache.candidates(REGISTRY, DIGEST) == ["a/kept"]
    assert cache.candidates(OTHER_REGISTRY, DIGEST) == ["a/gone"]
    assert cache.candidates(REGISTRY, OTHER_DIGEST) == ["a/gone"]
    assert cache.disabled is None


def test_record_many_writes_every_valid_entry_at_one_time(path: Path) -> None:
    with BlobCache.open(path, clock=Clock()) as cache:
        cache.record_many(
            [
                (REGISTRY, "m/one", DIGEST),
                (REGISTRY, "m/two", SHA512),
                (REGISTRY, "m/bad", "sha256:short"),
                (OTHER_REGISTRY, "m/three", DIGEST),
            ]
        )
        cache.record_many([])
        cache.record_many(iter([(REGISTRY, "m/gen", DIGEST)]))
    assert _rows(path) == [
        (OTHER_REGISTRY, "m/three", DIGEST, 1001.0),
        (REGISTRY, "m/gen", DIGEST, 1002.0),
        (REGISTRY, "m/one", DIGEST, 1001.0),
        (REGISTRY, "m/two", SHA512, 1001.0),
    ]


@pytest.mark.parametrize(
    ("registry", "repository", "digest"),
    [
        (REGISTRY, "a/b", "sha256:" + "AB" * 32),  # digests are lowercase hex
        (REGISTRY, "a/b", "sha256:" + "ab" * 31),
        (REGISTRY, "a/b", "sha256:" + "ab" * 33),
        (REGISTRY, "a/b", "sha512:" + "ab" * 32),
        (REGISTRY, "a/b", "md5:" + "ab" * 16),
        (REGISTRY, "a/b", DIGEST + "\n"),
        (REGISTRY, "a/b", ""),
        ("", "a/b", DIGEST),
        (REGISTRY, "", DIGEST),
        ("user:secret@" + REGISTRY, "a/b", DIGEST),  # credentials must never be stored
        ("https://" + REGISTRY, "a/b", DIGEST),
        (REGISTRY, "a/b:tag", DIGEST),
        (REGISTRY, "a/b@" + DIGEST, DIGEST),
        (REGISTRY, "a" * 256, DIGEST),
        (REGISTRY, "a b", DIGEST),
        (None, "a/b", DIGEST),
        (REGISTRY, 7, DIGEST),
    ],
)
def test_invalid_locations_are_ignored(
    cache: BlobCache, path: Path, registry: object, repository: object, digest: object
) -> None:
    cache.record(registry, repository, digest)  # type: ignore[arg-type]
    cache.record_many([(registry, repository, digest)])  # type: ignore[list-item]
    cache.forget(registry, repository, digest)  # type: ignore[arg-type]
    assert cache.candidates(registry, digest) == []  # type: ignore[arg-type]
    assert cache.disabled is None
    assert _rows(path) == []


def test_malformed_entries_in_record_many_are_skipped(cache: BlobCache) -> None:
    entries: list[object] = [(REGISTRY, "x/y"), "not a tuple", (REGISTRY, "x/ok", DIGEST)]
    cache.record_many(entries)  # type: ignore[arg-type]
    assert cache.candidates(REGISTRY, DIGEST) == ["x/ok"]
    assert cache.disabled is None


def test_locations_persist_across_reopening(path: Path) -> None:
    with BlobCache.open(path, clock=Clock()) as cache:
        cache.record(REGISTRY, "p/older", DIGEST)
        cache.record(REGISTRY, "p/newer", DIGEST)
    # Opened lazily this time: the first call opens the file.
    with BlobCache(path, clock=Clock(2000.0)) as cache:
        assert cache.candidates(REGISTRY, DIGEST) == ["p/newer", "p/older"]
        cache.record(REGISTRY, "p/older", DIGEST)
    with BlobCache(path) as cache:
        assert cache.candidates(REGISTRY, DIGEST) == ["p/older", "p/newer"]
        assert cache.disabled is None


def test_a_closed_cache_does_nothing(path: Path) -> None:
    cache = BlobCache.open(path, clock=Clock())
    cache.record(REGISTRY, "c/before", DIGEST)
    cache.close()
    _assert_no_op(cache)
    cache.close()  # twice is fine
    assert [row[1] for row in _rows(path)] == ["c/before"]


# Schema and size


def test_another_schema_version_is_replaced(path: Path) -> None:
    with BlobCache.open(path, clock=Clock()) as cache:
        cache.record(REGISTRY, "s/old", DIGEST)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()

    with BlobCache.open(path, clock=Clock()) as cache:
        assert cache.disabled is None
        assert cache.candidates(REGISTRY, DIGEST) == []
        cache.record(REGISTRY, "s/new", DIGEST)
        assert cache.candidates(REGISTRY, DIGEST) == ["s/new"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (blobcache.SCHEMA_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_an_unversioned_table_of_another_shape_is_replaced(path: Path) -> None:
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE blob_locations (digest TEXT, location TEXT)")
    conn.commit()
    conn.close()

    with BlobCache.open(path, clock=Clock()) as cache:
        cache.record(REGISTRY, "s/new", DIGEST)
        assert cache.candidates(REGISTRY, DIGEST) == ["s/new"]
        assert cache.disabled is None


def test_the_table_is_pruned_on_open_to_the_newest(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobcache, "MAX_ROWS", 10)
    monkeypatch.setattr(blobcache, "PRUNE_TO", 6)
    monkeypatch.setattr(blobcache, "PRUNE_EVERY", 1_000_000)
    with BlobCache.open(path, clock=Clock()) as cache:
        for i in range(12):
            cache.record(REGISTRY, f"n/{i:02d}", DIGEST)
    assert len(_rows(path)) == 12

    with BlobCache.open(path) as cache:
        assert cache.candidates(REGISTRY, DIGEST, limit=100) == [
            f"n/{i:02d}" for i in range(11, 5, -1)
        ]


def test_a_long_lived_cache_prunes_every_few_writes(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobcache, "MAX_ROWS", 10)
    monkeypatch.setattr(blobcache, "PRUNE_TO", 6)
    monkeypatch.setattr(blobcache, "PRUNE_EVERY", 4)
    with BlobCache.open(path, clock=Clock()) as cache:
        for i in range(11):
            cache.record(REGISTRY, f"n/{i:02d}", DIGEST)
        # 11 rows, above the limit, but the 12th write is the next check.
        assert len(_rows(path)) == 11
        cache.record(REGISTRY, "n/11", DIGEST)
        assert cache.candidates(REGISTRY, DIGEST, limit=100) == [
            f"n/{i:02d}" for i in range(11, 5, -1)
        ]


# Files and permissions


def test_the_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "blob-locations.sqlite"
    old_umask = os.umask(0o002)  # a permissive umask must not make the cache readable by others
    try:
        with BlobCache.open(path) as cache:
            cache.record(REGISTRY, "a/b", DIGEST)
            files = [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}
            assert modes[path.name] == 0o600
            assert set(modes.values()) == {0o600}
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert cache.disabled is None
    finally:
        os.umask(old_umask)


def test_default_path_honours_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "orascp" / "blob-locations.sqlite"

    home_cache = tmp_path / "home" / ".cache" / "orascp" / "blob-locations.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_path() == home_cache
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec
    assert default_path() == home_cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_path() == home_cache


def test_importing_the_module_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, orascp.blobcache\n"
        "print(sorted({'httpx', 'rich', 'typer', 'sqlite3'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == "[]"


# Failing quietly


def test_a_corrupt_file_disables_the_cache(path: Path) -> None:
    path.parent.mkdir()
    garbage = b"this is not an sqlite database\0" * 200
    path.write_bytes(garbage)

    cache = BlobCache.open(path)
    assert cache.disabled is not None
    assert "not a database" in cache.disabled
    _assert_no_op(cache)
    assert path.read_bytes() == garbage


def test_a_corrupt_file_found_lazily_disables_the_cache(path: Path) -> None:
    path.parent.mkdir()
    path.write_bytes(b"\xff" * 4096)
    cache = BlobCache(path)
    assert cache.candidates(REGISTRY, DIGEST) == []
    assert cache.disabled is not None
    _assert_no_op(cache)


def test_a_directory_that_cannot_be_created_disables_the_cache(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way")
    cache = BlobCache.open(tmp_path / "a-file" / "blob-locations.sqlite")
    assert cache.disabled is not None
    _assert_no_op(cache)


def test_a_path_that_is_a_directory_disables_the_cache(path: Path) -> None:
    path.mkdir(parents=True)
    cache = BlobCache.open(path)
    assert cache.disabled is not None
    _assert_no_op(cache)


def test_a_database_locked_too_long_disables_the_cache(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobcache, "BUSY_TIMEOUT", 0.05)
    cache = BlobCache.open(path, clock=Clock())
    cache.record(REGISTRY, "l/before", DIGEST)

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        # Readers do not wait for a writer in WAL mode.
        assert cache.candidates(REGISTRY, DIGEST) == ["l/before"]
        cache.record(REGISTRY, "l/during", DIGEST)
        assert cache.disabled is not None
        assert "locked" in cache.disabled
        _assert_no_op(cache)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [row[1] for row in _rows(path)] == ["l/before"]


# Concurrent processes

WORKER = """
import sys
from pathlib import Path
from orascp.blobcache import BlobCache

path, worker, digest = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cache = BlobCache.open(path)
print("ready", cache.disabled, flush=True)
sys.stdin.readline()  # start writing only when every worker has opened the file
for i in range(200):
    cache.record("registry.test", f"worker{worker}/repo{i}", digest)
    if i % 50 == 0:
        cache.candidates("registry.test", digest)
print("done", cache.disabled, flush=True)
cache.close()
"""


def test_concurrent_processes_share_one_file(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(n), DIGEST],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready None\n"
        results = [worker.communicate("go\n", timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    for (out, err), worker in zip(results, workers, strict=True):
        assert (worker.returncode, out, err) == (0, "done None\n", "")
    with BlobCache.open(path) as cache:
        found = cache.candidates("registry.test", DIGEST, limit=10_000)
    assert sorted(found) == sorted(f"worker{w}/repo{i}" for w in range(4) for i in range(200))
