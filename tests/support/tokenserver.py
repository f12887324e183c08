"""A Docker token service on a loopback port, for a ``docker-registry`` with ``auth: token``.

It implements what distribution's token auth expects of an issuer
(https://distribution.github.io/distribution/spec/auth/token/ and ``.../spec/auth/oauth/``):

- ``GET /token?service=…&scope=…&scope=…[&offline_token=true]``, anonymous or with Basic auth;
- ``POST /token`` with an OAuth2 form: ``grant_type=password`` (``username``, ``password``) or
  ``grant_type=refresh_token`` (``refresh_token``), ``scope`` space-separated, and
  ``access_type=offline`` to get a ``refresh_token`` back (an identity token, as docker calls it).

Tokens are RS256 JWTs whose header carries the signing certificate in ``x5c``; the registry
trusts them through ``rootcertbundle`` = that certificate (see :meth:`TokenServer.registry_config`).
Each token grants the requested actions that the ACL allows, and nothing else: a request for
more is not refused, it gets less (as Docker Hub and distribution's reference server do). Wrong
credentials get 401. Every request is recorded (:attr:`TokenServer.requests`) so tests can see
which scopes a client asked for, and how often.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["Grant", "TokenRequest", "TokenServer", "parse_scope"]

SERVICE = "orascp-test-registry"
ISSUER = "orascp-test-issuer"
# Long enough for any test; the registry allows a minute of leeway around nbf and exp.
EXPIRES_IN = 300


@dataclass(frozen=True)
class Grant:
    """One entry of a token's ``access`` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """What one request to the token endpoint asked for and got.

    ``user`` is the authenticated user (``None`` when anonymous, or when authentication
    failed: then ``attempted_user`` says who it claimed to be and ``status`` is 401).
    """

    method: str  # GET or POST
    grant_type: str | None  # POST only: password, refresh_token, …
    service: str | None
    scopes: tuple[str, ...]
    user: str | None
    attempted_user: str | None
    offline: bool  # a refresh token was asked for
    status: int
    granted: tuple[Grant, ...]
    headers: Mapping[str, str]

    def covers(self, *scopes: str) -> bool:
        """Return whether this request asked for every one of ``scopes``.

        ``repository:x:pull,push`` is covered by a request that asked for both actions on
        ``x``, in one scope or in several.
        """
        asked: dict[tuple[str, str], set[str]] = {}
        for scope in self.scopes:
            parsed = parse_scope(scope)
            if parsed:
                asked.setdefault((parsed.type, parsed.name), set()).update(parsed.actions)
        for scope in scopes:
            want = parse_scope(scope)
            if want is None or not set(want.actions) <= asked.get((want.type, want.name), set()):
                return False
        return True


def parse_scope(scope: str) -> Grant | None:
    """Parse ``type:name:action,action`` (the name may hold colons); ``None`` if malformed."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return Grant(kind, name, tuple(a for a in actions.split(",") if a))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the server records requests itself; stderr would only clutter pytest's output

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != self.server.owner.path:
            self._send(404, {"errors": [{"code": "NOT_FOUND"}]}, {})
            return
        query = parse_qs(url.query)
        self._answer(
            "GET",
            grant_type=None,
            service=_last(query, "service"),
            scopes=tuple(query.get("scope", [])),
            offline=_last(query, "offline_token") == "true",
            basic=self._basic(),
            refresh_token=None,
        )

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        if url.path != self.server.owner.path:
            self._send(404, {"errors": [{"code": "NOT_FOUND"}]}, {})
            return
        form = parse_qs(body, keep_blank_values=True)
        grant_type = _last(form, "grant_type")
        basic: tuple[str, str] | None = None
        if grant_type == "password":
            basic = (_last(form, "username") or "", _last(form, "password") or "")
        self._answer(
            "POST",
            grant_type=grant_type,
            service=_last(form, "service"),
            scopes=tuple(" ".join(form.get("scope", [])).split()),
            offline=_last(form, "access_type") == "offline",
            basic=basic,
            refresh_token=_last(form, "refresh_token") if grant_type == "refresh_token" else None,
        )

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return ("", "")
        return user, password

    def _answer(
        self,
        method: str,
        *,
        grant_type: str | None,
        service: str | None,
        scopes: tuple[str, ...],
        offline: bool,
        basic: tuple[str, str] | None,
        refresh_token: str | None,
    ) -> None:
        owner = self.server.owner
        status, body, user, attempted, granted = owner.answer(
            method, grant_type, service, scopes, offline, basic, refresh_token
        )
        owner._record(
            TokenRequest(
                method=method,
                grant_type=grant_type,
                service=service,
                scopes=scopes,
                user=user,
                attempted_user=attempted,
                offline=offline,
                status=status,
                granted=granted,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        extra = {"WWW-Authenticate": 'Basic realm="orascp-test-token"'} if status == 401 else {}
        self._send(status, body, extra)

    def _send(self, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _last(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: TokenServer


class TokenServer:
    """Issue registry tokens on ``http://127.0.0.1:<port>/token`` from a thread of this process.

    ``users`` maps user names to passwords. ``acl`` maps a user to ``{pattern: "pull,push"}``:
    a repository whose name matches the pattern (``fnmatch``, ``*`` crosses ``/``) may get those
    actions (``*`` for any). ``anonymous`` is the ACL of requests without credentials.
    """

    def __init__(
        self,
        *,
        signing_key: Path,
        signing_cert: Path,
        users: Mapping[str, str],
        acl: Mapping[str, Mapping[str, str]],
        anonymous: Mapping[str, str] | None = None,
        service: str = SERVICE,
        issuer: str = ISSUER,
        expires_in: int = EXPIRES_IN,
        path: str = "/token",
    ) -> None:
        key = serialization.load_pem_private_key(signing_key.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the signing key must be RSA (tokens are RS256)")
        self._key = key
        self.signing_cert = signing_cert
        cert = x509.load_pem_x509_certificate(signing_cert.read_bytes())
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.users = dict(users)
        self.acl = {user: dict(rules) for user, rules in acl.items()}
        self.anonymous = dict(anonymous or {})
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.path = path
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> TokenServer:
        """Listen on a free loopback port and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="token-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the token server is not started"
        return int(self._server.server_address[1])

    @property
    def realm(self) -> str:
        """Return the token endpoint's URL, the registry's ``auth.token.realm``."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def registry_config(self) -> dict[str, str | Path]:
        """Return ``Registry(token=...)``: realm, service, issuer and rootcertbundle."""
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": self.signing_cert,
        }

    # -- what was asked

    @property
    def requests(self) -> list[TokenRequest]:
        """Return every request answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def mark(self) -> int:
        """Return the number of requests so far, to look only at what follows."""
        with self._lock:
            return len(self._requests)

    def since(self, mark: int) -> list[TokenRequest]:
        """Return the requests answered after :meth:`mark` returned ``mark``."""
        with self._lock:
            return self._requests[mark:]

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- tokens

    def answer(
        self,
        method: str,
        grant_type: str | None,
        service: str | None,
        scopes: tuple[str, ...],
        offline: bool,
        basic: tuple[str, str] | None,
        refresh_token: str | None,
    ) -> tuple[int, dict[str, Any], str | None, str | None, tuple[Grant, ...]]:
        """Decide one token request: ``(status, body, user, attempted user, granted)``."""
        if method == "POST" and grant_type not in ("password", "refresh_token"):
            return 400, {"error": "unsupported_grant_type"}, None, None, ()
        if service != self.service:
            return 400, {"error": "invalid_request", "error_description": "service"}, None, None, ()
        user: str | None = None
        if refresh_token is not None:
            user = self.user_of_refresh_token(refresh_token)
            if user is None:
                return 401, {"error": "invalid_grant"}, None, None, ()
        elif basic is not None:
            name, password = basic
            if not name or self.users.get(name) != password:
                return 401, {"errors": [{"code": "UNAUTHORIZED"}]}, None, name, ()
            user = name
        elif method == "POST":  # a password grant without a username
            return 400, {"error": "invalid_request"}, None, None, ()

        granted = self.grants(user, scopes)
        token, issued_at = self.issue(user, granted)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued_at,
        }
        if method == "POST":
            body["scope"] = " ".join(scopes)
        if offline and user is not None:
            # A refresh grant hands its own token back: it stays valid, as an identity token does.
            body["refresh_token"] = refresh_token or self.issue_refresh_token(user)
        return 200, body, user, user, granted

    def grants(self, user: str | None, scopes: tuple[str, ...]) -> tuple[Grant, ...]:
        """Return what ``user`` (``None``: anonymous) gets of ``scopes``: the ACL's share."""
        rules = self.anonymous if user is None else self.acl.get(user, {})
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            want = parse_scope(scope)
            if want is None or want.type != "repository":
                continue
            allowed: set[str] = set()
            for pattern, actions in rules.items():
                if fnmatchcase(want.name, pattern):
                    allowed.update(a.strip() for a in actions.split(","))
            got = merged.setdefault((want.type, want.name), [])
            for action in want.actions:
                if (action in allowed or "*" in allowed) and action not in got:
                    got.append(action)
        return tuple(Grant(kind, name, tuple(actions)) for (kind, name), actions in merged.items())

    def issue(self, user: str | None, granted: tuple[Grant, ...] = ()) -> tuple[str, str]:
        """Return a signed token for ``user`` carrying ``granted``, and its RFC 3339 issue time."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [g.claim() for g in granted],
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return f"{signing_input}.{_b64url(signature)}", issued_at

    def token_for(self, user: str | None, *scopes: str) -> str:
        """Return a token with what ``user`` may have of ``scopes`` (not recorded as a request)."""
        return self.issue(user, self.grants(user, scopes))[0]

    def issue_refresh_token(self, user: str) -> str:
        """Return a new refresh token (an identity token) for ``user``."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def user_of_refresh_token(self, token: str) -> str | None:
        with self._lock:
            return self._refresh_tokens.get(token)
