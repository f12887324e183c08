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
# Bodies at least this large are read straight from the socket (see _ResponseStream._raw).
RAW_BODY_MIN = 64 * 1024

Origin = tuple[str, str, int]


class _Connection:
    """Hold one HTTP/1.1 connection: the asyncio streams and the h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
        self.expired = False

    def is_reusable(self) -> bool:
        """Tell whether an idle connection can carry another request."""
        return not (self.reader.at_eof() or self.writer.transport.is_closing())

    def close(self) -> None:
        """Close the socket without waiting."""
        self.writer.transport.abort()

    async def read(self, seconds: float | None, size: int = READ_SIZE) -> bytes:
        """Read up to ``size`` bytes; b"" at the end of the stream.

        The timeout is a plain timer that aborts the connection: ``asyncio.timeout`` around
        each of the ~10 000 reads of a gigabyte costs a measurable share of the copy's CPU.
        """
        timer = None
        if seconds is not None:
            timer = asyncio.get_running_loop().call_later(seconds, self._expire)
        try:
            data = await self.reader.read(size)
        except OSError as exc:
            if self.expired:
                raise httpx.ReadTimeout("timed out waiting for the server") from None
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None
        finally:
            if timer is not None:
                timer.cancel()
        if self.expired:
            raise httpx.ReadTimeout("timed out waiting for the server")
        return data

    def _expire(self) -> None:
        self.expired = True
        self.writer.transport.abort()

    def restart(self) -> None:
        """Start a new h11 state machine after a body was read past it (see _ResponseStream)."""
        if self.h11.our_state is h11.DONE:
            self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)

    async def next_event(self, seconds: float | None) -> Any:
        """Return the next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.read(seconds))


def _raw_length(request: httpx.Request, response: h11.Response) -> int | None:
    """Return the Content-Length of a body that can be read without h11, else None.

    Only a large body is worth it, and only a plain one: a HEAD, 204 and 304 have no body, and a
    chunked or unframed body needs h11.
    """
    if request.method == "HEAD" or response.status_code in (204, 304):
        return None
    lengths = [v for k, v in response.headers if k == b"content-length"]
    if len(lengths) != 1 or any(k == b"transfer-encoding" for k, _ in response.headers):
        return None
    length = int(lengths[0]) if lengths[0].isdigit() else -1
    return length if length >= RAW_BODY_MIN else None


def _map_h11(exc: Exception) -> httpx.TransportError:
    if isinstance(exc, h11.RemoteProtocolError):
        return httpx.RemoteProtocolError(str(exc))
    return httpx.LocalProtocolError(str(exc))


class _ResponseStream(httpx.AsyncByteStream):
    """Stream a response body and hand the connection back when it is fully read."""

    def __init__(
        self,
        transport: AsyncioTransport,
        origin: Origin,
        conn: _Connection,
        timeout: float | None,
        length: int | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout
        # The Content-Length of a body read straight from the socket, or None (h11 frames it).
        self._length = length

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            chunks = (
                self._raw(conn, self._length) if self._length is not None else self._framed(conn)
            )
            async for chunk in chunks:
                yield chunk
        except BaseException:
            self._discard()
            raise
        self._conn = None
        self._transport.release(self._origin, conn)

    async def _framed(self, conn: _Connection) -> AsyncIterator[bytes]:
        while True:
            try:
                event = await conn.next_event(self._timeout)
            except h11.ProtocolError as exc:
                raise _map_h11(exc) from None
            if isinstance(event, h11.Data):
                # h11 hands out a fresh buffer per event; no copy is needed to keep it.
                yield event.data
            elif isinstance(event, h11.EndOfMessage):
                return

    async def _raw(self, conn: _Connection, length: int) -> AsyncIterator[bytes]:
        """Yield a Content-Length body read from the socket without h11.

        For a blob, h11 would copy every chunk into its buffer and out again and run its state
        machine per chunk: about a fifth of the CPU a gigabyte copy spends. Framing a body of
        known length needs none of it. The connection then gets a new h11 state machine.
        """
        remaining = length
        while remaining:
            # First the body bytes h11 read together with the headers.
            try:
                event = conn.h11.next_event()
            except h11.ProtocolError as exc:
                raise _map_h11(exc) from None
            if not isinstance(event, h11.Data):
                break
            remaining -= len(event.data)
            yield event.data
        while remaining > 0:
            data = await conn.read(self._timeout, min(READ_SIZE, remaining))
            if not data:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body"
                    f" (received {length - remaining} bytes, expected {length})"
                )
            remaining -= len(data)
            yield data
        conn.restart()

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
        done = h.our_state is h11.DONE and h.their_state is h11.DONE
        # A new state machine (after a body read without h11) is idle on both sides.
        fresh = h.our_state is h11.IDLE and h.their_state is h11.IDLE
        if (
            (done or fresh)
            and not self._closed
            and len(self._idle.get(origin, ())) < self._max_idle
        ):
            if done:
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
            stream=_ResponseStream(
                self, origin, conn, timeouts.get("read"), _raw_length(request, event)
            ),
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
            # One timeout, armed around each wait for the socket and disarmed while the body
            # is read: entering a new one per chunk of a gigabyte upload costs more CPU than
            # the framing, and a slow source must time out as the source's fault.
            try:
                async with asyncio.timeout(None) as deadline:
                    async for chunk in stream:
                        # Errors raised by the body itself (a failed source, a digest
                        # mismatch) pass through untouched: the upload must be abandoned, not
                        # answered. With passthrough, h11 hands the chunk back as it is (send()
                        # would copy it into one joined bytes object).
                        writer.writelines(h.send_with_data_passthrough(h11.Data(data=chunk)) or ())
                        await self._drain(writer, deadline, seconds)
                    writer.write(h.send(h11.EndOfMessage()) or b"")
                    await self._drain(writer, deadline, seconds)
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending to the server") from None
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from None
        except httpx.WriteError as exc:
            return exc
        return None

    @staticmethod
    async def _drain(
        writer: asyncio.StreamWriter, deadline: asyncio.Timeout, seconds: float | None
    ) -> None:
        # Below the high-water mark drain() does not wait: no deadline needed.
        armed = seconds is not None and writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH
        if armed:
            assert seconds is not None
            deadline.reschedule(asyncio.get_running_loop().time() + seconds)
        try:
            await writer.drain()
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from None
        if armed:
            deadline.reschedule(None)

    async def aclose(self) -> None:
        """Close every idle connection."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
