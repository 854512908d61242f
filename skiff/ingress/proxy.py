"""The Ingress data plane: an HTTP/1.1 reverse proxy, one event loop per worker process.

Hot-path design (measured with bench/ingress_rps.py):
- bare `asyncio.Protocol`s and httptools' C parser on both sides, no streams and no task per
  request: a pooled request is a parse, a dict lookup, one write upstream and one write back;
- writes produced while handling one read are joined into one `transport.write`;
- upstream keep-alive pools per endpoint (the lesson of NGINX Gateway Fabric's numbers), and a
  round-robin pick per request, so every ready pod gets traffic even over pooled connections;
- bodies stream in both directions with back-pressure (a full write buffer pauses the other side);
- WebSocket and other Upgrades become a byte splice after the 101.

`python -m skiff.ingress.proxy --control-fd N ...` runs one worker; `supervisor.py` starts several
on the same port (SO_REUSEPORT) and sends them route tables over the control socket.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import pickle
import socket
import struct
import sys
import time
from typing import Any

import httptools

from skiff.ingress.routes import Backend, Endpoint, NoMatch, RouteTable

log = logging.getLogger("skiff.ingress.proxy")

SERVER_NAME = b"skiff-ingress"
CONNECT_TIMEOUT = 5.0
CLIENT_IDLE_TIMEOUT = 75.0  # nginx's keepalive_timeout default
UPSTREAM_IDLE_TIMEOUT = 55.0  # below common backend idle timeouts, so we close first
MAX_IDLE_PER_ENDPOINT = 64
BUFFER_LIMIT = 256 * 1024  # buffered request body bytes before we stop reading the client

# Hop-by-hop headers (RFC 9110 7.6.1) and the forwarding headers we set ourselves.
_REQ_DROP = frozenset([b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                       b"transfer-encoding", b"upgrade", b"x-forwarded-proto", b"x-forwarded-host",
                       b"x-forwarded-port", b"x-real-ip", b"x-forwarded-for"])
_RESP_DROP = frozenset([b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"])
_REASONS = {400: b"Bad Request", 404: b"Not Found", 408: b"Request Timeout", 413: b"Payload Too Large",
            502: b"Bad Gateway", 503: b"Service Temporarily Unavailable", 504: b"Gateway Timeout"}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _StopParsing(Exception):
    """Raised from a parser callback to abandon the rest of a read (HEAD responses)."""


# ---- shared per-worker state ---------------------------------------------------------------------

class _Clock:
    """Date header and access-log timestamps change once a second; format them once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.date = b""
        self.local = ""

    def tick(self) -> None:
        now = int(time.time())
        if now != self.second:
            g = time.gmtime(now)
            self.second = now
            self.date = (f"Date: {_WEEKDAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} "
                         f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT\r\n").encode()
            self.local = time.strftime("%d/%b/%Y:%H:%M:%S +0000", g)


class AccessLog:
    """nginx-like lines to stdout, written in batches: a flush per request costs a syscall."""

    def __init__(self, fd: int = 1, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled
        self.lines: list[str] = []
        self._scheduled = False

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= 256:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(0.5, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self.lines:
            return
        data = ("\n".join(self.lines) + "\n").encode(errors="replace")
        self.lines.clear()
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            pass


class Worker:
    """What every connection of one worker process shares: the table, the pools, the log."""

    def __init__(self, table: RouteTable | None = None, access_log: AccessLog | None = None) -> None:
        self.table = table or RouteTable()
        self.pools: dict[Endpoint, list[Upstream]] = {}
        self.access_log = access_log or AccessLog()
        self.clock = _Clock()
        self.clients: set[ClientConnection] = set()
        self.certs: Any = None  # tls.CertificateStore when HTTPS is served
        self.loop: asyncio.AbstractEventLoop | None = None

    def set_table(self, table: RouteTable) -> None:
        """Swap atomically: requests already routed keep their route, the next lookup sees the new one."""
        if self.certs is not None:
            self.certs.update(table)
        self.table = table
        live = {ep for b in table.backends() for ep in b.endpoints}
        for ep in [ep for ep in self.pools if ep not in live]:
            for up in self.pools.pop(ep):
                up.close()

    def acquire(self, ep: Endpoint) -> Upstream | None:
        idle = self.pools.get(ep)
        while idle:
            up = idle.pop()
            if up.transport is not None and not up.transport.is_closing():
                return up
        return None

    def release(self, up: Upstream) -> None:
        idle = self.pools.setdefault(up.endpoint, [])
        if len(idle) >= MAX_IDLE_PER_ENDPOINT:
            up.close()
            return
        up.idle_since = self.loop.time() if self.loop else 0.0
        idle.append(up)

    def forget(self, up: Upstream) -> None:
        idle = self.pools.get(up.endpoint)
        if idle and up in idle:
            idle.remove(up)

    def sweep(self) -> None:
        """Close idle client and upstream connections past their timeouts."""
        now = self.loop.time() if self.loop else 0.0
        for c in [c for c in self.clients if not c.queue and now - c.last_active > CLIENT_IDLE_TIMEOUT]:
            c.close()
        for idle in self.pools.values():
            for up in [u for u in idle if now - u.idle_since > UPSTREAM_IDLE_TIMEOUT]:
                idle.remove(up)
                up.close()

    def flush(self) -> None:
        self.access_log.flush()


# ---- one request/response ------------------------------------------------------------------------

class Exchange:
    __slots__ = ("client", "method", "url", "version", "headers", "host", "keep_alive", "start", "chunked",
                 "has_body", "upgrade", "req_done", "buf", "buf_size", "upstream", "endpoint", "backend",
                 "error", "status", "sent", "ua", "referer", "retried", "resp_started")

    def __init__(self, client: ClientConnection, method: bytes, url: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.version = version
        self.headers = headers
        self.host = ""
        self.keep_alive = keep_alive
        self.start = 0.0
        self.chunked = False
        self.has_body = False
        self.upgrade = False
        self.req_done = False
        self.buf: list[bytes] = []
        self.buf_size = 0
        self.upstream: Upstream | None = None
        self.endpoint: Endpoint | None = None
        self.backend: Backend | None = None
        self.error = 0
        self.status = 0
        self.sent = 0
        self.ua = "-"
        self.referer = "-"
        self.retried = False
        self.resp_started = False

    def head_for_upstream(self) -> bytes:
        """Request line and headers for the backend: hop-by-hop headers dropped, X-Forwarded-* set."""
        c = self.client
        xff = None
        host = None
        out = [self.method, b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            ln = name.lower()
            if ln in _REQ_DROP:
                if ln == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                continue
            if ln == b"host":
                host = value
            out += (name, b": ", value, b"\r\n")
        ip = c.peer_ip
        out += (b"X-Forwarded-For: ", (xff + b", " + ip) if xff else ip, b"\r\nX-Real-IP: ", ip,
                b"\r\nX-Forwarded-Proto: ", c.scheme, b"\r\nX-Forwarded-Host: ", host or b"",
                b"\r\nX-Forwarded-Port: ", c.port, b"\r\n")
        if host is None and self.endpoint is not None:
            out += (b"Host: ", f"{self.endpoint[0]}:{self.endpoint[1]}".encode(), b"\r\n")
        if self.upgrade:
            out.append(b"Connection: upgrade\r\n")
            for name, value in self.headers:
                if name.lower() == b"upgrade":
                    out += (b"Upgrade: ", value, b"\r\n")
        elif self.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        out.append(b"\r\n")
        return b"".join(out)


# ---- the client side -----------------------------------------------------------------------------

class ClientConnection(asyncio.Protocol):
    def __init__(self, worker: Worker, scheme: bytes, port: int) -> None:
        self.worker = worker
        self.scheme = scheme
        self.port = str(port).encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = b"-"
        self.queue: collections.deque[Exchange] = collections.deque()
        self.cur: Exchange | None = None  # the request being parsed (may be queued behind another)
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self.tunnel: asyncio.Transport | None = None
        self.upgrading = False
        self.closing = False
        self.last_active = 0.0
        self.paused = False
        self.eof = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0].encode() if peer else b"-"
        self.worker.clients.add(self)
        self.last_active = self.worker.loop.time() if self.worker.loop else 0.0

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrading:
            self._forward_raw(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            if self.cur is None or not self.cur.upgrade:  # CONNECT: we are not a forward proxy
                self._fail_parse()
                return
            self.upgrading = True
            rest = data[e.args[0]:]
            if rest:
                self._forward_raw(rest)
        except httptools.HttpParserError:
            self._fail_parse()
            return
        self.last_active = self.worker.loop.time() if self.worker.loop else 0.0

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            return False  # closes us; connection_lost closes the backend side
        if self.queue:
            self.eof = True
            return True  # half-closed after the last request: still answer it
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.worker.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        for ex in self.queue:
            if ex.upstream is not None:
                ex.upstream.abandon()
        self.queue.clear()

    def pause_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex and ex.upstream and ex.upstream.transport:
            ex.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex and ex.upstream and ex.upstream.transport:
            ex.upstream.transport.resume_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        url = b"".join(self._url)
        ex = Exchange(self, p.get_method(), url, p.get_http_version(), self._headers, p.should_keep_alive())
        w = self.worker
        ex.start = w.loop.time() if w.loop else 0.0
        conn_upgrade = False
        for name, value in self._headers:
            ln = name.lower()
            if ln == b"host":
                ex.host = value.decode("latin-1")
            elif ln == b"transfer-encoding":
                ex.chunked = b"chunked" in value.lower()
                ex.has_body = True
            elif ln == b"content-length":
                ex.has_body = value.strip() != b"0"
            elif ln == b"user-agent":
                ex.ua = value.decode("latin-1")
            elif ln == b"referer":
                ex.referer = value.decode("latin-1")
            elif ln == b"connection":
                conn_upgrade = b"upgrade" in value.lower()
            elif ln == b"upgrade":
                ex.upgrade = True
        ex.upgrade = ex.upgrade and conn_upgrade
        if ex.upgrade:
            ex.keep_alive = False  # after a refused upgrade the stream is no longer HTTP we can parse
        self.cur = ex
        self.queue.append(ex)
        if len(self.queue) == 1:
            self._start(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        if ex is None or ex.error:
            return
        if ex.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._send(ex, body)

    def on_message_complete(self) -> None:
        ex = self.cur
        if ex is None:
            return
        ex.req_done = True
        if ex.chunked and not ex.error:
            self._send(ex, b"0\r\n\r\n")
        if ex.error and self.queue and self.queue[0] is ex:
            self._respond_error(ex)
        elif len(self.queue) > 8 and not self.paused:
            self._pause()  # a pipelining client far ahead of us: stop reading until we catch up

    # routing and forwarding
    def _start(self, ex: Exchange) -> None:
        path = ex.url
        if path[:1] != b"/":  # absolute-form (proxy-style) request target
            try:
                path = httptools.parse_url(path).path or b"/"
            except httptools.HttpParserInvalidURLError:
                path = b"/"
        else:
            q = path.find(b"?")
            if q >= 0:
                path = path[:q]
        route = self.worker.table.lookup(ex.host, path.decode("latin-1"))
        if isinstance(route, NoMatch):
            ex.error = route.status
            if ex.req_done:
                self._respond_error(ex)
            return
        ex.backend = route.backend
        ex.endpoint = route.backend.pick()
        self._connect(ex)

    def _connect(self, ex: Exchange) -> None:
        up = self.worker.acquire(ex.endpoint)  # type: ignore[arg-type]
        if up is not None:
            up.attach(ex, reused=True)
        else:
            self.worker.loop.create_task(self._open(ex))  # type: ignore[union-attr]

    async def _open(self, ex: Exchange) -> None:
        loop = self.worker.loop
        ep = ex.endpoint
        try:
            _, up = await asyncio.wait_for(
                loop.create_connection(lambda: Upstream(self.worker, ep), ep[0], ep[1]),  # type: ignore
                CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as e:
            log.warning("upstream %s:%s for %s: %s", ep[0], ep[1], ex.backend.name if ex.backend else "-",
                        e or "connect timed out")
            if self.closing:
                return
            ex.error = 504 if isinstance(e, TimeoutError) else 502
            ex.keep_alive = ex.keep_alive and ex.req_done
            self._respond_error(ex)
            return
        if self.closing or not self.queue or self.queue[0] is not ex:
            up.close()
            return
        up.attach(ex, reused=False)

    def _send(self, ex: Exchange, data: bytes) -> None:
        up = ex.upstream
        if up is not None and up.transport is not None:
            up.transport.write(data)
        else:
            ex.buf.append(data)
            ex.buf_size += len(data)
            if ex.buf_size > BUFFER_LIMIT and not self.paused:
                self._pause()

    def _forward_raw(self, data: bytes) -> None:
        ex = self.queue[0] if self.queue else None
        if ex is None or ex.error:
            return
        self._send(ex, data)

    def _pause(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def start_tunnel(self, up: Upstream, rest: bytes) -> None:
        self.tunnel = up.transport
        up.tunnel = self.transport
        if rest:
            self.transport.write(rest)  # type: ignore[union-attr]
        self._resume()

    def finish(self, ex: Exchange) -> None:
        """The response is complete: log it, then serve the next pipelined request or close."""
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        self._log(ex)
        if self.closing:
            return
        if not ex.req_done:
            # The backend answered before reading the whole body; the rest of it is unparseable
            # without draining, so end the connection like nginx does.
            ex.keep_alive = False
        if not ex.keep_alive or (self.eof and not self.queue):
            self.close()
            return
        if self.paused and not self.queue:
            self._resume()
        if self.queue:
            nxt = self.queue[0]
            self._start(nxt)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _respond_error(self, ex: Exchange) -> None:
        w = self.worker
        w.clock.tick()
        status = ex.error
        reason = _REASONS.get(status, b"Error")
        title = b"%d %b" % (status, reason)
        body = (b"<html>\r\n<head><title>" + title + b"</title></head>\r\n<body>\r\n<center><h1>" + title
                + b"</h1></center>\r\n<hr><center>skiff-ingress</center>\r\n</body>\r\n</html>\r\n")
        if ex.method == b"HEAD":
            payload = b""
        else:
            payload = body
        keep = ex.keep_alive and ex.req_done
        ex.keep_alive = keep
        head = (b"HTTP/1.1 " + title + b"\r\n" + w.clock.date + b"Server: " + SERVER_NAME
                + b"\r\nContent-Type: text/html\r\nContent-Length: " + str(len(body)).encode()
                + (b"\r\nConnection: keep-alive\r\n\r\n" if keep else b"\r\nConnection: close\r\n\r\n"))
        if self.transport is not None and not self.closing:
            self.transport.write(head + payload)
        ex.status = status
        ex.sent = len(payload)
        ex.req_done = True
        self.finish(ex)

    def _fail_parse(self) -> None:
        ex = Exchange(self, b"-", b"-", "1.1", [], False)
        ex.error = 400
        ex.req_done = True
        self.queue.clear()
        self.queue.append(ex)
        self._respond_error(ex)

    def _log(self, ex: Exchange) -> None:
        w = self.worker
        if not w.access_log.enabled:
            return
        w.clock.tick()
        dur = (w.loop.time() - ex.start) if w.loop else 0.0
        up = f"{ex.endpoint[0]}:{ex.endpoint[1]}" if ex.endpoint else "-"
        w.access_log.add(
            f'{self.peer_ip.decode()} - - [{w.clock.local}] "{ex.method.decode("latin-1")} '
            f'{ex.url.decode("latin-1")} HTTP/{ex.version}" {ex.status} {ex.sent} "{ex.referer}" "{ex.ua}" '
            f'{dur:.3f} [{ex.backend.name if ex.backend else "-"}] {up} {ex.host or "-"}')


# ---- the backend side ----------------------------------------------------------------------------

class Upstream(asyncio.Protocol):
    """One keep-alive connection to one endpoint; serves one exchange at a time."""

    def __init__(self, worker: Worker, endpoint: Endpoint) -> None:
        self.worker = worker
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.out: list[bytes] = []
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunk_out = False
        self.informational = False
        self.response_done = False
        self.got_bytes = False
        self.reused = False
        self.tunnel: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.close_delimited = False
        self.no_reuse = False
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def attach(self, ex: Exchange, reused: bool) -> None:
        self.ex = ex
        ex.upstream = self
        self.reused = reused
        self.response_done = False
        self.got_bytes = False
        self.close_delimited = False
        self.no_reuse = False
        head = ex.head_for_upstream()
        if ex.buf:
            self.transport.write(head + b"".join(ex.buf))  # type: ignore[union-attr]
            ex.buf = []
            ex.buf_size = 0
            ex.client._resume()
        else:
            self.transport.write(head)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        ex = self.ex
        if ex is None:  # a response nobody asked for: this connection is out of sync
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[e.args[0]:]
            out, self.out = self.out, []
            if ex.client.transport is not None:
                ex.client.transport.write(b"".join(out))
            ex.client.start_tunnel(self, rest)
            return
        except httptools.HttpParserCallbackError:
            if not (self.no_reuse and self.response_done):
                raise
        except httptools.HttpParserError as e:
            log.warning("bad response from %s:%s: %s", self.endpoint[0], self.endpoint[1], e)
            self._broken(ex)
            return
        if self.out:
            out, self.out = self.out, []
            ct = ex.client.transport
            if ct is not None and not ex.client.closing:
                ct.write(b"".join(out) if len(out) > 1 else out[0])
        if self.response_done and self.ex is ex:
            self._complete(ex)

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
            return
        ex = self.ex
        if ex is None:
            self.worker.forget(self)
            return
        self.ex = None
        if self.close_delimited and ex.resp_started:
            self._flush_and_finish(ex)
        elif not self.got_bytes and self.reused and not ex.has_body and not ex.retried \
                and not ex.client.closing:
            # The backend closed an idle pooled connection just as we reused it: try a fresh one.
            ex.retried = True
            ex.upstream = None
            ex.client._connect(ex)
        else:
            self._broken(ex)

    def pause_writing(self) -> None:
        if self.ex is not None:
            self.ex.client._pause()

    def resume_writing(self) -> None:
        if self.ex is not None:
            self.ex.client._resume()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = []
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        status = self.parser.get_status_code()
        self.informational = 100 <= status < 200 and status != 101
        out = [b"HTTP/1.1 %d %b\r\n" % (status, self.reason)]
        has_length = False
        has_server = False
        framed = False
        for name, value in self.headers:
            ln = name.lower()
            if ln in _RESP_DROP:
                if ln == b"transfer-encoding":
                    framed = True
                continue
            if ln == b"content-length":
                has_length = True
            elif ln == b"server":
                has_server = True
            out += (name, b": ", value, b"\r\n")
        if not has_server:
            out += (b"Server: ", SERVER_NAME, b"\r\n")
        if self.informational:
            out.append(b"\r\n")
            self.out.append(b"".join(out))
            return
        ex.status = status
        ex.resp_started = True
        # Read now: llhttp resets its flags once the message completes.
        self.keep_alive = self.parser.should_keep_alive()
        if status == 101 and ex.upgrade:
            out.append(b"Connection: upgrade\r\n")
            for name, value in self.headers:
                if name.lower() == b"upgrade":
                    out += (b"Upgrade: ", value, b"\r\n")
            out.append(b"\r\n")
            self.out.append(b"".join(out))
            ex.client._log(ex)
            return
        bodiless = ex.method == b"HEAD" or status in (204, 304)
        self.chunk_out = False
        client_11 = ex.version == "1.1"
        if not bodiless and not has_length:
            if not framed:
                self.close_delimited = True
            if client_11:
                self.chunk_out = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                ex.keep_alive = False  # HTTP/1.0: the body ends when we close
        if ex.keep_alive and not ex.upgrade:
            if not client_11:
                out.append(b"Connection: keep-alive\r\n")
        else:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        self.out.append(b"".join(out))
        if ex.method == b"HEAD":
            # httptools cannot be told the request was HEAD and would wait for Content-Length
            # bytes that never come; end here and do not reuse this connection.
            self.response_done = True
            self.close_delimited = False
            self.no_reuse = True
            raise _StopParsing()

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.sent += len(body)
        self.out.append(b"%x\r\n%b\r\n" % (len(body), body) if self.chunk_out else body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if self.chunk_out:
            self.out.append(b"0\r\n\r\n")
        self.response_done = True

    # completion
    def _complete(self, ex: Exchange) -> None:
        # A backend that answered before reading the whole request body is out of sync with us.
        reusable = self.keep_alive and ex.req_done and not ex.upgrade and not self.no_reuse
        self.ex = None
        ex.upstream = None
        if reusable:
            self.worker.release(self)
        else:
            self.close()
        ex.client.finish(ex)

    def _flush_and_finish(self, ex: Exchange) -> None:
        if self.chunk_out:
            self.out.append(b"0\r\n\r\n")
        if self.out and ex.client.transport is not None:
            ex.client.transport.write(b"".join(self.out))
            self.out = []
        ex.upstream = None
        ex.client.finish(ex)

    def _broken(self, ex: Exchange) -> None:
        self.ex = None
        ex.upstream = None
        self.close()
        if ex.client.closing:
            return
        if not ex.resp_started:
            ex.error = 502
            ex.client._respond_error(ex)
        else:
            ex.client.close()  # the response was cut short; closing tells the client so

    def abandon(self) -> None:
        """The client went away mid-exchange: the response can't be resynchronised, drop it."""
        self.ex = None
        self.close()

    def close(self) -> None:
        t = self.transport
        if t is not None:
            t.close()


# ---- the worker process ---------------------------------------------------------------------------

def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(4096)
    s.setblocking(False)
    return s


async def serve(worker: Worker, http: tuple[str, int] | None, https: tuple[str, int] | None,
                fake_cert: tuple[bytes, bytes] | None = None) -> list[asyncio.Server]:
    """Start listeners for one worker (each binds its own SO_REUSEPORT socket)."""
    loop = asyncio.get_running_loop()
    worker.loop = loop
    servers = []
    if http is not None:
        servers.append(await loop.create_server(lambda: ClientConnection(worker, b"http", http[1]),
                                                sock=listening_socket(*http)))
    if https is not None:
        from skiff.ingress import tls
        worker.certs = tls.CertificateStore(fake_cert or tls.fake_certificate(), lambda: worker.table)
        worker.certs.update(worker.table)
        servers.append(await loop.create_server(lambda: ClientConnection(worker, b"https", https[1]),
                                                sock=listening_socket(*https), ssl=worker.certs.default,
                                                ssl_handshake_timeout=10.0))

    def tick() -> None:
        worker.sweep()
        loop.call_later(5.0, tick)
    loop.call_later(5.0, tick)
    return servers


# Control channel framing: 4-byte big-endian length + pickle. Both ends are this module's code
# in processes we started, so pickle's trust requirement holds and it keeps the table's types.
_FRAME = struct.Struct("!I")


async def read_message(reader: asyncio.StreamReader) -> Any:
    size = _FRAME.unpack(await reader.readexactly(_FRAME.size))[0]
    return pickle.loads(await reader.readexactly(size))


def encode_message(msg: Any) -> bytes:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(data)) + data


def _addr(s: str | None) -> tuple[str, int] | None:
    if not s:
        return None
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def worker_main(control_fd: int, http: tuple[str, int] | None, https: tuple[str, int] | None,
                      access_log: bool) -> None:
    sock = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    init = await read_message(reader)  # {"table": RouteTable, "fake_cert": (pem, pem)}
    worker = Worker(init["table"], AccessLog(enabled=access_log))
    servers = await serve(worker, http, https, init.get("fake_cert"))
    writer.write(encode_message(("ready", worker.table.generation)))
    try:
        while True:
            try:
                kind, payload = await read_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the supervisor is gone: so are we
            if kind == "table":
                worker.set_table(payload)
                writer.write(encode_message(("ack", payload.generation)))
            elif kind == "stop":
                return
    finally:
        for s in servers:
            s.close()
        worker.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="skiff.ingress.proxy", description="one Ingress proxy worker")
    ap.add_argument("--control-fd", type=int, required=True)
    ap.add_argument("--http", default=None, help="host:port")
    ap.add_argument("--https", default=None, help="host:port")
    ap.add_argument("--no-access-log", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = asyncio.run
    if os.environ.get("SKIFF_INGRESS_LOOP") == "uvloop":
        # Opt-in only: on this workload bench/ingress_rps.py measured no gain over the stdlib loop.
        import uvloop
        run = uvloop.run
    try:
        run(worker_main(args.control_fd, _addr(args.http), _addr(args.https), not args.no_access_log))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
