"""Carry httpx requests over asyncio streams, with h11 doing the HTTP/1.1 framing.

Why not httpx's default transport: httpcore stays portable between asyncio and trio through anyio,
and measured here that costs about 50 ms of lazy imports and set-up on the first request and about
1 ms of bookkeeping per request (a mount-only copy of an 8-layer image is ~20 requests, and the
whole copy should take less than that), plus a cancel scope around every 64 KiB read and write of a
gigabyte transfer. orascp only ever runs on asyncio, so this transport talks to asyncio directly:
keep-alive connections per origin, large reads, a write buffer that lets a streamed upload flow,
and httpx's own exception types so the client above cannot tell the difference.

It speaks HTTP/1.1 only (registries do) and does not do proxies (a request for one would need
httpx's default transport; ``trust_env`` proxy variables are not honoured here).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import h11
import httpx

__all__ = ["AsyncioTransport"]

# Reads and queued writes per connection. Larger values save little CPU (measured: 256 KiB reads
# and a 1 MiB write queue gained nothing in wall time) but let peak RSS grow with the size of the
# copy until the buffers reach steady state (35 MiB at 100 MiB, 40 MiB at 1 GiB); at these sizes
# it stays flat, about 33 MiB for both.
READ_SIZE = 128 * 1024
WRITE_BUFFER_HIGH = 256 * 1024

Origin = tuple[str, str, int]


class _Connection:
    """Hold one HTTP/1.1 connection: the asyncio streams and the h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)

    def is_reusable(self) -> bool:
        """Tell whether an idle connection can carry another request."""
        return not (self.reader.at_eof() or self.writer.transport.is_closing())

    def close(self) -> None:
        """Close the socket without waiting."""
        self.writer.transport.abort()

    async def next_event(self, seconds: float | None) -> Any:
        """Return the next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(seconds):
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the server") from None
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from None
            self.h11.receive_data(data)


def _map_h11(exc: Exception) -> httpx.TransportError:
    if isinstance(exc, h11.RemoteProtocolError):
        return httpx.RemoteProtocolError(str(exc))
    return httpx.LocalProtocolError(str(exc))


class _ResponseStream(httpx.AsyncByteStream):
    """Stream a response body and hand the connection back when it is fully read."""

    def __init__(
        self, transport: AsyncioTransport, origin: Origin, conn: _Connection, timeout: float | None
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                try:
                    event = await conn.next_event(self._timeout)
                except h11.ProtocolError as exc:
                    raise _map_h11(exc) from None
                if isinstance(event, h11.Data):
                    # h11 hands out a fresh buffer per event; no copy is needed to keep it.
                    yield event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        except BaseException:
            self._discard()
            raise
        self._conn = None
        self._transport.release(self._origin, conn)

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        """Close the connection if the body was not read to its end (it cannot be reused)."""
        self._discard()


class AsyncioTransport(httpx.AsyncBaseTransport):
    """Send httpx requests over pooled asyncio connections."""

    def __init__(
        self,
        *,
        ssl_context: Callable[[], ssl.SSLContext] | None = None,
        max_idle_per_origin: int = 16,
    ) -> None:
        self._ssl_factory = ssl_context or (lambda: httpx.create_ssl_context())
        self._ssl: ssl.SSLContext | None = None
        self._max_idle = max_idle_per_origin
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        # Created on first use: loading CA certificates costs tens of milliseconds.
        if self._ssl is None:
            self._ssl = self._ssl_factory()
        return self._ssl

    async def _connect(self, origin: Origin, seconds: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                    limit=READ_SIZE,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        return _Connection(reader, writer)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.is_reusable():
                return conn
            conn.close()
        return None

    def release(self, origin: Origin, conn: _Connection) -> None:
        """Return a connection whose exchange is complete to the idle pool, or close it."""
        h = conn.h11
        if (
            not self._closed
            and h.our_state is h11.DONE
            and h.their_state is h11.DONE
            and len(self._idle.get(origin, ())) < self._max_idle
        ):
            h.start_next_cycle()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response with its body still to be read."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        origin: Origin = (url.scheme, url.host, port)
        conn = self._take_idle(origin)
        replayable = isinstance(request.stream, httpx.ByteStream)
        if conn is not None and replayable:
            try:
                return await self._exchange(origin, conn, request, timeouts)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                # The server may have closed this keep-alive connection just as we sent: the
                # request (with a body held in memory) is safe to send again, once.
                pass
        elif conn is not None:
            return await self._exchange(origin, conn, request, timeouts)
        conn = await self._connect(origin, timeouts.get("connect"))
        return await self._exchange(origin, conn, request, timeouts)

    async def _exchange(
        self,
        origin: Origin,
        conn: _Connection,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        try:
            write_error = await self._send(conn, request, timeouts.get("write"))
            try:
                while True:
                    event = await conn.next_event(timeouts.get("read"))
                    if isinstance(event, h11.Response):
                        break
                    if not isinstance(event, h11.InformationalResponse):
                        raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")
            except (httpx.TransportError, h11.ProtocolError) as exc:
                # A server that stops reading an upload usually says why before it hangs up.
                if write_error is not None:
                    raise write_error from None
                raise exc if isinstance(exc, httpx.TransportError) else _map_h11(exc) from None
        except BaseException:
            conn.close()
            raise
        return httpx.Response(
            status_code=event.status_code,
            headers=event.headers,
            stream=_ResponseStream(self, origin, conn, timeouts.get("read")),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
        )

    async def _send(
        self, conn: _Connection, request: httpx.Request, seconds: float | None
    ) -> httpx.TransportError | None:
        """Write the request; return a write failure instead of raising it (see the caller)."""
        h = conn.h11
        writer = conn.writer
        try:
            writer.write(
                h.send(
                    h11.Request(
                        method=request.method,
                        target=request.url.raw_path,
                        headers=request.headers.raw,
                    )
                )
                or b""
            )
            stream = cast(httpx.AsyncByteStream, request.stream)
            async for chunk in stream:
                # Errors raised by the body itself (a failed source, a digest mismatch) pass
                # through untouched: the upload must be abandoned, not answered.
                writer.write(h.send(h11.Data(data=chunk)) or b"")
                await self._drain(writer, seconds)
            writer.write(h.send(h11.EndOfMessage()) or b"")
            await self._drain(writer, seconds)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        except httpx.WriteError as exc:
            return exc
        return None

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter, seconds: float | None) -> None:
        try:
            async with asyncio.timeout(seconds):
                await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending to the server") from None
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        """Close every idle connection."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
