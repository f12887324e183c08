"""Answer registry authentication challenges: Basic, and Bearer tokens from the token service.

The flow (docker's token authentication, as distribution and every hosted registry speak it):

1. A request goes out with the cached ``Authorization`` for this registry, if there is one.
2. A 401 carries ``WWW-Authenticate``: ``Basic realm=...`` means resend with the user and
   password; ``Bearer realm=...,service=...,scope=...`` means ask the realm for a token.
3. The token request asks for every scope the copy will need on this registry at once (pull and
   push on the destination, pull on the mount sources), merged with the challenge's scope, so
   one token serves the whole copy. It is a ``GET`` with Basic credentials (or anonymous), or,
   with an identity token, an OAuth2 ``POST`` (``grant_type=refresh_token``).
4. Tokens are cached per scope set. A 401 on a cached token fetches a new one once; a second 401
   is returned as it is (and becomes an authentication error above).

The realm must be http(s), and never plain http when the registry itself is https.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field

import httpx

from orascp.descriptor import load_json
from orascp.errors import AuthenticationError, OrascpError
from orascp.registry.credentials import Credential

__all__ = ["Challenge", "RegistryAuth", "merge_scopes", "parse_challenges"]

# A token response is a few kilobytes; this cap keeps a hostile realm from filling memory.
MAX_TOKEN_BODY = 1024 * 1024
CLIENT_ID = "orascp"

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """Hold one parsed ``WWW-Authenticate`` challenge."""

    scheme: str  # lower case: "basic", "bearer", ...
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values into challenges; malformed parts are skipped."""
    out: list[Challenge] = []
    for value in values:
        rest = value.strip()
        while rest:
            m = re.match(r"([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*", rest)
            if not m:
                break
            scheme = m.group(1).lower()
            rest = rest[m.end() :]
            params: dict[str, str] = {}
            while rest:
                p = _PARAM_RE.match(rest)
                # A token followed by something other than "=" starts the next challenge.
                if not p or p.end() == 0:
                    break
                quoted, bare = p.group(2), p.group(3)
                raw = quoted if quoted is not None else bare or ""
                params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", raw)
                rest = rest[p.end() :]
            out.append(Challenge(scheme, params))
            rest = rest.lstrip(", ")
    return out


def merge_scopes(scopes: Iterable[str]) -> list[str]:
    """Merge scopes per resource: ``repository:a:pull`` + ``repository:a:push`` → one scope."""
    actions: dict[tuple[str, str], set[str]] = {}
    others: set[str] = set()
    for scope in scopes:
        for item in scope.split():
            parts = item.rsplit(":", 1)
            head = parts[0].split(":", 1)
            if len(parts) != 2 or len(head) != 2:
                others.add(item)
                continue
            key = (head[0], head[1])
            actions.setdefault(key, set()).update(a for a in parts[1].split(",") if a)
    merged = [f"{kind}:{name}:{','.join(sorted(acts))}" for (kind, name), acts in actions.items()]
    return sorted(set(merged) | others)


class TokenError(OrascpError):
    """Report a token service that refused or answered nonsense."""

    reference = "token-failed"


class RegistryAuth(httpx.Auth):
    """Authenticate requests to one registry with one credential."""

    def __init__(
        self, registry_url: str, credential: Credential, scopes: Iterable[str] = ()
    ) -> None:
        self.registry_url = httpx.URL(registry_url)
        self.credential = credential
        self.scopes: set[str] = set(scopes)
        self._basic: str | None = None
        self._bearer: dict[tuple[str, ...], str] = {}
        self._scheme: str | None = None  # the scheme the registry asked for, once known
        self.token_requests = 0

    def add_scopes(self, *scopes: str) -> None:
        """Ask for these scopes too in the next token request."""
        self.scopes.update(scopes)

    def _key(self, extra: Iterable[str] = ()) -> tuple[str, ...]:
        return tuple(merge_scopes([*self.scopes, *extra]))

    def _cached(self) -> str | None:
        if self._scheme == "basic":
            return self._basic
        if self._scheme == "bearer":
            return self._bearer.get(self._key())
        return None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send ``request``, answering at most one challenge (and one stale token)."""
        cached = self._cached()
        if cached:
            request.headers["Authorization"] = cached
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        # A streamed body (a blob upload) is gone once sent: only requests held in memory
        # can be sent again. Uploads are authorised by the POST that opens their session.
        if not isinstance(request.stream, httpx.ByteStream):
            if bearer is not None or basic is not None:
                self._scheme = "bearer" if bearer is not None else "basic"
            return
        if bearer is not None:
            self._scheme = "bearer"
            extra = bearer.params.get("scope", "").split()
            key = self._key(extra)
            header = self._bearer.get(key)
            if header is None or header == cached:
                if self.credential.registry_token:
                    token = self.credential.registry_token
                else:
                    token_response = yield self._token_request(bearer, key)
                    token = await self._read_token(token_response)
                header = f"Bearer {token}"
                self._bearer[key] = header
                self._bearer[self._key()] = header
            request.headers["Authorization"] = header
            yield request
        elif basic is not None and self.credential.username:
            self._scheme = "basic"
            header = _basic_header(self.credential)
            if header == cached:
                return  # these very credentials were just refused: do not loop
            self._basic = header
            request.headers["Authorization"] = header
            yield request

    def _token_request(self, challenge: Challenge, scopes: tuple[str, ...]) -> httpx.Request:
        """Build the token request for a Bearer challenge, refusing unsafe realms."""
        realm = challenge.params.get("realm", "")
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = httpx.URL("")
        if url.scheme not in ("http", "https") or not url.host:
            raise TokenError(
                f"{self.registry_url.host} asked for a token from {realm!r}, which is not an"
                " http(s) URL; refusing to send credentials there"
            )
        if self.registry_url.scheme == "https" and url.scheme == "http":
            raise TokenError(
                f"{self.registry_url.host} is served over https but its token service is plain"
                f" http ({url.host}); refusing to send credentials in clear text"
            )
        service = challenge.params.get("service")
        self.token_requests += 1
        cred = self.credential
        if cred.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": cred.identity_token,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            if service:
                form["service"] = service
            return httpx.Request("POST", url, data=form)
        params: list[tuple[str, str | int | float | bool | None]] = (
            [("service", service)] if service else []
        )
        params += [("scope", scope) for scope in scopes]
        headers = {"Authorization": _basic_header(cred)} if cred.username else {}
        return httpx.Request("GET", url.copy_merge_params(params), headers=headers)

    async def _read_token(self, response: httpx.Response) -> str:
        """Return the token of a token-service answer, or raise naming what went wrong."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_TOKEN_BODY:
            raise TokenError("the token service sent an answer larger than 1 MiB")
        # aread(), not a capped aiter_raw(): httpx reads every response of an auth flow again
        # after the flow has looked at it, which a consumed stream would not survive.
        body = await response.aread()
        if len(body) > MAX_TOKEN_BODY:
            raise TokenError("the token service sent an answer larger than 1 MiB")
        host = response.request.url.host
        if response.status_code in (401, 403):
            raise AuthenticationError(
                response.request.method,
                f"token service at {host}",
                response.status_code,
                hint=f"check the credentials for {self.registry_url.host}"
                + (f" (from {self.credential.source})" if self.credential.source else ""),
            )
        if response.status_code != 200:
            raise TokenError(f"the token service at {host} answered {response.status_code}")
        try:
            payload = load_json(body)
        except ValueError:
            payload = None
        token = None
        if isinstance(payload, dict):
            token = payload.get("token") or payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError(f"the token service at {host} answered without a token")
        return token


def _basic_header(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
