"""Talk to a TLS or authenticating test registry with plain httpx, without orascp.

Tests seed sources and check destinations with these, so that what is checked (orascp's auth)
is never also what prepared or read back the check. :class:`RegistryAuth` answers the
registry's challenges the way a docker client does: ``Basic`` gets the credentials,
``Bearer realm=…,service=…,scope=…`` gets a token from the realm for exactly the challenged
scopes, cached per scope set.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Generator
from typing import Any

import httpx

from tests.support.artifacts import OCI_INDEX, OCI_MANIFEST, Artifact, digest_of, push_with
from tests.support.registry import Registry

__all__ = [
    "RegistryAuth",
    "assert_holds",
    "basic_header",
    "client_for",
    "fetch_blob",
    "fetch_manifest",
    "parse_challenge",
    "push_artifact",
]

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="…",service="…"`` into ``("bearer", {"realm": …, …})``."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM_RE.findall(rest))


def basic_header(username: str, password: str) -> str:
    """Return the ``Authorization`` value of Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth(httpx.Auth):
    """Answer one 401 challenge per request: Basic with the credentials, Bearer with a token.

    Once a registry has asked for Basic credentials, they are sent with every later request,
    as docker does. Without credentials, Bearer tokens are requested anonymously.
    """

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username = username
        self.password = password
        self._basic = False
        self._tokens: dict[tuple[str, str, str], str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._basic and self.username is not None:
            request.headers["Authorization"] = basic_header(self.username, self.password or "")
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic" and self.username is not None and not self._basic:
            self._basic = True
            request.headers["Authorization"] = basic_header(self.username, self.password or "")
            yield request
        elif scheme == "bearer" and "realm" in params:
            key = (params["realm"], params.get("service", ""), params.get("scope", ""))
            if key not in self._tokens:
                query: list[tuple[str, str | int | float | bool | None]] = [("service", key[1])]
                query += [("scope", s) for s in key[2].split()]
                token_request = httpx.Request("GET", params["realm"], params=query)
                if self.username is not None:
                    token_request.headers["Authorization"] = basic_header(
                        self.username, self.password or ""
                    )
                token_response = yield token_request
                if token_response.status_code != 200:
                    return
                token_response.read()
                self._tokens[key] = token_response.json()["token"]
            request.headers["Authorization"] = f"Bearer {self._tokens[key]}"
            yield request


def client_for(
    registry: Registry, username: str | None = None, password: str | None = None, **kwargs: Any
) -> httpx.Client:
    """Return a client on ``registry.url`` that trusts it and answers its challenges."""
    return httpx.Client(
        base_url=registry.url,
        verify=registry.verify,
        auth=RegistryAuth(username, password),
        timeout=60,
        **kwargs,
    )


def push_artifact(
    client: httpx.Client, repository: str, artifact: Artifact, tag: str | None = None
) -> None:
    """Push ``artifact`` with bare POST/PUT requests through an authenticated client."""
    push_with(client, repository, artifact, tag)


def fetch_manifest(client: httpx.Client, repository: str, reference: str) -> tuple[str, bytes]:
    """Return the media type and bytes of a manifest."""
    r = client.get(
        f"/v2/{repository}/manifests/{reference}",
        headers={"Accept": ", ".join([OCI_MANIFEST, OCI_INDEX])},
    )
    r.raise_for_status()
    return r.headers["content-type"], r.content


def fetch_blob(client: httpx.Client, repository: str, digest: str) -> bytes:
    """Return a blob's bytes."""
    r = client.get(f"/v2/{repository}/blobs/{digest}")
    r.raise_for_status()
    return r.content


def assert_holds(
    client: httpx.Client, repository: str, artifact: Artifact, tag: str | None = None
) -> None:
    """Assert that the repository holds every manifest and blob of ``artifact``, byte for byte.

    With ``tag``, the tag must resolve to the artifact's root too.
    """
    for blob in artifact.all:
        if blob.media_type in (OCI_MANIFEST, OCI_INDEX):
            media_type, data = fetch_manifest(client, repository, blob.digest)
            assert media_type == blob.media_type, blob.digest
        else:
            data = fetch_blob(client, repository, blob.digest)
        assert digest_of(data) == blob.digest
        assert data == blob.data, f"{blob.digest} differs in {repository}"
    if tag is not None:
        media_type, data = fetch_manifest(client, repository, tag)
        assert (media_type, data) == (artifact.root.media_type, artifact.root.data), tag
