"""The HTTP/1.1 server and process plumbing shared by every built-in image.

Built-in images are benchmarked behind Services and Ingresses, and a pod's start latency includes
this module's import time, so the server is a bare `asyncio.Protocol` with a minimal parser:
keep-alive, pipelining (answered in order), Content-Length and chunked request bodies, HEAD,
`Expect: 100-continue`. Handlers are plain functions `Request -> Response` (or coroutines, for the
few endpoints that wait), which keeps the common path free of task switches.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect",
    308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 412: "Precondition Failed",
    413: "Request Entity Too Large", 417: "Expectation Failed", 418: "I'm a teapot",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
MAX_HEADER_BYTES = 1 << 20  # Go's net/http default, which most of the imitated images use
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def reason(status: int) -> str:
    return _REASONS.get(status) or f"status code {status}"


def http_date(t: float | None = None) -> str:
    """RFC 7231 IMF-fixdate, as every server sends in `Date`."""
    g = time.gmtime(t)
    return (f"{_WEEKDAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} "
            f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT")


_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    # Formatting a date per request shows up in benchmarks; it only changes once a second.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, b"Date: " + http_date(now).encode() + b"\r\n")
    return _date_cache[1]


# ---- logging ---------------------------------------------------------------------------------

_pending_log: list[str] = []


def log(line: str) -> None:
    """Write one line to stdout. Lines logged during one event-loop turn go out in one write,
    so a busy server does not pay a syscall per request while `kubectl logs -f` stays live."""
    if not _pending_log:
        try:
            asyncio.get_running_loop().call_soon(flush_log)
        except RuntimeError:
            _pending_log.append(line)
            flush_log()
            return
    _pending_log.append(line)


def flush_log() -> None:
    if _pending_log:
        data = "\n".join(_pending_log) + "\n"
        _pending_log.clear()
        try:
            sys.stdout.write(data)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass


# ---- requests and responses ------------------------------------------------------------------


class Request:
    """One parsed request. `headers` keeps the client's order and spelling; `header()` looks a
    name up case-insensitively."""

    __slots__ = ("method", "target", "version", "headers", "body", "peer", "local", "path",
                 "query_string", "_query", "_lower")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]],
                 body: bytes, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.peer = peer
        self.local = local
        path, _, qs = target.partition("?")
        if path.startswith(("http://", "https://")):  # absolute-form (proxies)
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        self.path = path
        self.query_string = qs
        self._query: dict[str, list[str]] | None = None
        self._lower: dict[str, str] | None = None

    def header(self, name: str, default: str = "") -> str:
        if self._lower is None:
            lower: dict[str, str] = {}
            for k, v in self.headers:
                lower.setdefault(k.lower(), v)
            self._lower = lower
        return self._lower.get(name.lower(), default)

    @property
    def remote_addr(self) -> str:
        """`ip:port` of the client, spelled like Go's `Request.RemoteAddr`."""
        host, port = self.peer[0], self.peer[1]
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            from urllib.parse import parse_qs

            self._query = parse_qs(self.query_string, keep_blank_values=True)
        return self._query

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def form_value(self, name: str) -> str:
        """Go's `FormValue`: a url-encoded POST body first, then the query string."""
        if self.body and self.header("content-type").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qs

            values = parse_qs(self.body.decode("latin-1"), keep_blank_values=True).get(name)
            if values:
                return values[0]
        return self.arg(name)


