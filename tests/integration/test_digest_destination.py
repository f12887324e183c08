"""A destination named by digest: the copy must produce exactly that digest."""

from __future__ import annotations

import httpx
import pytest

from tests.support.accesslog import all_requests, touching
from tests.support.artifacts import digest_of, fetch_manifest, push, sample_image
from tests.support.checks import assert_registry_holds
from tests.support.cli import run_orascp
from tests.support.registry import Registry


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["same-registry", "other-registry"])
def test_destination_by_digest(
    destination: str, registry: Registry, other_registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=8192)
    src, dst = f"{repo}/src", f"{repo}/dst"
    push(registry.host, src, art, "v1")
    dst_registry = other_registry if destination == "other-registry" else registry
    target = f"{dst_registry.host}/{dst}@{art.digest}"

    res = run_orascp("cp", f"{registry.host}/{src}:v1", target)

    assert res.returncode == 0, res.describe()
    assert res.lines[-2:] == [
        f"Copied [registry] {registry.host}/{src}:v1 => [registry] {target}",
        f"Digest: {art.digest}",
    ]
    assert not any(line.startswith("Tagged") for line in res.lines)
    assert fetch_manifest(dst_registry.host, dst, art.digest) == (
        art.root.media_type,
        art.root.data,
    )
    assert_registry_holds(dst_registry.host, dst, art)
    # Pushed by digest only: the destination repository has no tag.
    tags = httpx.get(f"http://{dst_registry.host}/v2/{dst}/tags/list", timeout=10).json()
    assert not tags.get("tags")


@pytest.mark.integration
def test_wrong_destination_digest_is_refused(registry: Registry, repo: str) -> None:
    art = sample_image(repo, layers=1, size=2048)
    src, dst = f"{repo}/src", f"{repo}/dst"
    push(registry.host, src, art, "v1")
    wrong = digest_of(art.root.data + b"\n")
    before = len(all_requests(registry))

    res = run_orascp("cp", f"{registry.host}/{src}:v1", f"{registry.host}/{dst}@{wrong}")

    assert res.returncode == 1, res.describe()
    assert res.stdout == ""
    (error,) = res.error_lines
    assert "destination" in error
    assert wrong in error
    assert art.digest in error
    assert touching(all_requests(registry)[before:], dst) == []
