"""The port-forward protocol (portforward.k8s.io) on a SPDY/3.1 session, kubelet's side of it.

For every local connection kubectl accepts, it opens two SPDY streams that share a
``requestid`` header: an error stream (``streamtype: error``) and a data stream
(``streamtype: data``), both carrying ``port``. Once both exist the session dials the target
port and pumps bytes between it and the data stream. Whatever goes wrong is written as text to
the error stream, which kubectl prints as ``an error occurred forwarding L -> R: <text>``. When
the pair is done both streams are finished with an empty DATA frame flagged FIN: kubectl reads
the error stream to its end before it closes the local connection.

The session is transport-agnostic: bytes from the peer go into `feed`, bytes for the peer go
out through the `send` coroutine, and `dial(port)` opens the target connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from skiff.node import spdy

log = logging.getLogger(__name__)

Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

# kubectl allows 30 s for both streams of a pair to be created (kubelet's stream creation timeout).
PAIR_TIMEOUT = 30.0
READ_CHUNK = 32 * 1024


@dataclass
class _Pair:
    request_id: str
    port: int | None = None
    error_stream: int | None = None
    data_stream: int | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    writer: asyncio.StreamWriter | None = None  # the connection to the target, once dialled
    to_target: asyncio.Queue = field(default_factory=asyncio.Queue)


class PortForwardSession:
    """One kubectl port-forward connection. `describe(port)` names the target in error messages."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], dial: Dial,
                 describe: Callable[[int], str] = lambda port: f"port {port}"):
        self._send_raw = send
        self._dial = dial
        self._describe = describe
        self._compressor = spdy.HeaderCompressor()
        self._parser = spdy.FrameParser()
        self._send_lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._stream_pair: dict[int, _Pair] = {}
        self._closed_streams: set[int] = set()
        self._last_stream = 0
        self._goaway = False
        self.closed = asyncio.Event()

    # ---- sending ---------------------------------------------------------------------------------

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self._send_raw(frame)

    async def _reply(self, stream_id: int) -> None:
        # Compression and sending must happen in one critical section: the peer's inflater sees
        # header blocks in the order we deflated them.
        async with self._send_lock:
            await self._send_raw(spdy.encode_syn_reply(stream_id, [], self._compressor))

    async def _fin(self, stream_id: int | None) -> None:
        if stream_id is not None and stream_id not in self._closed_streams:
            self._closed_streams.add(stream_id)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(spdy.encode_data(stream_id, b"", fin=True))

    # ---- receiving -------------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Bytes from the peer, cut anywhere. Raises spdy.ProtocolError on garbage."""
        for frame in self._parser.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.DataFrame):
            pair = self._stream_pair.get(frame.stream_id)
            if pair is None:
                return
            if frame.stream_id == pair.data_stream:
                if frame.data:
                    pair.to_target.put_nowait(frame.data)
                if frame.fin:
                    pair.to_target.put_nowait(None)
            # Data on the error stream (the client only half-closes it) carries nothing for us.
            return
        if frame.type == spdy.SYN_STREAM:
            await self._syn_stream(frame)
        elif frame.type == spdy.RST_STREAM:
            self._reset(frame.stream_id)
        elif frame.type == spdy.PING:
            await self._send(spdy.encode_ping(frame.ping_id))
        elif frame.type == spdy.GOAWAY:
            self._goaway = True
        # SETTINGS, WINDOW_UPDATE, HEADERS: the client's flow control is not enforced (neither does
        # kubectl's SPDY library), and nothing else is expected.

    async def _syn_stream(self, frame: spdy.ControlFrame) -> None:
        sid = frame.stream_id
        if self._goaway or sid <= self._last_stream:
            await self._send(spdy.encode_rst_stream(sid, spdy.PROTOCOL_ERROR if not self._goaway
                                                    else spdy.REFUSED_STREAM))
            return
        self._last_stream = sid
        await self._reply(sid)
        stream_type = frame.header("streamtype")
        request_id = frame.header("requestid")
        port_text = frame.header("port") or ""
        if request_id is None:
            # Old clients (before requestid) send one pair at a time; pair by stream id order.
            request_id = str((sid - 1) // 4)
        pair = self._pairs.get(request_id)
        if pair is None:
            pair = self._pairs[request_id] = _Pair(request_id)
            pair.task = asyncio.create_task(self._run_pair(pair))
        self._stream_pair[sid] = pair
        if stream_type == "error":
            pair.error_stream = sid
        elif stream_type == "data":
            pair.data_stream = sid
        else:
            await self._send(spdy.encode_rst_stream(sid, spdy.PROTOCOL_ERROR))
            return
        try:
            pair.port = int(port_text)
            if not 0 < pair.port < 65536:
                raise ValueError
        except ValueError:
            pair.port = -1
        if pair.error_stream is not None and pair.data_stream is not None:
            pair.complete.set()

    def _reset(self, stream_id: int) -> None:
        self._closed_streams.add(stream_id)
        pair = self._stream_pair.get(stream_id)
        if pair is None:
            return
        if stream_id == pair.data_stream:
            # The client is done with this connection: stop feeding the target and end the pair.
            pair.to_target.put_nowait(None)
            if pair.writer is not None:
                pair.writer.close()

    # ---- forwarding ------------------------------------------------------------------------------

    async def _error(self, pair: _Pair, text: str) -> None:
        if pair.error_stream is not None and pair.error_stream not in self._closed_streams:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(spdy.encode_data(pair.error_stream, text.encode()))

    async def _run_pair(self, pair: _Pair) -> None:
        try:
            try:
                await asyncio.wait_for(pair.complete.wait(), PAIR_TIMEOUT)
            except TimeoutError:
                await self._error(pair, f"timeout waiting for the data and error streams of request {pair.request_id}")
                return
            assert pair.port is not None
            if pair.port < 0:
                await self._error(pair, "invalid port header")
                return
            try:
                reader, writer = await self._dial(pair.port)
            except OSError as exc:
                await self._error(pair, f"error forwarding port {pair.port} to {self._describe(pair.port)}: {exc}")
                return
            pair.writer = writer
            try:
                await self._pump(pair, reader, writer)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one connection take the session down
            log.exception("port-forward request %s failed", pair.request_id)
            await self._error(pair, str(exc))
        finally:
            await self._fin(pair.data_stream)
            await self._fin(pair.error_stream)
            self._pairs.pop(pair.request_id, None)

    async def _pump(self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert pair.data_stream is not None

        async def client_to_target() -> None:
            while True:
                chunk = await pair.to_target.get()
                if chunk is None:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        upstream = asyncio.create_task(client_to_target())
        try:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                if pair.data_stream in self._closed_streams:
                    break
                await self._send(spdy.encode_data(pair.data_stream, chunk))
        except (ConnectionError, OSError):
            pass  # a reset target connection ends the stream like a close does
        finally:
            upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await upstream

    async def close(self) -> None:
        """The transport is gone: stop every forwarded connection."""
        for pair in list(self._pairs.values()):
            if pair.task is not None:
                pair.task.cancel()
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self.closed.set()
