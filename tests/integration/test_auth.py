"""Authentication and TLS: the real orascp command against TLS, htpasswd and token registries.

The command-line interface under test (per side: ``--from-…`` for the source, ``--to-…`` for the
destination):

- credentials: ``--*-username``, ``--*-password``, ``--*-password-stdin``,
  ``--*-identity-token``, ``--*-registry-config PATH`` (a docker ``config.json``, with
  ``auths``, ``credHelpers`` and ``credsStore``);
- TLS: ``--*-ca-file``, ``--*-insecure``, ``--*-cert-file`` + ``--*-key-file``; a loopback host
  speaks plain HTTP only while its side has none of these;
- ``--*-header 'Name: value'``;
- ``orascp login HOST -u USER --password-stdin [--registry-config PATH] [--ca-file PATH]`` and
  ``orascp logout HOST [--registry-config PATH]``.

Sources are seeded and destinations read back with plain httpx (``tests.support.authhttp``),
never with orascp. The servers are described in ``tests.support.authfixtures``.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.accesslog import uploads_of
from tests.support.artifacts import Artifact, push, sample_image
from tests.support.authdata import (
    ALICE_PASSWORD,
    BOB_PASSWORD,
    credential_helper,
    docker_config,
    stored_auth,
)
from tests.support.authhttp import assert_holds, client_for, push_artifact
from tests.support.cli import Result, run_orascp, short_digest, status_line
from tests.support.pki import Pki
from tests.support.registry import Registry
from tests.support.tokenserver import TokenServer

pytest_plugins = ["tests.support.authfixtures"]

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "wrong-Pa55-0c1d2e"
SIDES = ("from", "to")


def seed(
    registry: Registry,
    repository: str,
    artifact: Artifact,
    user: str | None = "alice",
    password: str = ALICE_PASSWORD,
) -> None:
    """Push ``artifact`` as ``repository:v1`` without orascp."""
    with client_for(registry, user, password) as client:
        push_artifact(client, repository, artifact, "v1")


def assert_copied(
    registry: Registry,
    repository: str,
    artifact: Artifact,
    user: str = "alice",
    password: str = ALICE_PASSWORD,
) -> None:
    """Assert ``repository:v1`` holds ``artifact`` byte for byte (read without orascp)."""
    with client_for(registry, user, password) as client:
        assert_holds(client, repository, artifact, "v1")


def assert_no_tag(registry: Registry, repository: str) -> None:
    with client_for(registry, "alice", ALICE_PASSWORD) as client:
        assert client.get(f"/v2/{repository}/manifests/v1").status_code == 404


def mounted_lines(res: Result) -> list[str]:
    return sorted(f"{s.verb} {s.short} {s.name}" for s in res.verbs("Mounted"))


def assert_secret_not_shown(res: Result, secret: str) -> None:
    assert secret not in res.stdout, res.describe()
    assert secret not in res.stderr, res.describe()


@dataclass(frozen=True)
class Route:
    """A copy between a registry that needs credentials or TLS options and a plain one.

    ``side`` says which end is the demanding registry: ``from`` (the source) or ``to``.
    """

    side: str
    src: str
    dst: str
    dst_registry: Registry
    dst_repository: str


def route(side: str, demanding: Registry, plain: Registry, repo: str, art: Artifact) -> Route:
    """Seed the source of a copy between ``demanding`` and ``plain``; return its references."""
    src, dst = f"{repo}/src", f"{repo}/dst"
    if side == "from":
        seed(demanding, src, art)
        return Route(side, f"{demanding.host}/{src}:v1", f"{plain.host}/{dst}:v1", plain, dst)
    push(plain.host, src, art, "v1")
    return Route(side, f"{plain.host}/{src}:v1", f"{demanding.host}/{dst}:v1", demanding, dst)


# -- TLS registry with Basic auth


def test_copy_from_tls_registry_with_ca_file(
    tls_registry: Registry, registry: Registry, pki: Pki, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=8192)
    r = route("from", tls_registry, registry, repo, art)
    res = run_orascp(
        "cp",
        "--from-ca-file",
        str(pki.ca),
        "--from-username",
        "alice",
        "--from-password-stdin",
        r.src,
        r.dst,
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    assert res.lines[-2:] == [
        f"Copied [registry] {r.src} => [registry] {r.dst}",
        f"Digest: {art.digest}",
    ]
    assert_copied(r.dst_registry, r.dst_repository, art)


def test_copy_to_tls_registry_with_ca_file(
    tls_registry: Registry, registry: Registry, pki: Pki, repo: str
) -> None:
    art = sample_image(repo, layers=2, size=8192)
    r = route("to", tls_registry, registry, repo, art)
    res = run_orascp(
        "cp",
        "--to-ca-file",
        str(pki.ca),
        "--to-username",
        "alice",
        "--to-password-stdin",
        r.src,
        r.dst,
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    assert res.lines[-1] == f"Digest: {art.digest}"
    assert_copied(r.dst_registry, r.dst_repository, art)


def test_copy_within_tls_registry_mounts_with_the_same_credentials(
    tls_registry: Registry, pki: Pki, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=2, size=8192)
    seed(tls_registry, f"{repo}/src", art)
    config = docker_config(tmp_path / "config.json", {tls_registry.host: ("alice", ALICE_PASSWORD)})
    mark = tls_registry.mark()
    res = run_orascp(
        "cp",
        *("--from-ca-file", str(pki.ca), "--from-registry-config", str(config)),
        *("--to-ca-file", str(pki.ca), "--to-registry-config", str(config)),
        f"{tls_registry.host}/{repo}/src:v1",
        f"{tls_registry.host}/{repo}/dst:v1",
    )
    assert res.returncode == 0, res.describe()
    assert mounted_lines(res) == sorted(status_line("Mounted", b) for b in art.blobs), (
        res.describe()
    )
    counts = tls_registry.counts(mark, successful=True)
    assert counts["mount POST 201"] == len(art.blobs)
    assert counts["upload PUT"] == 0
    assert_copied(tls_registry, f"{repo}/dst", art)


@pytest.mark.parametrize("how", ["stdin", "flag"])
@pytest.mark.parametrize("side", SIDES)
def test_wrong_password_fails_and_is_never_shown(
    side: str, how: str, tls_registry: Registry, registry: Registry, pki: Pki, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=1024)
    r = route(side, tls_registry, registry, repo, art)
    password = (
        [f"--{side}-password-stdin"] if how == "stdin" else [f"--{side}-password", WRONG_PASSWORD]
    )
    res = run_orascp(
        "cp",
        *(f"--{side}-ca-file", str(pki.ca), f"--{side}-username", "alice", *password),
        r.src,
        r.dst,
        input=WRONG_PASSWORD + "\n" if how == "stdin" else None,
    )
    assert res.returncode == 1, res.describe()
    assert res.error_lines, res.describe()
    assert tls_registry.host in res.stderr, res.describe()
    assert_secret_not_shown(res, WRONG_PASSWORD)
    assert_no_tag(r.dst_registry, r.dst_repository)


@pytest.mark.parametrize("side", SIDES)
def test_tls_registry_without_ca_file_fails_with_a_hint(
    side: str, tls_registry: Registry, registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=1024)
    r = route(side, tls_registry, registry, repo, art)
    res = run_orascp(
        "cp",
        *(f"--{side}-username", "alice", f"--{side}-password-stdin"),
        r.src,
        r.dst,
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 1, res.describe()
    assert res.error_lines, res.describe()
    assert tls_registry.host in res.stderr, res.describe()
    assert f"--{side}-ca-file" in res.stderr, res.describe()
    assert_no_tag(r.dst_registry, r.dst_repository)


@pytest.mark.parametrize("side", SIDES)
def test_insecure_skips_certificate_verification(
    side: str, tls_registry: Registry, registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=4096)
    r = route(side, tls_registry, registry, repo, art)
    res = run_orascp(
        "cp",
        *(f"--{side}-insecure", f"--{side}-username", "alice", f"--{side}-password-stdin"),
        r.src,
        r.dst,
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.describe()
    assert_copied(r.dst_registry, r.dst_repository, art)


# -- where credentials come from (plain-HTTP registry with Basic auth)


@pytest.mark.parametrize("side", SIDES)
def test_credentials_from_registry_config(
    side: str, basic_registry: Registry, registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=2, size=2048)
    r = route(side, basic_registry, registry, repo, art)
    config = docker_config(
        tmp_path / "config.json",
        {basic_registry.host: ("alice", ALICE_PASSWORD), "elsewhere.example:5000": ("x", "y")},
    )
    res = run_orascp("cp", f"--{side}-registry-config", str(config), r.src, r.dst)
    assert res.returncode == 0, res.describe()
    assert res.stderr == ""
    assert_copied(r.dst_registry, r.dst_repository, art)


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_credentials_from_a_credential_helper_on_path(
    key: str, basic_registry: Registry, registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = sample_image(repo, layers=2, size=2048)
    r = route("to", basic_registry, registry, repo, art)
    log = tmp_path / "helper.log"
    bin_dir = tmp_path / "bin"
    credential_helper(bin_dir, "test", {basic_registry.host: ("alice", ALICE_PASSWORD)}, log)
    config = tmp_path / "config.json"
    if key == "credHelpers":
        docker_config(config, credHelpers={basic_registry.host: "test"})
    else:
        docker_config(config, credsStore="test")
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    res = run_orascp("cp", "--to-registry-config", str(config), r.src, r.dst, env={"PATH": path})
    assert res.returncode == 0, res.describe()
    assert_secret_not_shown(res, ALICE_PASSWORD)
    calls = log.read_text().splitlines()
    assert calls, "the credential helper was never called"
    assert all(c.startswith("get ") and basic_registry.host in c for c in calls), calls
    assert_copied(r.dst_registry, r.dst_repository, art)


def test_login_then_copy_then_logout(basic_registry: Registry, repo: str, tmp_path: Path) -> None:
    host = basic_registry.host
    config = docker_config(
        tmp_path / "config.json",
        {"elsewhere.example:5000": ("x", "y")},
        credHelpers={"helped.example": "none"},
        psFormat="table {{.ID}}",
    )
    before = json.loads(config.read_text())

    res = run_orascp(
        "login",
        host,
        "-u",
        "alice",
        "--password-stdin",
        "--registry-config",
        str(config),
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.describe()
    assert_secret_not_shown(res, ALICE_PASSWORD)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stored_auth(config, host) == ("alice", ALICE_PASSWORD)
    after = json.loads(config.read_text())
    assert after["credHelpers"] == before["credHelpers"]
    assert after["psFormat"] == before["psFormat"]
    assert after["auths"]["elsewhere.example:5000"] == before["auths"]["elsewhere.example:5000"]

    art = sample_image(repo, layers=2, size=2048)
    seed(basic_registry, f"{repo}/src", art)
    copy = (
        "cp",
        *("--from-registry-config", str(config), "--to-registry-config", str(config)),
        f"{host}/{repo}/src:v1",
    )
    res = run_orascp(*copy, f"{host}/{repo}/dst:v1")
    assert res.returncode == 0, res.describe()
    assert_copied(basic_registry, f"{repo}/dst", art)

    res = run_orascp("logout", host, "--registry-config", str(config))
    assert res.returncode == 0, res.describe()
    assert stored_auth(config, host) is None
    after = json.loads(config.read_text())
    assert after["credHelpers"] == before["credHelpers"]
    assert after["psFormat"] == before["psFormat"]
    assert after["auths"]["elsewhere.example:5000"] == before["auths"]["elsewhere.example:5000"]

    res = run_orascp(*copy, f"{host}/{repo}/again:v1")
    assert res.returncode == 1, res.describe()
    assert host in res.stderr, res.describe()
    assert_no_tag(basic_registry, f"{repo}/again")


def test_login_checks_the_credentials_over_tls(
    tls_registry: Registry, pki: Pki, tmp_path: Path
) -> None:
    config = tmp_path / "docker" / "config.json"
    login = ("login", tls_registry.host, "-u", "alice", "--password-stdin")
    tls = ("--registry-config", str(config), "--ca-file", str(pki.ca))

    res = run_orascp(*login, *tls, input=WRONG_PASSWORD + "\n")
    assert res.returncode == 1, res.describe()
    assert_secret_not_shown(res, WRONG_PASSWORD)
    assert not config.exists() or stored_auth(config, tls_registry.host) is None

    res = run_orascp(*login, *tls, input=ALICE_PASSWORD + "\n")
    assert res.returncode == 0, res.describe()
    assert stored_auth(config, tls_registry.host) == ("alice", ALICE_PASSWORD)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


@pytest.mark.parametrize("side", SIDES)
def test_password_on_the_command_line_warns_once(
    side: str, basic_registry: Registry, registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=1024)
    r = route(side, basic_registry, registry, repo, art)
    res = run_orascp(
        "cp", f"--{side}-username", "alice", f"--{side}-password", ALICE_PASSWORD, r.src, r.dst
    )
    assert res.returncode == 0, res.describe()
    warning = res.stderr.splitlines()
    assert len(warning) == 1, res.describe()
    assert f"--{side}-password-stdin" in warning[0]
    assert_secret_not_shown(res, ALICE_PASSWORD)
    assert_copied(r.dst_registry, r.dst_repository, art)


# -- token auth


def test_same_registry_copy_with_tokens_mounts_every_blob(
    token_registry: Registry, token_server: TokenServer, repo: str, tmp_path: Path
) -> None:
    host = token_registry.host
    art = sample_image(repo, layers=3, size=4096)
    seed(token_registry, f"{repo}/src", art)
    config = docker_config(tmp_path / "config.json", {host: ("alice", ALICE_PASSWORD)})
    mark = token_registry.mark()
    res = run_orascp(
        "cp",
        *("--from-registry-config", str(config), "--to-registry-config", str(config)),
        f"{host}/{repo}/src:v1",
        f"{host}/{repo}/dst:v1",
    )
    assert res.returncode == 0, res.describe()
    assert mounted_lines(res) == sorted(status_line("Mounted", b) for b in art.blobs), (
        res.describe()
    )
    assert [s.short for s in res.verbs("Copying")] == [short_digest(art.digest)], res.describe()
    counts = token_registry.counts(mark, successful=True)
    assert counts["mount POST 201"] == len(art.blobs)
    assert counts["upload PUT"] == 0
    assert counts["blob GET"] == 0
    assert_copied(token_registry, f"{repo}/dst", art)


def test_token_mount_asks_one_token_for_both_repositories(
    token_registry: Registry, token_server: TokenServer, repo: str, tmp_path: Path
) -> None:
    host = token_registry.host
    src, dst = f"{repo}/src", f"{repo}/dst"
    art = sample_image(repo, layers=3, size=4096)
    seed(token_registry, src, art)
    config = docker_config(tmp_path / "config.json", {host: ("alice", ALICE_PASSWORD)})
    mark = token_server.mark()
    res = run_orascp(
        "cp",
        *("--from-registry-config", str(config), "--to-registry-config", str(config)),
        f"{host}/{src}:v1",
        f"{host}/{dst}:v1",
    )
    assert res.returncode == 0, res.describe()
    seen = token_server.since(mark)
    assert seen, "no token was requested"
    assert all(t.status == 200 and t.user == "alice" for t in seen), seen
    both = [t for t in seen if t.covers(f"repository:{dst}:pull,push", f"repository:{src}:pull")]
    assert len(both) == 1, [t.scopes for t in seen]


def test_user_who_cannot_read_the_source_copies_without_mounting(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    host = token_registry.host
    src, dst = f"{repo}/src", f"bob/{repo}/dst"
    art = sample_image(repo, layers=2, size=4096)
    seed(token_registry, src, art)
    mark = token_registry.mark()
    res = run_orascp(
        "cp",
        *("--from-username", "alice", "--from-password-stdin"),
        *("--to-username", "bob", "--to-password", BOB_PASSWORD),
        f"{host}/{src}:v1",
        f"{host}/{dst}:v1",
        input=ALICE_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.describe()
    assert res.verbs("Mounted") == [], res.describe()
    requests = [r for r in token_registry.requests()[mark:] if r.status < 400]
    assert token_registry.counts(mark, successful=True)["mount POST 201"] == 0
    for blob in art.blobs:
        assert len(uploads_of(requests, blob.digest)) == 1, blob.digest
        assert status_line("Copied", blob) in res.lines, res.describe()
    assert_copied(token_registry, dst, art, "bob", BOB_PASSWORD)
    assert_secret_not_shown(res, ALICE_PASSWORD)
    assert_secret_not_shown(res, BOB_PASSWORD)


@pytest.mark.parametrize("side", SIDES)
def test_identity_token_is_exchanged_for_access_tokens(
    side: str, token_registry: Registry, token_server: TokenServer, registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=2048)
    r = route(side, token_registry, registry, repo, art)
    identity = token_server.issue_refresh_token("alice")
    mark = token_server.mark()
    res = run_orascp("cp", f"--{side}-identity-token", identity, r.src, r.dst)
    assert res.returncode == 0, res.describe()
    assert_secret_not_shown(res, identity)
    seen = token_server.since(mark)
    assert seen, "no token was requested"
    for t in seen:
        assert (t.method, t.grant_type, t.user, t.status) == ("POST", "refresh_token", "alice", 200)
    assert_copied(r.dst_registry, r.dst_repository, art)


def test_anonymous_pull_through_the_token_service(
    token_registry: Registry, token_server: TokenServer, registry: Registry, repo: str
) -> None:
    src = f"public/{repo}/src"
    art = sample_image(repo, layers=1, size=2048)
    seed(token_registry, src, art)
    mark = token_server.mark()
    res = run_orascp("cp", f"{token_registry.host}/{src}:v1", f"{registry.host}/{repo}/dst:v1")
    assert res.returncode == 0, res.describe()
    seen = token_server.since(mark)
    assert seen, "no token was requested"
    assert all(t.user is None and t.status == 200 for t in seen), seen
    assert_copied(registry, f"{repo}/dst", art)


# -- mutual TLS and extra headers


@pytest.mark.parametrize("side", SIDES)
def test_client_certificate_for_mutual_tls(
    side: str, mtls_registry: Registry, registry: Registry, pki: Pki, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=2048)
    r = route(side, mtls_registry, registry, repo, art)
    ca = (f"--{side}-ca-file", str(pki.ca))
    cert = (f"--{side}-cert-file", str(pki.client_cert), f"--{side}-key-file", str(pki.client_key))

    res = run_orascp("cp", *ca, r.src, r.dst)
    assert res.returncode == 1, res.describe()
    assert res.error_lines, res.describe()
    assert_no_tag(r.dst_registry, r.dst_repository)

    res = run_orascp("cp", *ca, *cert, r.src, r.dst)
    assert res.returncode == 0, res.describe()
    assert_copied(r.dst_registry, r.dst_repository, art)


def test_extra_headers_go_to_their_own_side(
    registry: Registry, other_registry: Registry, repo: str
) -> None:
    art = sample_image(repo, layers=1, size=1024)
    push(registry.host, f"{repo}/src", art, "v1")
    src_marker, dst_marker = f"src-{secrets.token_hex(6)}", f"dst-{secrets.token_hex(6)}"
    res = run_orascp(
        "cp",
        *("--from-header", f"Referer: {src_marker}", "--to-header", f"Referer: {dst_marker}"),
        f"{registry.host}/{repo}/src:v1",
        f"{other_registry.host}/{repo}/dst:v1",
    )
    assert res.returncode == 0, res.describe()
    # The access log's combined format records the Referer header of every request.
    registry.requests()  # waits until the log holds every request answered so far
    other_registry.requests()
    src_log = registry.access_log.read_text()
    dst_log = other_registry.access_log.read_text()
    assert f'"{src_marker}"' in src_log
    assert f'"{dst_marker}"' in dst_log
    assert dst_marker not in src_log
    assert src_marker not in dst_log
    assert_copied(other_registry, f"{repo}/dst", art)
