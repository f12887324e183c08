"""Copies into, out of and between OCI image layout directories."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from tests.support.artifacts import (
    OCI_MANIFEST,
    fetch_manifest,
    files_under,
    image,
    layout_tags,
    multi_platform,
    push,
    sample_image,
    tar_gz_layer,
    write_layout,
)
from tests.support.checks import (
    assert_clean_layout,
    assert_layout_holds,
    assert_registry_holds,
    layout_snapshot,
)
from tests.support.cli import (
    finish,
    run_orascp,
    start_orascp,
    start_together,
    status_line,
    wait_for_output_or_exit,
)
from tests.support.registry import Registry

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.mark.integration
def test_registry_to_layout_and_back(registry: Registry, repo: str, tmp_path: Path) -> None:
    host = registry.host
    art = sample_image(repo, layers=2, size=256 * 1024)
    push(host, f"{repo}/app", art, "v1")
    out = tmp_path / "layout"
    source = f"{host}/{repo}/app@{art.digest}"

    res = run_orascp("cp", source, "--to-oci-layout", f"{out}:v1")

    assert res.returncode == 0, res.describe()
    assert res.lines[-2:] == [
        f"Copied [registry] {source} => [oci-layout] {out}:v1",
        f"Digest: {art.digest}",
    ]
    assert (out / "oci-layout").is_file()
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": art.digest,
            "size": len(art.root.data),
            "annotations": {REF_NAME: "v1"},
        }
    ]
    assert layout_tags(out) == {"v1": art.digest}
    assert_layout_holds(out, art)
    assert files_under(out / "ingest") == []
    assert_clean_layout(out, art)

    restored = f"{repo}/restored/app"
    mark = registry.mark()
    # Without the blob-location cache: the copy above taught it where the blobs are, and this
    # test is about uploading from a layout (test_blob_cache.py covers mounting instead).
    back = run_orascp(
        "cp", "--no-blob-cache", "--from-oci-layout", f"{out}:v1", f"{host}/{restored}:v1"
    )

    assert back.returncode == 0, back.describe()
    assert back.lines[-2:] == [
        f"Copied [oci-layout] {out}:v1 => [registry] {host}/{restored}:v1",
        f"Digest: {art.digest}",
    ]
    counts = registry.counts(mark)
    assert counts["blob GET"] == 0
    assert counts["mount POST 201"] + counts["mount POST 202"] == 0
    assert counts["upload PUT"] == len(art.blobs)
    assert fetch_manifest(host, restored, "v1") == (art.root.media_type, art.root.data)
    assert_registry_holds(host, restored, art)


@pytest.mark.integration
def test_layout_to_layout(tmp_path: Path) -> None:
    art = multi_platform("layout-to-layout")
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_layout(src, art, "v1")
    before = layout_snapshot(src)
    src_index = (src / "index.json").read_bytes()

    res = run_orascp(
        "cp", "--from-oci-layout", f"{src}@{art.digest}", "--to-oci-layout", f"{dst}:v1"
    )

    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    assert res.lines[-3:] == [
        status_line("Copied", art.root),
        f"Copied [oci-layout] {src}@{art.digest} => [oci-layout] {dst}:v1",
        f"Digest: {art.digest}",
    ]
    assert layout_tags(dst) == {"v1": art.digest}
    assert_layout_holds(dst, art)
    assert_clean_layout(dst, art)
    # The source is only read.
    assert layout_snapshot(src) == before
    assert (src / "index.json").read_bytes() == src_index


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fresh", "aligned", "processes", "rounds"),
    [(False, False, 2, 4), (False, True, 2, 4), (True, True, 4, 6)],
    ids=["same-dir", "same-dir-aligned-start", "new-dir-each-round-aligned-start"],
)
def test_concurrent_copies_into_one_layout_keep_every_tag(
    fresh: bool, aligned: bool, processes: int, rounds: int, repo: str, tmp_path: Path
) -> None:
    """Processes tag one layout at once; none loses another's tag or blobs.

    The plain variant starts two ``orascp`` console scripts one after the other; the aligned
    variants release the processes at the same instant (see ``start_together``) so that they
    really do create, fill and tag the layout at the same time. The last variant makes every
    round create a new layout, the most delicate moment, with four processes at once.
    """
    base = tar_gz_layer(repo.encode() * 4096, title="base.tar.gz")  # written by every process
    a = image([base, tar_gz_layer(b"a" * 20000, title="a.tar.gz")])
    b = image([base, tar_gz_layer(b"b" * 20000, title="b.tar.gz")])
    src = tmp_path / "src"
    write_layout(src, a, "a")
    write_layout(src, b, "b")

    expected: dict[str, str] = {}
    for round_ in range(rounds):
        dst = tmp_path / (f"dst{round_}" if fresh else "dst")
        if fresh:
            expected = {}
        jobs = [(a, "a") if i % 2 == 0 else (b, "b") for i in range(processes)]
        tags = [f"r{round_}-p{i}-{name}" for i, (_, name) in enumerate(jobs)]
        commands = [
            ["cp", "--from-oci-layout", f"{src}:{name}", "--to-oci-layout", f"{dst}:{tag}"]
            for (_, name), tag in zip(jobs, tags, strict=True)
        ]
        if aligned:
            procs = start_together(*commands)
        else:
            procs = [start_orascp(*command) for command in commands]
        results = [finish(p) for p in procs]
        for res, (art, _) in zip(results, jobs, strict=True):
            assert res.returncode == 0, f"round {round_}\n{res.describe()}"
            assert res.lines[-1] == f"Digest: {art.digest}"
        expected.update({tag: art.digest for tag, (art, _) in zip(tags, jobs, strict=True)})
        assert layout_tags(dst) == expected, f"round {round_}"
        assert_layout_holds(dst, a)
        assert_layout_holds(dst, b)
        assert_clean_layout(dst, a, b)


@pytest.mark.integration
def test_copies_into_a_layout_another_process_is_updating(repo: str, tmp_path: Path) -> None:
    """Two copies start while another writer holds the layout's lock; both finish once it lets go.

    The layout's documented protocol between processes is an exclusive ``flock`` on the layout
    directory. The test holds it, standing in for a third orascp in the middle of an update of
    ``index.json``, while copy A starts into the (empty) directory and gets as far as it can,
    then copy B starts. Whatever A has written by then is a layout being initialised by another
    process, which B must accept rather than refuse.
    """
    a = image([tar_gz_layer(b"a" * 20000, title="a.tar.gz")])
    b = image([tar_gz_layer(b"b" * 20000, title="b.tar.gz")])
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_layout(src, a, "a")
    write_layout(src, b, "b")
    dst.mkdir()

    lock = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = start_orascp("cp", "--from-oci-layout", f"{src}:a", "--to-oci-layout", f"{dst}:a")
        # A prints its first status line just before it writes; bounded, as an implementation
        # may also wait for the lock before printing anything.
        wait_for_output_or_exit(first, timeout=10)
        second = start_orascp("cp", "--from-oci-layout", f"{src}:b", "--to-oci-layout", f"{dst}:b")
        wait_for_output_or_exit(second, timeout=10)
    finally:
        os.close(lock)  # releases the lock
    results = [finish(first), finish(second)]

    for res, art in zip(results, (a, b), strict=True):
        assert res.returncode == 0, res.describe()
        assert res.lines[-1] == f"Digest: {art.digest}"
    assert layout_tags(dst) == {"a": a.digest, "b": b.digest}
    assert_clean_layout(dst, a, b)
