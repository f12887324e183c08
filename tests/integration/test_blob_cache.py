"""The blob-location cache and ``--mount-from``: mounting across registries' repositories.

A copy records where it saw each blob (at the destination, and at a registry source) in a SQLite
file (``--blob-cache PATH``, default ``$XDG_CACHE_HOME/orascp/blob-locations.sqlite``); a later
copy to that registry offers those repositories as mount sources, so the bytes need not move
again, even from another registry or an OCI layout. ``--mount-from REPO`` names candidates
explicitly (tried first); ``--no-blob-cache`` neither reads nor updates the cache. A stale entry
(a repository that no longer holds the blob) costs one refused mount and is forgotten.

Every test gets its own ``$XDG_CACHE_HOME`` (tests/conftest.py), so the default cache starts
empty; tests that share a cache between runs pass the same ``--blob-cache`` to each.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orascp.blobcache import BlobCache
from tests.support.accesslog import all_requests, mounts_of, query, touching, uploads_of
from tests.support.artifacts import (
    Artifact,
    fetch_manifest,
    image,
    push,
    sample_image,
    tar_gz_layer,
    write_layout,
)
from tests.support.authdata import ALICE_PASSWORD, BOB_PASSWORD
from tests.support.authhttp import client_for, push_artifact
from tests.support.checks import assert_registry_holds
from tests.support.cli import Result, finish, run_orascp, start_together, status_line
from tests.support.registry import Registry, Request

pytest_plugins = ["tests.support.authfixtures"]

pytestmark = pytest.mark.integration

# An hour ahead of every entry orascp writes during the test: recorded with this clock, an entry
# is the most recently confirmed one, so it is the first cached candidate offered.
AHEAD = 3600.0


def future_clock() -> float:
    return time.time() + AHEAD


def blob_mounts(requests: list[Request], art: Artifact) -> dict[str, list[tuple[int, str]]]:
    """Return, per blob of ``art``, the ``(status, from)`` of every mount POST, in order."""
    return {
        blob.digest: [
            (r.status, query(r).get("from", "")) for r in mounts_of(requests, blob.digest)
        ]
        for blob in art.blobs
    }


def cached(path: Path, host: str, digest: str) -> list[str]:
    """Return every repository the cache file lists for ``digest`` on ``host``."""
    with BlobCache(path) as cache:
        found = cache.candidates(host, digest, limit=100)
        assert cache.disabled is None, cache.disabled
    return found


def record(path: Path, host: str, repository: str, digests: list[str]) -> None:
    """Record ``repository`` of ``host`` as holding ``digests``, newer than anything else."""
    with BlobCache(path, clock=future_clock) as cache:
        for digest in digests:
            cache.record(host, repository, digest)
        assert cache.disabled is None, cache.disabled


def copied_ok(res: Result) -> None:
    assert res.returncode == 0, res.describe()
    assert res.stderr == "", res.describe()


def assert_all_mounted(res: Result, art: Artifact) -> None:
    blobs = art.blobs
    assert sorted(res.lines[: len(blobs)]) == sorted(status_line("Mounted", b) for b in blobs), (
        res.describe()
    )
    assert res.verbs("Mounted") == res.statuses[: len(blobs)]
    # Only the manifest moves.
    assert [s.short for s in res.verbs("Copied")] == [art.root.digest.split(":")[1][:12]]


def assert_all_uploaded(res: Result, art: Artifact) -> None:
    expected = {status_line(v, b) for v in ("Copying", "Copied") for b in art.blobs}
    assert sorted(res.lines[: 2 * len(art.blobs)]) == sorted(expected), res.describe()
    assert res.verbs("Mounted") == []


# -- mounting from the cache -------------------------------------------------------------------


@pytest.mark.parametrize("second_source", ["registry", "oci-layout"])
def test_second_copy_mounts_from_the_repository_the_first_one_filled(
    second_source: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=3, size=8192)
    push(a, f"{repo}/x", art, "v1")
    cache = tmp_path / "blob-locations.sqlite"
    blobs = art.blobs

    b_mark = other_registry.mark()
    first = run_orascp("cp", "--blob-cache", str(cache), f"{a}/{repo}/x:v1", f"{b}/{repo}/z:v1")
    copied_ok(first)
    assert_all_uploaded(first, art)
    first_requests = other_registry.requests()[b_mark:]
    assert other_registry.counts(b_mark)["upload PUT"] == len(blobs)
    for blob in blobs:
        assert len(uploads_of(first_requests, blob.digest)) == 1
        # The first run (a separate process) left the destination and the source in the file.
        assert f"{repo}/z" in cached(cache, b, blob.digest)
        assert f"{repo}/x" in cached(cache, a, blob.digest)

    if second_source == "registry":
        source = [f"{a}/{repo}/x:v1"]
    else:
        layout = tmp_path / "layout"
        write_layout(layout, art, "v1")
        source = ["--from-oci-layout", f"{layout}:v1"]
    a_mark, b_mark = registry.mark(), other_registry.mark()
    second = run_orascp("cp", "--blob-cache", str(cache), *source, f"{b}/{repo}/y:v1")

    copied_ok(second)
    assert_all_mounted(second, art)
    requests = other_registry.requests()[b_mark:]
    counts = other_registry.counts(b_mark)
    assert counts["mount POST 201"] == len(blobs)
    assert counts["mount POST 202"] == 0
    assert counts["upload POST"] == 0
    assert counts["upload PUT"] == 0
    assert counts["upload PATCH"] == 0
    assert blob_mounts(requests, art) == {blob.digest: [(201, f"{repo}/z")] for blob in blobs}
    for r in mounts_of(requests, blobs[0].digest):
        assert touching([r], f"{repo}/y") == [r]  # the mount went into the destination
    # Not a byte was read from the source registry.
    assert registry.counts(a_mark)["blob GET"] == 0
    assert fetch_manifest(b, f"{repo}/y", "v1") == (art.root.media_type, art.root.data)
    assert_registry_holds(b, f"{repo}/y", art)
    for blob in blobs:
        assert {f"{repo}/z", f"{repo}/y"} <= set(cached(cache, b, blob.digest))


def test_default_cache_file_and_no_blob_cache(
    registry: Registry, other_registry: Registry, repo: str, private_cache: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(a, f"{repo}/x", art, "v1")
    blobs = art.blobs
    default = private_cache / "orascp" / "blob-locations.sqlite"
    assert not default.exists()

    copied_ok(run_orascp("cp", f"{a}/{repo}/x:v1", f"{b}/{repo}/z:v1"))
    assert default.is_file()
    for blob in blobs:
        assert cached(default, b, blob.digest) == [f"{repo}/z"]

    # --no-blob-cache: the cache says z holds every blob, and it is not asked.
    mark = other_registry.mark()
    res = run_orascp("cp", "--no-blob-cache", f"{a}/{repo}/x:v1", f"{b}/{repo}/n:v1")
    copied_ok(res)
    assert_all_uploaded(res, art)
    requests = other_registry.requests()[mark:]
    counts = other_registry.counts(mark)
    assert counts["upload PUT"] == len(blobs)
    assert counts["mount POST 201"] + counts["mount POST 202"] == 0
    for blob in blobs:
        assert len(uploads_of(requests, blob.digest)) == 1
        # ...nor updated.
        assert cached(default, b, blob.digest) == [f"{repo}/z"]
    assert_registry_holds(b, f"{repo}/n", art)

    # The same copy without the flag reads the default file and mounts.
    mark = other_registry.mark()
    res = run_orascp("cp", f"{a}/{repo}/x:v1", f"{b}/{repo}/y:v1")
    copied_ok(res)
    assert_all_mounted(res, art)
    assert other_registry.counts(mark)["upload PUT"] == 0
    assert blob_mounts(other_registry.requests()[mark:], art) == {
        blob.digest: [(201, f"{repo}/z")] for blob in blobs
    }


# -- stale entries -------------------------------------------------------------------------------


def test_stale_candidate_is_cancelled_forgotten_and_the_next_one_mounts(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(a, f"{repo}/x", art, "v1")
    cache = tmp_path / "cache.sqlite"
    copied_ok(run_orascp("cp", "--blob-cache", str(cache), f"{a}/{repo}/x:v1", f"{b}/{repo}/z:v1"))
    gone = f"{repo}/gone"  # never pushed to: it holds nothing
    digests = [blob.digest for blob in art.blobs]
    record(cache, b, gone, digests)
    for digest in digests:
        assert cached(cache, b, digest)[0] == gone

    mark = other_registry.mark()
    res = run_orascp("cp", "--blob-cache", str(cache), f"{a}/{repo}/x:v1", f"{b}/{repo}/y:v1")

    copied_ok(res)
    assert_all_mounted(res, art)
    requests = other_registry.requests()[mark:]
    counts = other_registry.counts(mark)
    # gone answered 202 (an upload session instead of a mount): cancelled, then z mounted.
    assert blob_mounts(requests, art) == {d: [(202, gone), (201, f"{repo}/z")] for d in digests}
    deletes = [r for r in requests if r.kind == "upload DELETE"]
    assert len(deletes) == len(digests)
    assert all(r.status == 204 for r in deletes), deletes
    assert touching(deletes, f"{repo}/y") == deletes
    assert counts["upload PUT"] == 0
    assert counts["upload PATCH"] == 0
    assert_registry_holds(b, f"{repo}/y", art)
    for digest in digests:
        found = cached(cache, b, digest)
        assert gone not in found
        assert {f"{repo}/z", f"{repo}/y"} <= set(found)


def test_stale_last_candidate_receives_the_upload(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(a, f"{repo}/x", art, "v1")
    cache = tmp_path / "cache.sqlite"
    gone = f"{repo}/gone"
    digests = [blob.digest for blob in art.blobs]
    record(cache, b, gone, digests)

    mark = other_registry.mark()
    res = run_orascp("cp", "--blob-cache", str(cache), f"{a}/{repo}/x:v1", f"{b}/{repo}/y:v1")

    copied_ok(res)
    assert_all_uploaded(res, art)
    requests = other_registry.requests()[mark:]
    counts = other_registry.counts(mark)
    assert blob_mounts(requests, art) == {d: [(202, gone)] for d in digests}
    # The bytes went into the session the refused mount opened: no other session, none left.
    assert counts["upload POST"] == 0
    assert counts["upload DELETE"] == 0
    assert counts["upload PUT"] == len(digests)
    for digest in digests:
        assert len(uploads_of(requests, digest)) == 1
        assert cached(cache, b, digest) == [f"{repo}/y"]
    assert_registry_holds(b, f"{repo}/y", art)


def test_blob_absent_from_the_cache_costs_no_extra_request(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=3, size=4096)
    push(a, f"{repo}/x", art, "v1")
    cache = tmp_path / "cache.sqlite"
    # A cache that knows other blobs of this registry, not these.
    unrelated = sample_image(f"{repo}-unrelated", layers=2, size=512)
    others = [blob.digest for blob in unrelated.blobs if blob not in art.blobs]
    assert len(others) == 2  # the layers (the default config is the same in every image)
    record(cache, b, f"{repo}/elsewhere", others)

    counts = []
    for flags, dst in ((["--blob-cache", str(cache)], "p1"), (["--no-blob-cache"], "p2")):
        a_mark, b_mark = registry.mark(), other_registry.mark()
        res = run_orascp("cp", *flags, f"{a}/{repo}/x:v1", f"{b}/{repo}/{dst}:v1")
        copied_ok(res)
        assert_all_uploaded(res, art)
        counts.append((registry.counts(a_mark), other_registry.counts(b_mark)))

    with_cache, without = counts
    assert with_cache == without
    assert with_cache[1]["mount POST 202"] == 0
    assert with_cache[1]["upload PUT"] == len(art.blobs)


# -- --mount-from ----------------------------------------------------------------------------------


def test_mount_from_names_the_repository_to_mount_from(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(a, f"{repo}/x", art, "v1")
    push(b, f"{repo}/base", art, "base")  # B holds the blobs; no cache knows it

    a_mark, b_mark = registry.mark(), other_registry.mark()
    res = run_orascp(
        "cp",
        "--no-blob-cache",
        "--mount-from",
        f"{repo}/base",
        f"{a}/{repo}/x:v1",
        f"{b}/{repo}/y:v1",
    )

    copied_ok(res)
    assert_all_mounted(res, art)
    requests = other_registry.requests()[b_mark:]
    assert blob_mounts(requests, art) == {
        blob.digest: [(201, f"{repo}/base")] for blob in art.blobs
    }
    assert other_registry.counts(b_mark)["upload PUT"] == 0
    assert registry.counts(a_mark)["blob GET"] == 0
    assert_registry_holds(b, f"{repo}/y", art)


def test_mount_from_is_repeatable_and_tried_before_the_cache(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(a, f"{repo}/x", art, "v1")
    push(b, f"{repo}/base", art, "base")
    push(b, f"{repo}/cached", art, "base")
    cache = tmp_path / "cache.sqlite"
    digests = [blob.digest for blob in art.blobs]
    record(cache, b, f"{repo}/cached", digests)

    mark = other_registry.mark()
    res = run_orascp(
        "cp",
        "--blob-cache",
        str(cache),
        *("--mount-from", f"{repo}/empty"),
        *("--mount-from", f"{repo}/base"),
        f"{a}/{repo}/x:v1",
        f"{b}/{repo}/y:v1",
    )

    copied_ok(res)
    assert_all_mounted(res, art)
    requests = other_registry.requests()[mark:]
    # In the order given, and the cached repository never asked.
    assert blob_mounts(requests, art) == {
        d: [(202, f"{repo}/empty"), (201, f"{repo}/base")] for d in digests
    }
    assert other_registry.counts(mark)["upload PUT"] == 0
    assert_registry_holds(b, f"{repo}/y", art)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--mount-from", "Not_A/Valid Repo"], id="invalid-name"),
        pytest.param(["--mount-from", "a//b"], id="empty-component"),
        pytest.param(["--mount-from", "team/base", "--to-oci-layout"], id="layout-destination"),
    ],
)
def test_mount_from_usage_errors(
    args: list[str], registry: Registry, repo: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    dst = f"{out}:v1" if "--to-oci-layout" in args else f"{registry.host}/{repo}/y:v1"
    before = len(all_requests(registry))
    res = run_orascp("cp", *args, f"{registry.host}/{repo}/x:v1", dst)
    assert res.returncode == 2, res.describe()
    assert res.stdout == ""
    assert res.error_lines, res.describe()
    assert "--mount-from" in res.error_lines[0], res.describe()
    assert len(all_requests(registry)) == before  # refused before any request
    assert not out.exists()


# -- several processes -----------------------------------------------------------------------------


def test_concurrent_processes_share_one_cache(
    registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    a, b = registry.host, other_registry.host
    shared = tar_gz_layer(b"shared base layer " * 256, title="base.tar.gz")
    arts = []
    for i in range(4):
        own = [
            tar_gz_layer(f"{repo} {i} {n}".encode() * 64, title=f"{i}-{n}.tar.gz") for n in (0, 1)
        ]
        config = f'{{"architecture":"amd64","os":"linux","n":{i}}}'.encode()
        art = image([shared, *own], config)
        push(a, f"{repo}/src{i}", art, "v1")
        arts.append(art)
    cache = tmp_path / "shared.sqlite"

    procs = start_together(
        *(
            ["cp", "--blob-cache", str(cache), f"{a}/{repo}/src{i}:v1", f"{b}/{repo}/dst{i}:v1"]
            for i in range(4)
        )
    )
    results = [finish(p) for p in procs]

    for res in results:
        copied_ok(res)
    for i, art in enumerate(arts):
        assert_registry_holds(b, f"{repo}/dst{i}", art)
        for blob in art.blobs:
            assert f"{repo}/dst{i}" in cached(cache, b, blob.digest), (i, blob.digest)
    assert set(cached(cache, b, shared.digest)) == {f"{repo}/dst{i}" for i in range(4)}
    # The blobs pulled from the source registry are recorded there too.
    assert set(cached(cache, a, arts[0].blobs[0].digest)) == {f"{repo}/src0"}


# -- credentials -----------------------------------------------------------------------------------


def test_cached_candidate_the_credentials_cannot_read_is_skipped(
    registry: Registry, token_registry: Registry, repo: str, tmp_path: Path
) -> None:
    """bob may read shared/* and write bob/*: a cached location in alice's repository is refused
    (401), the copy goes on to the next candidate, and the entry is kept for others."""
    t = token_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(registry.host, f"{repo}/x", art, "v1")
    private, shared = f"{repo}/private", f"shared/{repo}/base"
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, private, art, "v1")
        push_artifact(client, shared, art, "v1")
    cache = tmp_path / "cache.sqlite"
    digests = [blob.digest for blob in art.blobs]
    with BlobCache(cache, clock=time.time) as c:
        for digest in digests:
            c.record(t, shared, digest)
    record(cache, t, private, digests)  # newer: offered first
    for digest in digests:
        assert cached(cache, t, digest) == [private, shared]
    dst = f"bob/{repo}/dst"

    mark = token_registry.mark()
    res = run_orascp(
        "cp",
        *("--blob-cache", str(cache), "--concurrency", "1"),
        *("--to-username", "bob", "--to-password-stdin"),
        f"{registry.host}/{repo}/x:v1",
        f"{t}/{dst}:v1",
        input=BOB_PASSWORD + "\n",
    )

    copied_ok(res)
    assert_all_mounted(res, art)
    requests = token_registry.requests()[mark:]
    refused: dict[str, list[int]] = {}
    for digest in digests:
        tried = [(r.status, query(r)["from"]) for r in mounts_of(requests, digest)]
        assert tried[-1] == (201, shared), tried
        statuses = [status for status, source in tried if source == private]
        if statuses:
            refused[digest] = statuses
    # One blob at a time (--concurrency 1): the first refusal is enough, later blobs do not ask
    # again. private was refused, never answered with a mount or an upload session.
    assert len(refused) == 1, refused
    assert set(next(iter(refused.values()))) <= {401, 403}, refused
    successful = token_registry.counts(mark, successful=True)
    assert successful["mount POST 201"] == len(digests)
    assert successful["mount POST 202"] == 0
    assert successful["upload PUT"] == 0
    with client_for(token_registry, "bob", BOB_PASSWORD) as client:
        r = client.get(f"/v2/{dst}/manifests/v1", headers={"Accept": art.root.media_type})
        assert r.status_code == 200
        assert r.content == art.root.data
    # A refusal says nothing about the blob being there: the entry stays for other users.
    for digest in digests:
        assert private in cached(cache, t, digest)


def test_mount_refusals_do_not_fail_a_copy_that_can_upload(
    registry: Registry, token_registry: Registry, repo: str, tmp_path: Path
) -> None:
    t = token_registry.host
    art = sample_image(repo, layers=2, size=4096)
    push(registry.host, f"{repo}/x", art, "v1")
    private = f"{repo}/private"
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, private, art, "v1")
    cache = tmp_path / "cache.sqlite"
    record(cache, t, private, [blob.digest for blob in art.blobs])

    mark = token_registry.mark()
    res = run_orascp(
        "cp",
        "--blob-cache",
        str(cache),
        *("--to-username", "bob", "--to-password-stdin"),
        f"{registry.host}/{repo}/x:v1",
        f"{t}/bob/{repo}/dst:v1",
        input=BOB_PASSWORD + "\n",
    )

    copied_ok(res)
    assert_all_uploaded(res, art)
    successful = token_registry.counts(mark, successful=True)
    assert successful["mount POST 201"] + successful["mount POST 202"] == 0
    assert successful["upload PUT"] == len(art.blobs)
