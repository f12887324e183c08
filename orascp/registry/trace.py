"""Trace every HTTP exchange for ``--debug``, with secrets redacted.

A :class:`TracingTransport` wraps the real transport, so it sees each request as sent (after
authentication added its header) and each response as received, including the token service's.
Numbers are unique per process; concurrent exchanges interleave, and each is written as one block.

Redacted: the values of ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` and
of every ``--*-header`` (``*****``); URL query values other than the protocol's public ones, and
user info, in the request URL and in ``Location``/``Content-Location``/``Link`` (``REDACTED``),
since upload locations and object-storage redirects carry signatures there; token, password and
secret fields of JSON bodies. Only JSON bodies up to 16 KiB are shown, never blob bytes.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

__all__ = ["MAX_BODY", "HttpTracer", "TracingTransport", "redact_url"]

MAX_BODY = 16 * 1024
MASK = "*****"
REDACTED = "REDACTED"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_URL_HEADERS = frozenset({"location", "content-location", "referer"})
# Query parameters of the distribution API whose values are digests, names or numbers.
_PUBLIC_QUERY = frozenset({"mount", "from", "digest", "n", "last", "artifacttype", "service"})
_SECRET_FIELDS = frozenset(
    {"token", "access_token", "refresh_token", "id_token", "password", "secret", "identitytoken"}
)
_LINK_URL = re.compile(r"<([^>]*)>")


def redact_url(url: str) -> str:
    """Return ``url`` with user info and non-public query values replaced by ``REDACTED``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return REDACTED
    if parsed.userinfo:
        parsed = parsed.copy_with(username=REDACTED, password=None)
    if parsed.query:
        pairs = [
            (key, value if key.lower() in _PUBLIC_QUERY else REDACTED)
            for key, value in parsed.params.multi_items()
        ]
        parsed = parsed.copy_with(params=pairs)
    return str(parsed)


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if str(k).lower() in _SECRET_FIELDS else _redact_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _printable(text: str) -> str:
    # Registry text reaches a terminal: control characters (escape sequences) are dropped.
    return "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in text)


class HttpTracer:
    """Format exchanges and hand each block to ``write``; shared by every client of a run."""

    def __init__(self, write: Callable[[str], None], secret_headers: Iterable[str] = ()) -> None:
        self.write = write
        self.secret_headers = _SECRET_HEADERS | {h.lower() for h in secret_headers}
        self._numbers = itertools.count()

    def next_number(self) -> int:
        """Return the next exchange number."""
        return next(self._numbers)

    def _headers(self, headers: httpx.Headers) -> list[str]:
        lines = []
        for name, value in headers.multi_items():
            lower = name.lower()
            if lower in self.secret_headers:
                value = MASK
            elif lower in _URL_HEADERS:
                value = redact_url(value)
            elif lower == "link":
                value = _LINK_URL.sub(lambda m: f"<{redact_url(m.group(1))}>", value)
            lines.append(f"  {name}: {_printable(value)}")
        return lines

    def _body(self, content_type: str, body: bytes | None) -> list[str]:
        if body is None or not body or not _is_json(content_type):
            return []
        if len(body) > MAX_BODY:
            return [f"  ({len(body)} bytes of JSON, not shown: above {MAX_BODY})"]
        try:
            shown = json.dumps(_redact_json(json.loads(body)), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return [f"  ({len(body)} bytes, not valid JSON)"]
        return ["  " + line for line in _printable(shown).splitlines()]

    def request(self, number: int, request: httpx.Request, body: bytes | None) -> None:
        """Write the block of a request about to be sent."""
        lines = [f"--> Request #{number}", f"  {request.method} {redact_url(str(request.url))}"]
        lines += self._headers(request.headers)
        lines += self._body(request.headers.get("content-type", ""), body)
        self.write("\n".join(lines) + "\n\n")

    def response(
        self, number: int, response: httpx.Response, body: bytes | None, elapsed: float
    ) -> None:
        """Write the block of a response received."""
        lines = [
            f"<-- Response #{number}",
            f"  {response.status_code} {response.reason_phrase} ({elapsed * 1000:.0f} ms)",
        ]
        lines += self._headers(response.headers)
        lines += self._body(response.headers.get("content-type", ""), body)
        self.write("\n".join(lines) + "\n\n")

    def failure(self, number: int, exc: BaseException, elapsed: float) -> None:
        """Write that a request failed without a response."""
        reason = _printable(str(exc) or type(exc).__name__)
        self.write(f"<-- Response #{number}\n  failed after {elapsed * 1000:.0f} ms: {reason}\n\n")


class TracingTransport(httpx.AsyncBaseTransport):
    """Pass requests to ``inner`` and trace them; small JSON responses are read to be shown."""

    def __init__(self, inner: httpx.AsyncBaseTransport, tracer: HttpTracer) -> None:
        self.inner = inner
        self.tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the inner transport, tracing both directions."""
        number = self.tracer.next_number()
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None  # a streamed blob: never shown
        self.tracer.request(number, request, body)
        started = time.monotonic()
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            self.tracer.failure(number, exc, time.monotonic() - started)
            raise
        shown: bytes | None = None
        length = response.headers.get("content-length", "")
        if (
            _is_json(response.headers.get("content-type", ""))
            and length.isdigit()
            and int(length) <= MAX_BODY
            and request.method != "HEAD"
        ):
            if response.is_stream_consumed:
                shown = response.content  # a transport that returns a response already read
            else:
                try:
                    shown = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            # The caller still reads the body (as a stream): hand it the bytes read, unread.
            response = httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(shown),
                extensions=response.extensions,
                request=request,
            )
        self.tracer.response(number, response, shown, time.monotonic() - started)
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()
