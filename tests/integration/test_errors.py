"""Failures before any copy: an unknown source, and references orascp refuses to parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.accesslog import all_requests, touching
from tests.support.artifacts import digest_of, push, sample_image
from tests.support.cli import run_orascp
from tests.support.registry import Registry


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["layout", "same-registry", "other-registry"])
def test_unknown_source_tag_fails_and_creates_nothing(
    destination: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    src, dst = f"{repo}/src", f"{repo}/dst"
    push(registry.host, src, sample_image(repo, layers=1, size=1024), "v1")
    source = f"{registry.host}/{src}:nope"
    out = tmp_path / "out"
    if destination == "layout":
        args = ["cp", source, "--to-oci-layout", f"{out}:v1"]
    else:
        dst_registry = other_registry if destination == "other-registry" else registry
        args = ["cp", source, f"{dst_registry.host}/{dst}:v1"]
    marks = {id(r): len(all_requests(r)) for r in (registry, other_registry)}

    res = run_orascp(*args)

    assert res.returncode == 1, res.describe()
    assert res.stdout == ""
    assert len(res.error_lines) == 1, res.stderr
    error = res.error_lines[0]
    assert "source" in error
    assert source in error
    assert "not found" in error.lower()
    assert "MANIFEST_UNKNOWN" in error
    assert "Traceback" not in res.stderr

    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    src_requests = all_requests(registry)[marks[id(registry)] :]
    assert [r.kind for r in touching(src_requests, src)] == ["manifest GET"]
    for reg in (registry, other_registry):
        assert touching(all_requests(reg)[marks[id(reg)] :], dst) == []
    assert all_requests(other_registry)[marks[id(other_registry)] :] == []


INVALID = {
    "uppercase-source-repository": ["cp", "{host}/{repo}/Src:v1", "{host}/{repo}/dst:v1"],
    "uppercase-destination-repository": ["cp", "{host}/{repo}/src:v1", "{host}/{repo}/DST:v1"],
    "source-without-tag-or-digest": ["cp", "{host}/{repo}/src", "{host}/{repo}/dst:v1"],
    "short-source-digest": ["cp", "{host}/{repo}/src@sha256:0123abcd", "{host}/{repo}/dst:v1"],
    "bad-source-tag": ["cp", "{host}/{repo}/src:-v1", "{host}/{repo}/dst:v1"],
    "bad-extra-tag": ["cp", "{host}/{repo}/src:v1", "{host}/{repo}/dst:v1,ok,bad!tag"],
    "destination-tag-and-digest": ["cp", "{host}/{repo}/src:v1", "{host}/{repo}/dst:v1@{digest}"],
    "digest-destination-with-extra-tags": [
        "cp",
        "{host}/{repo}/src:v1",
        "{host}/{repo}/dst@{digest},latest",
    ],
    "missing-repository": ["cp", "{host}/{repo}/src:v1", "{host}"],
    "bad-layout-tag": ["cp", "{host}/{repo}/src:v1", "--to-oci-layout", "{out}:bad!tag"],
    "plain-http-with-layout": [
        "cp",
        "{host}/{repo}/src:v1",
        "--to-oci-layout",
        "--to-plain-http",
        "{out}:v1",
    ],
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_reference_exits_2_without_any_request(
    case: str, registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=1, size=1024)
    push(registry.host, f"{repo}/src", art, "v1")
    out = tmp_path / "out"
    values = {"host": registry.host, "repo": repo, "digest": art.digest, "out": out}
    args = [arg.format(**values) for arg in INVALID[case]]
    before = len(all_requests(registry))

    res = run_orascp(*args)

    assert res.returncode == 2, res.describe()
    assert res.stdout == ""
    assert len(res.error_lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert all_requests(registry)[before:] == []
    assert not out.exists()


@pytest.mark.integration
def test_invalid_reference_names_the_bad_part(registry: Registry, repo: str) -> None:
    bad = f"{registry.host}/{repo}/Src:v1"
    res = run_orascp("cp", bad, f"{registry.host}/{repo}/dst:v1")
    assert res.returncode == 2, res.describe()
    (error,) = res.error_lines
    assert bad in error
    assert "lowercase" in error


@pytest.mark.integration
def test_unknown_digest_source_fails(registry: Registry, repo: str, tmp_path: Path) -> None:
    push(registry.host, f"{repo}/src", sample_image(repo, layers=1, size=1024), "v1")
    missing = digest_of(f"{repo} is not here".encode())
    source = f"{registry.host}/{repo}/src@{missing}"
    res = run_orascp("cp", source, "--to-oci-layout", f"{tmp_path / 'out'}:v1")
    assert res.returncode == 1, res.describe()
    assert res.stdout == ""
    (error,) = res.error_lines
    assert source in error
    assert "not found" in error.lower()
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.parametrize(("side", "flag"), [("from", "--from-insecure"), ("to", "--to-insecure")])
def test_tls_to_a_plain_registry_hints_at_plain_http(
    registry: Registry, repo: str, side: str, flag: str
) -> None:
    host = registry.host
    push(host, f"{repo}/src", sample_image(repo, layers=1, size=64), "v1")

    res = run_orascp("cp", flag, f"{host}/{repo}/src:v1", f"{host}/{repo}/dst:v1")

    assert res.returncode == 1
    error, hint = res.stderr.splitlines()
    name = "source" if side == "from" else "destination"
    assert error.startswith(f"Error: {name} registry ")
    assert hint == (
        f"Hint: 127.0.0.1 answers plain HTTP, not TLS: leave out the TLS options and pass"
        f" --{side}-plain-http"
    )
