"""The registry auth flow against registries emulated with httpx.MockTransport.

A real docker-registry with token auth is exercised by the integration tests; these cover what
it cannot be made to do (expiring tokens, hostile realms, odd challenges).
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orascp.errors import AuthenticationError
from orascp.registry.auth import TokenError, merge_scopes, parse_challenges
from orascp.registry.client import RegistryClient, RegistryOptions
from orascp.registry.credentials import Credential

SECRET = "s3cret-Pa55"


def test_parse_bearer_and_basic_challenges() -> None:
    [bearer] = parse_challenges(
        [
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:a/b:pull,push"'
        ]
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    both = parse_challenges(['Basic realm="r", Bearer realm="https://x/t",service=s'])
    assert [c.scheme for c in both] == ["basic", "bearer"]
    assert both[1].params == {"realm": "https://x/t", "service": "s"}


def test_parse_quoted_escapes_and_garbage() -> None:
    [c] = parse_challenges(['Bearer realm="a\\"b"'])
    assert c.params["realm"] == 'a"b'
    assert parse_challenges([""]) == []
    assert parse_challenges(['Bearer realm="unterminated'])[0].scheme == "bearer"


@given(st.text(max_size=200))
def test_parse_never_crashes(value: str) -> None:
    for challenge in parse_challenges([value]):
        assert challenge.scheme == challenge.scheme.lower()


def test_merge_scopes_joins_actions_per_repository() -> None:
    assert merge_scopes(
        ["repository:a:pull", "repository:a:push", "repository:b:pull", "registry:catalog:*"]
    ) == ["registry:catalog:*", "repository:a:pull,push", "repository:b:pull"]


class TokenRegistry:
    """Emulate a registry that wants Bearer tokens from a token service."""

    def __init__(self, realm: str = "http://auth.test/token", *, expire_first: bool = False):
        self.realm = realm
        self.token_requests: list[httpx.Request] = []
        self.issued = 0
        self.valid: set[str] = set()
        self.expire_first = expire_first
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.host == "auth.test":
            self.token_requests.append(request)
            auth = request.headers.get("authorization", "")
            if auth and auth != "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode():
                return httpx.Response(401, json={"details": "bad"})
            self.issued += 1
            token = f"tok{self.issued}"
            self.valid.add(token)
            return httpx.Response(200, json={"token": token})
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        if token in self.valid:
            if self.expire_first and token == "tok1":
                self.valid.discard(token)
                return self._challenge()
            return httpx.Response(200, headers={"Docker-Distribution-Api-Version": "registry/2.0"})
        return self._challenge()

    def _challenge(self) -> httpx.Response:
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": f'Bearer realm="{self.realm}",service="reg.test",'
                'scope="repository:dst:pull,push"'
            },
        )


def _client(handler, credential: Credential, plain_http: bool = True) -> RegistryClient:
    return RegistryClient(
        "reg.test",
        RegistryOptions(plain_http=plain_http, credential=credential),
        transport=httpx.MockTransport(handler),
    )


async def _get(client: RegistryClient, path: str = "/v2/dst/manifests/v1") -> httpx.Response:
    try:
        return await client.send("HEAD", client.url(path))
    finally:
        pass


def test_one_token_covers_every_hinted_scope_and_is_reused() -> None:
    registry = TokenRegistry()

    async def main() -> None:
        client = _client(registry, Credential(username="alice", password=SECRET))
        client.auth.add_scopes("repository:dst:pull,push", "repository:src:pull")
        for _ in range(3):
            assert (await _get(client)).status_code == 200
        await client.aclose()

    asyncio.run(main())
    assert len(registry.token_requests) == 1
    scopes = registry.token_requests[0].url.params.get_list("scope")
    assert scopes == ["repository:dst:pull,push", "repository:src:pull"]
    assert registry.token_requests[0].url.params["service"] == "reg.test"
    # 1 challenged request + 1 token + 1 retry, then two requests straight with the token
    assert len(registry.seen) == 5


def test_stale_token_is_replaced_once() -> None:
    registry = TokenRegistry(expire_first=True)

    async def main() -> int:
        client = _client(registry, Credential(username="alice", password=SECRET))
        await _get(client)  # gets tok1 (accepted once... then expired on the next use)
        response = await _get(client)
        await client.aclose()
        return response.status_code

    assert asyncio.run(main()) == 200
    assert registry.issued == 2


def test_wrong_password_is_an_authentication_error_without_the_secret() -> None:
    registry = TokenRegistry()

    async def main() -> None:
        client = _client(registry, Credential(username="alice", password="wrong-" + SECRET))
        try:
            await _get(client)
        finally:
            await client.aclose()

    with pytest.raises(AuthenticationError) as info:
        asyncio.run(main())
    assert SECRET not in str(info.value)
    assert SECRET not in (info.value.hint or "")


def test_https_registry_with_plain_http_realm_is_refused() -> None:
    registry = TokenRegistry(realm="http://auth.test/token")

    async def main() -> None:
        client = _client(registry, Credential(username="alice", password=SECRET), plain_http=False)
        try:
            await _get(client)
        finally:
            await client.aclose()

    with pytest.raises(TokenError, match="clear text"):
        asyncio.run(main())
    assert registry.token_requests == []


@pytest.mark.parametrize("realm", ["file:///etc/passwd", "ftp://auth.test/x", "not a url"])
def test_non_http_realm_is_refused(realm: str) -> None:
    registry = TokenRegistry(realm=realm)

    async def main() -> None:
        client = _client(registry, Credential(username="alice", password=SECRET))
        try:
            await _get(client)
        finally:
            await client.aclose()

    with pytest.raises(TokenError):
        asyncio.run(main())
    assert registry.token_requests == []


def test_basic_challenge_is_answered_once() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        expected = "Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()
        if request.headers.get("authorization") == expected:
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry"'})

    async def main(password: str) -> int:
        client = _client(handler, Credential(username="bob", password=password))
        try:
            return (await _get(client)).status_code
        finally:
            await client.aclose()

    assert asyncio.run(main(SECRET)) == 200
    assert seen[0] is None
    assert seen[1] is not None
    seen.clear()
    assert asyncio.run(main("nope")) == 401
    assert len(seen) == 2  # one retry with the (wrong) password, no loop


def test_identity_token_uses_oauth2_post() -> None:
    registry = TokenRegistry()

    async def main() -> None:
        client = _client(registry, Credential(identity_token="refresh-" + SECRET))
        client.auth.add_scopes("repository:dst:pull,push")
        assert (await _get(client)).status_code == 200
        await client.aclose()

    asyncio.run(main())
    [token_request] = registry.token_requests
    assert token_request.method == "POST"
    form = dict(httpx.QueryParams(token_request.content.decode()))
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-" + SECRET
    assert form["scope"] == "repository:dst:pull,push"


def test_custom_headers_and_credentials_stay_on_the_registry_origin() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "reg.test":
            return httpx.Response(
                307, headers={"Location": "http://storage.test/blob?X-Amz-Signature=abc"}
            )
        return httpx.Response(200, content=b"x")

    async def main() -> None:
        client = RegistryClient(
            "reg.test",
            RegistryOptions(
                plain_http=True,
                credential=Credential(username="bob", password=SECRET),
                headers=(("X-Team", "42"),),
            ),
            transport=httpx.MockTransport(handler),
        )
        client.auth._scheme = "basic"  # as if the registry had asked for Basic before
        client.auth._basic = "Basic Ym9iOnMzY3JldA=="
        response = await client.send(
            "GET", client.url("/v2/r/blobs/sha256:" + "a" * 64), follow_redirects=True
        )
        assert response.status_code == 200
        await client.aclose()

    asyncio.run(main())
    assert [r.url.host for r in seen] == ["reg.test", "storage.test"]
    assert seen[0].headers["x-team"] == "42"
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert "x-team" not in seen[1].headers
    assert "authorization" not in seen[1].headers