class Response:
    """`body` is bytes, or an iterable of byte chunks for large bodies (then `length` is needed).
    `after` runs once the response has been handed to the kernel (e.g. to exit the process)."""

    __slots__ = ("status", "body", "content_type", "headers", "close", "length", "after")

    def __init__(self, body: bytes | Iterable[bytes] = b"", status: int = 200,
                 content_type: str | None = "text/plain; charset=utf-8",
                 headers: list[tuple[str, str]] | None = None, close: bool = False,
                 length: int | None = None, after: Callable[[], Any] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.close = close
        self.length = length
        self.after = after


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at `start`; None if it has not fully arrived."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(400, "malformed chunked encoding") from None
        pos = eol + 2
        if size == 0:
            # Skip trailers up to the empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(out), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2


class HTTPProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, handler: Handler, server_header: str | None = None) -> None:
        self.handler = handler
        self.server_line = b"Server: " + server_header.encode() + b"\r\n" if server_header else b""
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.busy = False  # an async handler or a streamed body is in progress
        self.closing = False
        self.continued = False
        self._can_write: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if peer:
            self.peer = (peer[0], peer[1])
        if local:
            self.local = (local[0], local[1])
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def eof_received(self) -> bool:
        # Answer what has already arrived (a client may half-close after its request), then close.
        self.closing = True
        if not self.busy and self.transport is not None:
            self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    # -- request handling --
    def _parse(self) -> tuple[Request, bool] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise BadRequest(431, "Request Header Fields Too Large")
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        while lines and not lines[0]:  # tolerate stray CRLF between requests (RFC 9112 2.2)
            lines.pop(0)
        if not lines:
            del buf[:end + 4]
            return self._parse()
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "malformed request line")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        length = 0
        chunked = False
        connection = ""
        expect = False
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                raise BadRequest(400, "malformed header")
            value = value.strip()
            headers.append((name, value))
            lname = name.lower()
            if lname == "content-length":
                if not value.isdigit():
                    raise BadRequest(400, "bad Content-Length")
                length = int(value)
            elif lname == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lname == "connection":
                connection = value.lower()
            elif lname == "expect":
                expect = value.lower() == "100-continue"
        start = end + 4
        if chunked:
            decoded = _parse_chunked(buf, start)
            if decoded is None:
                self._maybe_continue(expect)
                return None
            body, consumed = decoded
        else:
            if len(buf) < start + length:
                self._maybe_continue(expect)
                return None
            body = bytes(buf[start:start + length])
            consumed = start + length
        del buf[:consumed]
        self.continued = False
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        return Request(method, target, version, headers, body, self.peer, self.local), keep_alive

    def _maybe_continue(self, expect: bool) -> None:
        if expect and not self.continued and self.transport is not None:
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _process(self) -> None:
        while not self.closing and self.buf:
            try:
                parsed = self._parse()
            except BadRequest as e:
                self._send_error(e.status, str(e))
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            try:
                result = self.handler(request)
            except Exception as e:  # a bug in one handler must not kill the server
                log(f"handler error for {request.method} {request.target}: {e!r}")
                result = Response(b"internal error\n", status=500)
            if not isinstance(result, Response):
                self.busy = True
                asyncio.ensure_future(self._finish(request, keep_alive, result))
                return
            if not self._write(request, keep_alive, result):
                return

    async def _finish(self, request: Request, keep_alive: bool, pending: Awaitable[Response]) -> None:
        try:
            response = await pending
        except Exception as e:
            log(f"handler error for {request.method} {request.target}: {e!r}")
            response = Response(b"internal error\n", status=500)
        if self._write(request, keep_alive, response):
            self.busy = False
            self._process()

    def _head(self, request: Request, keep_alive: bool, response: Response, length: int) -> bytes:
        parts = [f"HTTP/1.1 {response.status} {reason(response.status)}\r\n".encode(),
                 _date_header(), self.server_line]
        if response.content_type is not None:
            parts.append(b"Content-Type: " + response.content_type.encode() + b"\r\n")
        if response.headers:
            parts.append("".join(f"{k}: {v}\r\n" for k, v in response.headers).encode("latin-1"))
        if response.status >= 200 and response.status not in (204, 304):
            parts.append(b"Content-Length: " + str(length).encode() + b"\r\n")
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif request.version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _write(self, request: Request, keep_alive: bool, response: Response) -> bool:
        """Send one response; False when the connection is done (closed or streaming)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        keep_alive = keep_alive and not response.close and not self.closing
        body = response.body
        if isinstance(body, bytes | bytearray):
            head = self._head(request, keep_alive, response, len(body))
            if request.method == "HEAD" or response.status in (204, 304):
                transport.write(head)
            else:
                transport.write(head + body)
        else:
            length = response.length or 0
            transport.write(self._head(request, keep_alive, response, length))
            if request.method != "HEAD":
                self.busy = True
                asyncio.ensure_future(self._stream(body, keep_alive, response.after))
                return False
        if response.after is not None:
            response.after()
        if not keep_alive:
            transport.close()
            self.closing = True
            return False
        return True

    async def _stream(self, chunks: Iterable[bytes], keep_alive: bool,
                      after: Callable[[], Any] | None) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in chunks:
            if transport.is_closing():
                return
            transport.write(chunk)
            if self._can_write is not None:
                await self._can_write
        if after is not None:
            after()
        if not keep_alive:
            transport.close()
            self.closing = True
            return
        self.busy = False
        self._process()

    def _send_error(self, status: int, message: str) -> None:
        if self.transport is not None:
            body = f"{status} {reason(status)}: {message}".encode()
            self.transport.write(
                f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            self.transport.close()
        self.closing = True


# ---- listeners and the process lifecycle -----------------------------------------------------


async def start_http(handler: Handler, port: int, host: str = "0.0.0.0",
                     server_header: str | None = None, ssl: Any = None) -> list[asyncio.Server]:
    """Listen on `host:port` (all IPv4 addresses by default, plus `[::]` when the pod has IPv6 and
    no host was named), like Go's `ListenAndServe(":port")`."""
    loop = asyncio.get_running_loop()

    def factory() -> HTTPProtocol:
        return HTTPProtocol(handler, server_header)

    servers = [await loop.create_server(factory, host, port, reuse_address=True, backlog=4096, ssl=ssl)]
    if host == "0.0.0.0":
        try:
            servers.append(await loop.create_server(factory, "::", port, reuse_address=True,
                                                    backlog=4096, ssl=ssl))
        except OSError:
            pass  # no IPv6 in this network namespace: IPv4 is what pods use
    notify_listening()
    return servers


