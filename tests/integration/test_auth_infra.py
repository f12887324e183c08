"""The auth test infrastructure itself, checked with plain httpx (no orascp).

If these fail, the failures of ``test_auth.py`` say nothing about orascp: the TLS, htpasswd
and token registries, the token server and the access-log helpers must work first.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.artifacts import sample_image
from tests.support.authdata import ALICE_PASSWORD, BASIC_REALM, BOB_PASSWORD
from tests.support.authhttp import (
    assert_holds,
    client_for,
    fetch_blob,
    parse_challenge,
    push_artifact,
)
from tests.support.pki import Pki, ssl_context
from tests.support.registry import Registry
from tests.support.tokenserver import TokenServer, parse_scope

pytest_plugins = ["tests.support.authfixtures"]

pytestmark = pytest.mark.integration


def _get_token(
    token_server: TokenServer,
    *scopes: str,
    auth: tuple[str, str] | None = ("alice", ALICE_PASSWORD),
) -> str:
    r = httpx.get(
        token_server.realm,
        params=[("service", token_server.service), *(("scope", s) for s in scopes)],
        auth=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"]
    return str(body["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- TLS and Basic auth


def test_tls_registry_wants_basic_credentials(tls_registry: Registry, pki: Pki) -> None:
    assert tls_registry.scheme == "https"
    assert tls_registry.host.startswith("127.0.0.1:")
    verify = ssl_context(pki.ca)

    r = httpx.get(f"https://{tls_registry.host}/v2/", verify=verify)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Basic realm="{BASIC_REALM}"'

    r = httpx.get(f"https://{tls_registry.host}/v2/", verify=verify, auth=("alice", ALICE_PASSWORD))
    assert r.status_code == 200
    r = httpx.get(f"https://{tls_registry.host}/v2/", verify=verify, auth=("alice", BOB_PASSWORD))
    assert r.status_code == 401
    # The certificate names localhost too.
    r = httpx.get(
        f"https://localhost:{tls_registry.port}/v2/", verify=verify, auth=("bob", BOB_PASSWORD)
    )
    assert r.status_code == 200


def test_tls_registry_is_not_trusted_without_the_test_ca(tls_registry: Registry) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{tls_registry.host}/v2/")
    # Plain HTTP to the TLS port is answered 400 by Go's TLS server.
    assert httpx.get(f"http://{tls_registry.host}/v2/").status_code == 400


def test_tls_registry_push_pull_and_access_log(tls_registry: Registry, repo: str) -> None:
    art = sample_image(repo, layers=2, size=2048)
    mark = tls_registry.mark()
    with client_for(tls_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, f"{repo}/src", art, "v1")
        assert_holds(client, f"{repo}/src", art, "v1")
    counts = tls_registry.counts(mark, successful=True)
    assert counts["upload PUT"] == len(art.blobs)
    assert counts["manifest PUT"] == 1
    assert counts["blob GET"] == len(art.blobs)
    # The first request was refused (401) and sent again with the credentials: both are logged.
    [refused] = [r for r in tls_registry.requests()[mark:] if r.status == 401]
    assert refused.kind == "upload POST"
    assert tls_registry.counts(mark)["upload POST"] == len(art.blobs) + 1


def test_basic_registry_speaks_plain_http(basic_registry: Registry) -> None:
    assert basic_registry.scheme == "http"
    r = httpx.get(f"{basic_registry.url}/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Basic realm="{BASIC_REALM}"'
    assert httpx.get(f"{basic_registry.url}/v2/", auth=("bob", BOB_PASSWORD)).status_code == 200


def test_mtls_registry_requires_the_client_certificate(mtls_registry: Registry, pki: Pki) -> None:
    url = f"{mtls_registry.url}/v2/"
    with pytest.raises(httpx.TransportError):
        httpx.get(url, verify=ssl_context(pki.ca))
    assert httpx.get(url, verify=ssl_context(pki.ca, pki.client)).status_code == 200
    assert mtls_registry.mark() >= 0  # the log barrier presents the client certificate too


# -- token auth


def test_token_registry_challenges_with_bearer(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    assert token_registry.scheme == "http"
    r = httpx.get(f"{token_registry.url}/v2/")
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert scheme == "bearer"
    assert params == {"realm": token_server.realm, "service": token_server.service}

    r = httpx.post(f"{token_registry.url}/v2/{repo}/src/blobs/uploads/")
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    # The registry lists the actions in map order, which varies: compare them as a set.
    kind, name, actions = params.pop("scope").rsplit(":", 2)
    assert (scheme, kind, name) == ("bearer", "repository", f"{repo}/src")
    assert set(actions.split(",")) == {"pull", "push"}
    assert params == {"realm": token_server.realm, "service": token_server.service}

    r = httpx.get(f"{token_registry.url}/v2/", headers=_bearer(_get_token(token_server)))
    assert r.status_code == 200


def test_token_is_a_signed_jwt_with_the_granted_access(
    token_server: TokenServer, pki: Pki, repo: str
) -> None:
    mark = token_server.mark()
    token = _get_token(token_server, f"repository:{repo}/a:pull,push,delete", "registry:catalog:*")
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = _b64url_json(header_b64)
    cert = x509.load_pem_x509_certificate(pki.signing_cert.read_bytes())
    assert header["typ"] == "JWT"
    assert header["alg"] == "RS256"
    assert [base64.b64decode(c) for c in header["x5c"]] == [
        cert.public_bytes(serialization.Encoding.DER)
    ]
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4)),
        f"{header_b64}.{claims_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    claims = _b64url_json(claims_b64)
    assert claims["iss"] == token_server.issuer
    assert claims["sub"] == "alice"
    assert claims["aud"] == token_server.service
    assert claims["nbf"] <= claims["iat"] < claims["exp"] == claims["iat"] + 300
    assert claims["jti"]
    # pull and push are allowed, delete is not; only repositories are ever granted.
    assert claims["access"] == [
        {"type": "repository", "name": f"{repo}/a", "actions": ["pull", "push"]}
    ]
    [seen] = token_server.since(mark)
    assert (seen.method, seen.user, seen.status) == ("GET", "alice", 200)
    assert seen.scopes == (f"repository:{repo}/a:pull,push,delete", "registry:catalog:*")
    assert seen.covers(f"repository:{repo}/a:push")
    assert not seen.covers(f"repository:{repo}/b:pull")


def test_token_push_and_pull(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    src = f"{repo}/src"
    push_token = _get_token(token_server, f"repository:{src}:pull,push")
    r = httpx.post(f"{token_registry.url}/v2/{src}/blobs/uploads/", headers=_bearer(push_token))
    assert r.status_code == 202
    httpx.delete(
        httpx.URL(token_registry.url).join(r.headers["location"]), headers=_bearer(push_token)
    )

    art = sample_image(repo, layers=1, size=1024)
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, src, art, "v1")
    pull_token = _get_token(token_server, f"repository:{src}:pull")
    layer = art.blobs[-1]
    r = httpx.get(
        f"{token_registry.url}/v2/{src}/blobs/{layer.digest}", headers=_bearer(pull_token)
    )
    assert r.status_code == 200
    assert r.content == layer.data
    # A pull token does not push.
    r = httpx.post(f"{token_registry.url}/v2/{src}/blobs/uploads/", headers=_bearer(pull_token))
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_token_for_another_repository_is_refused(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    other = _get_token(token_server, f"repository:{repo}/other:pull,push")
    r = httpx.post(f"{token_registry.url}/v2/{repo}/src/blobs/uploads/", headers=_bearer(other))
    assert r.status_code == 401
    # bob asks for someone else's repository: the token is issued, without that access.
    bobs = _get_token(token_server, f"repository:{repo}/src:pull,push", auth=("bob", BOB_PASSWORD))
    claims = _b64url_json(bobs.split(".")[1])
    assert claims["sub"] == "bob"
    assert claims["access"] == [{"type": "repository", "name": f"{repo}/src", "actions": []}]
    r = httpx.post(f"{token_registry.url}/v2/{repo}/src/blobs/uploads/", headers=_bearer(bobs))
    assert r.status_code == 401
    bobs = _get_token(token_server, f"repository:bob/{repo}:pull,push", auth=("bob", BOB_PASSWORD))
    r = httpx.post(f"{token_registry.url}/v2/bob/{repo}/blobs/uploads/", headers=_bearer(bobs))
    assert r.status_code == 202


def test_mount_needs_a_token_with_both_scopes(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    src, dst = f"{repo}/src", f"{repo}/dst"
    art = sample_image(repo, layers=1, size=1024)
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, src, art, "v1")
    digest = art.blobs[-1].digest
    mount = f"{token_registry.url}/v2/{dst}/blobs/uploads/?mount={digest}&from={src}"

    r = httpx.post(mount)
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert scheme == "bearer"
    # The registry lists the actions in no fixed order.
    asked = {(g.name, frozenset(g.actions)) for g in map(parse_scope, params["scope"].split()) if g}
    assert asked == {(src, frozenset({"pull"})), (dst, frozenset({"pull", "push"}))}

    dst_only = _get_token(token_server, f"repository:{dst}:pull,push")
    assert httpx.post(mount, headers=_bearer(dst_only)).status_code == 401

    mark, token_mark = token_registry.mark(), token_server.mark()
    both = _get_token(token_server, f"repository:{dst}:pull,push", f"repository:{src}:pull")
    r = httpx.post(mount, headers=_bearer(both))
    assert r.status_code == 201
    assert token_registry.counts(mark) == {"mount POST 201": 1}
    [seen] = token_server.since(token_mark)
    assert seen.covers(f"repository:{dst}:pull,push", f"repository:{src}:pull")
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        assert fetch_blob(client, dst, digest) == art.blobs[-1].data


def test_anonymous_token_pulls_public_repositories_only(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    public = f"public/{repo}"
    art = sample_image(repo, layers=1, size=512)
    with client_for(token_registry, "alice", ALICE_PASSWORD) as client:
        push_artifact(client, public, art, "v1")
        push_artifact(client, f"{repo}/private", art, "v1")
    with client_for(token_registry) as anonymous:
        assert_holds(anonymous, public, art, "v1")
        assert anonymous.get(f"/v2/{repo}/private/manifests/v1").status_code == 401
        assert anonymous.post(f"/v2/{public}/blobs/uploads/").status_code == 401


def test_token_server_oauth2_post_and_refresh(
    token_registry: Registry, token_server: TokenServer, repo: str
) -> None:
    scope = f"repository:{repo}/src:pull,push repository:{repo}/x:pull"
    mark = token_server.mark()
    r = httpx.post(
        token_server.realm,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": ALICE_PASSWORD,
            "service": token_server.service,
            "scope": scope,
            "client_id": "orascp-tests",
            "access_type": "offline",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    refresh = body["refresh_token"]
    assert ALICE_PASSWORD not in refresh
    r = httpx.post(
        f"{token_registry.url}/v2/{repo}/src/blobs/uploads/", headers=_bearer(body["token"])
    )
    assert r.status_code == 202

    r = httpx.post(
        token_server.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": token_server.service,
            "scope": f"repository:{repo}/src:pull",
        },
    )
    assert r.status_code == 200, r.text
    claims = _b64url_json(r.json()["access_token"].split(".")[1])
    assert claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": f"{repo}/src", "actions": ["pull"]}]

    password_grant, refresh_grant = token_server.since(mark)
    assert (password_grant.method, password_grant.grant_type) == ("POST", "password")
    assert password_grant.offline
    assert password_grant.scopes == tuple(scope.split())
    assert (refresh_grant.grant_type, refresh_grant.user) == ("refresh_token", "alice")
    assert token_server.user_of_refresh_token(token_server.issue_refresh_token("bob")) == "bob"


def test_token_server_refuses_wrong_credentials(token_server: TokenServer) -> None:
    mark = token_server.mark()
    service = token_server.service
    r = httpx.get(token_server.realm, params={"service": service}, auth=("alice", BOB_PASSWORD))
    assert r.status_code == 401
    r = httpx.get(token_server.realm, params={"service": service}, auth=("mallory", "x"))
    assert r.status_code == 401
    r = httpx.post(
        token_server.realm,
        data={"grant_type": "password", "username": "bob", "password": "no", "service": service},
    )
    assert r.status_code == 401
    r = httpx.post(
        token_server.realm,
        data={"grant_type": "refresh_token", "refresh_token": "forged", "service": service},
    )
    assert r.status_code == 401
    seen = token_server.since(mark)
    assert [(t.status, t.user, t.attempted_user) for t in seen] == [
        (401, None, "alice"),
        (401, None, "mallory"),
        (401, None, "bob"),
        (401, None, None),
    ]