# Set by the node agent's fork server in a container it starts (skiff.node.forkserver._child): a
# pipe to the agent, told each time listeners are bound, so that it need not probe with connections.
LISTENING_FD: int | None = None


def notify_listening() -> None:
    global LISTENING_FD
    if LISTENING_FD is not None:
        try:
            os.write(LISTENING_FD, b"\n")
        except OSError:
            LISTENING_FD = None  # the agent is gone or does not listen: never mind


def parse_listen(address: str, default_port: int) -> tuple[str, int]:
    """Go-style listen address (`:5678`, `0.0.0.0:80`, `[::]:80`) to (host, port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port) if port else default_port


def run(main: Callable[[], Awaitable[Any]], on_signal: Callable[[int], Any] | None = None) -> None:
    """Run `main` (which starts listeners), then serve until SIGTERM or SIGINT and exit 0.

    Pods are deleted with SIGTERM; the imitated servers exit promptly, so does this.
    `main` may return an int to exit with instead of serving (e.g. a flag error)."""
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[int] = loop.create_future()

        def on(sig: int) -> None:
            if on_signal is not None:
                on_signal(sig)
            if not stop.done():
                stop.set_result(0)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on, sig)
        result = await main()
        if isinstance(result, int):
            return result
        return await stop

    try:
        code = asyncio.run(runner())
    except OSError as e:  # e.g. the port is taken: say so, like the real servers, and fail
        flush_log()
        print(f"listen failed: {e}", file=sys.stderr)
        code = 1
    flush_log()
    sys.stdout.flush()
    raise SystemExit(code)


def exit_now(code: int) -> None:
    """Leave immediately (flushing logs), as Go's `os.Exit` does inside a handler."""
    import os

    flush_log()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
