"""registry.k8s.io/e2e-test-images/agnhost: Kubernetes' own test image, one binary with
subcommands. Implemented: `netexec`, `serve-hostname`, `liveness`, `pause`, `connect`.

netexec: HTTP on `--http-port` (8080) with `/`, `/clientip`, `/dial`, `/echo`, `/exit`,
`/healthz`, `/hostname`, `/hostName`, `/redirect`, `/shell`, `/shutdown`; UDP on `--udp-port`
(8081, -1 disables) answering `hostname`, `echo <msg>` and `clientip`. `/upload` and SCTP are
not implemented.

connect: `connect <host>:<port> [--timeout=1s] [--protocol=tcp|udp|sctp] [--udp-data=hostname]`
exits 0 once connected (TCP handshake, a UDP reply, an SCTP association), else 1 with a line on
stderr whose first word says why: UNKNOWN, DNS, TIMEOUT, REFUSED or OTHER.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time

from skiff.images import golike, server
from skiff.images.netinfo import hostname


def _log(message: str) -> None:
    server.log(golike.log_prefix() + message)


def _fatal(message: str) -> None:
    server.log(golike.log_prefix() + message)
    server.exit_now(1)


# ---- netexec ---------------------------------------------------------------------------------


class _UDPCommands(asyncio.DatagramProtocol):
    """netexec's UDP server: one command per datagram, case-insensitive."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.transport is None:
            return
        text = data.decode("utf-8", "replace").strip().lower()
        client = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
        if text == "hostname":
            _log("Sending udp hostName response")
            self.transport.sendto(hostname().encode(), addr)
        elif text.startswith("echo "):
            reply = text.split(" ", 1)[1]
            _log(f"Echoing {reply} to UDP client {client}")
            self.transport.sendto(reply.encode(), addr)
        elif text == "clientip":
            _log(f"Sending clientip back to UDP client {client}")
            self.transport.sendto(client.encode(), addr)
        elif text:
            _log(f"Unknown UDP command received from {client}: {text}")


class _UDPReply(asyncio.DatagramProtocol):
    def __init__(self, waiter: asyncio.Future[bytes]) -> None:
        self.waiter = waiter

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(exc)


async def _dial_udp(host: str, port: int, request: str) -> str:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] = loop.create_future()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDPReply(waiter),
                                                           remote_addr=(host, port))
    except OSError as e:
        raise RuntimeError(f"udp dial failed. err:{e}") from None
    try:
        transport.sendto(request.encode())
        try:
            data = await asyncio.wait_for(waiter, 5)
        except (TimeoutError, OSError) as e:
            raise RuntimeError(f"reading from udp connection failed. err:'{e or 'i/o timeout'}'") from None
        if not data:
            raise RuntimeError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")
    finally:
        transport.close()


async def _dial_http(host: str, port: int, request: str) -> str:
    """GET http://host:port/<request> and return the body, whatever the status (like Go)."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as e:
        raise RuntimeError(f'Get "http://{authority}/{request}": dial tcp {authority}: {e}') from None
    try:
        writer.write(f"GET /{request} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Go-http-client/1.1\r\n"
                     "Connection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(-1), 5)
    except (OSError, TimeoutError) as e:
        raise RuntimeError(f'Get "http://{authority}/{request}": {e or "timeout"}') from None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        decoded = bytearray()
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            decoded += rest[:size]
            body = rest[size + 2:]
        body = bytes(decoded)
    return body.decode("utf-8", "replace")


def netexec(argv: list[str]) -> int | None:
    flags, rest = golike.parse_flags(argv, {
        "http-port": 8080, "udp-port": 8081, "sctp-port": -1, "tls-cert-file": "",
        "tls-private-key-file": "", "http-override": "", "udp-listen-addresses": ""})
    if rest:
        raise golike.FlagError(f'unknown command "{rest[0]}" for "agnhost netexec"')
    http_port = int(flags["http-port"])
    udp_port = int(flags["udp-port"])
    ready = [False]

    def text(body: str, status: int = 200) -> server.Response:
        return server.Response(body.encode(), status=status)

    def root(r: server.Request) -> server.Response:
        _log("GET /")
        return text("NOW: " + golike.now_string())

    def clientip(r: server.Request) -> server.Response:
        _log("GET /clientip")
        return text(r.remote_addr)

    def echo(r: server.Request) -> server.Response:
        msg, code = r.form_value("msg"), r.form_value("code")
        _log(f"GET /echo?msg={msg}&code={code}")
        if code:
            try:
                return text(msg, int(code))
            except ValueError:
                return text(f'argument \'code\' must be an integer or empty, got "{code}"\n')
        return text(msg)

    def host_name(r: server.Request) -> server.Response:
        _log(f"GET {r.path}")
        return text(hostname())

    def healthz(r: server.Request) -> server.Response:
        _log("GET /healthz")
        # Ready means the UDP server runs, so with --udp-port=-1 it never is (as in agnhost).
        return server.Response(b"", status=200 if ready[0] else 412, content_type=None)

    def shutdown(r: server.Request) -> server.Response:
        _log("GET /shutdown")
        server.exit_now(0)
        raise AssertionError("unreachable")

    def exit_(r: server.Request) -> server.Response | asyncio.Future[server.Response]:
        wait_s, timeout_s, code_s = r.form_value("wait"), r.form_value("timeout"), r.form_value("code")
        _log(f"GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}")
        from skiff.images.whoami import parse_go_duration

        timeout = parse_go_duration(timeout_s) if timeout_s else 0.0
        if timeout is None:
            return text(f"argument 'timeout' must be a valid golang duration or empty, got \"{timeout_s}\"\n")
        wait = parse_go_duration(wait_s) if wait_s else 0.0
        if wait is None:
            return text(f"argument 'wait' must be a valid golang duration or empty, got \"{wait_s}\"\n")
        try:
            code = int(code_s) if code_s else 0
        except ValueError:
            return text(f"argument 'code' must be an integer [0-127] or empty, got \"{code_s}\"\n")
        _log(f"Will begin shutdown in {golike.duration(wait)}, allowing {golike.duration(timeout)} "
             f"for connections to close, then will exit with {code}")

        async def later() -> server.Response:
            await asyncio.sleep(wait)
            if not timeout:
                server.exit_now(code)
            _log("Graceful shutdown completed with: <nil>")
            return server.Response(b"", after=lambda: server.exit_now(code))

        return asyncio.ensure_future(later())

    def redirect(r: server.Request) -> server.Response:
        location, code_s = r.form_value("location"), r.form_value("code")
        _log(f"{r.method} /redirect?msg={location}&code={code_s}")
        code = 302
        if code_s:
            try:
                code = int(code_s)
            except ValueError:
                return text(f'argument \'code\' must be an integer or empty, got "{code_s}"\n')
        body = f'<a href="{location}">{server.reason(code)}</a>.\n\n' if r.method in ("GET", "HEAD") else ""
        return server.Response(body.encode(), status=code, content_type="text/html; charset=utf-8",
                               headers=[("Location", location)])

    async def shell_run(cmd: str) -> server.Response:
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        result: dict[str, str] = {}
        if out:
            result["output"] = out.decode("utf-8", "replace")
        if proc.returncode:
            result["error"] = (f"exit status {proc.returncode}" if proc.returncode > 0
                               else f"signal: {-proc.returncode}")
        _log(f"Output: {result}")
        return text(json.dumps(result, separators=(",", ":")))

    def shell(r: server.Request) -> asyncio.Future[server.Response]:
        cmd = r.form_value("shellCommand") or r.form_value("cmd")
        _log(f"GET /shell?cmd={cmd}")
        return asyncio.ensure_future(shell_run(cmd))

    async def dial_run(host: str, port: int, request: str, protocol: str, tries: int) -> server.Response:
        responses: list[str] = []
        errors: list[str] = []
        last = ""
        for _ in range(tries):
            try:
                if protocol == "udp":
                    last = await _dial_udp(host, port, request)
                else:
                    last = await _dial_http(host, port, request)
                responses.append(last)
            except RuntimeError as e:
                last = ""
                errors.append(str(e))
        output: dict[str, list[str]] = {}
        if last:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return text(json.dumps(output, separators=(",", ":")))

    def dial(r: server.Request) -> server.Response | asyncio.Future[server.Response]:
        host, port_s, request = r.arg("host"), r.arg("port"), r.arg("request")
        protocol, tries_s = r.arg("protocol").lower(), r.arg("tries")
        _log(f"GET /dial?host={host}&protocol={protocol}&port={port_s}&request={request}&tries={tries_s}")
        try:
            tries = int(tries_s) if tries_s else 1
        except ValueError:
            return text(f"tries parameter is invalid. strconv.Atoi: parsing \"{tries_s}\": invalid syntax\n", 400)
        if not request:
            return text("request parameter not specified. <nil>\n", 400)
        if protocol not in ("", "http", "udp"):
            return text(f"unsupported protocol. {protocol}\n", 400)
        if not port_s.isdigit():
            return text(f"host and/or port param are invalid. invalid port {port_s!r}\n", 400)
        return asyncio.ensure_future(dial_run(host, int(port_s), request, protocol, tries))

    routes = {"/": root, "/clientip": clientip, "/dial": dial, "/echo": echo, "/exit": exit_,
              "/healthz": healthz, "/hostname": host_name, "/hostName": host_name,
              "/redirect": redirect, "/shell": shell, "/shutdown": shutdown}
    override = str(flags["http-override"])

    def handle(request: server.Request) -> server.Response | asyncio.Future[server.Response]:
        if override:
            request = server.Request("GET", override, request.version, request.headers, b"",
                                     request.peer, request.local)
        return routes.get(request.path, root)(request)

    async def start() -> None:
        loop = asyncio.get_running_loop()
        if udp_port != -1:
            addresses = [a for a in str(flags["udp-listen-addresses"]).split(",") if a] or ["0.0.0.0"]
            for address in dict.fromkeys(addresses):
                await loop.create_datagram_endpoint(_UDPCommands, local_addr=(address, udp_port))
                shown = "" if address == "0.0.0.0" else address
                _log(f"Started UDP server on port {shown} {udp_port}")
            ready[0] = True
        tls = None
        if flags["tls-cert-file"]:
            import ssl

            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(flags["tls-cert-file"]), str(flags["tls-private-key-file"]) or None)
        _log(f"Started HTTP server on port {http_port}")
        await server.start_http(handle, http_port, ssl=tls)

    server.run(start)
    return None


# ---- serve-hostname ----------------------------------------------------------------------------


class _TCPHostname(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        _log(f"TCP request from {peer[0]}:{peer[1]}")
        transport.write(hostname().encode())  # type: ignore[attr-defined]
        transport.close()


class _UDPHostname(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        _log(f"UDP request from {addr[0]}:{addr[1]}")
        self.transport.sendto(hostname().encode(), addr)  # type: ignore[attr-defined]


def serve_hostname(argv: list[str]) -> int | None:
    flags, rest = golike.parse_flags(argv, {"tcp": False, "udp": False, "http": True, "close": False,
                                            "port": 9376})
    if rest:
        raise golike.FlagError(f'unknown command "{rest[0]}" for "agnhost serve-hostname"')
    if flags["http"] and (flags["tcp"] or flags["udp"]):
        _fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
    port = int(flags["port"])
    name = hostname()
    close = bool(flags["close"])

    def handle(request: server.Request) -> server.Response:
        _log(f"HTTP request from {request.remote_addr}")
        return server.Response(name.encode(), close=close)

    async def start() -> None:
        loop = asyncio.get_running_loop()
        if flags["tcp"]:
            await loop.create_server(_TCPHostname, "0.0.0.0", port, reuse_address=True)
            server.notify_listening()
        if flags["udp"]:
            await loop.create_datagram_endpoint(_UDPHostname, local_addr=("0.0.0.0", port))
        if flags["http"]:
            await server.start_http(handle, port)
        _log(f"Serving on port {port}.")

    def on_signal(sig: int) -> None:
        _log(f"Shutting down after receiving signal: {'terminated' if sig == 15 else 'interrupt'}.")

    server.run(start, on_signal)
    return None


# ---- liveness ----------------------------------------------------------------------------------


def liveness(argv: list[str]) -> int | None:
    """Healthy for 10 seconds, then `/healthz` fails: the liveness-probe tutorial's server."""
    golike.parse_flags(argv, {})
    started = time.monotonic()

    def handle(request: server.Request) -> server.Response:
        elapsed = time.monotonic() - started
        if request.path == "/started":
            return server.Response(golike.duration(elapsed).encode())
        if request.path == "/healthz":
            if elapsed > 10:
                return server.Response(f"error: {elapsed!r}".encode(), status=500)
            return server.Response(b"ok")
        if request.path == "/redirect":
            from urllib.parse import unquote

            location = unquote(request.arg("loc"))
            return server.Response(f'<a href="{location}">Found</a>.\n\n'.encode(), status=302,
                                   content_type="text/html; charset=utf-8", headers=[("Location", location)])
        return server.Response(b"404 page not found\n", status=404)

    async def start() -> None:
        await server.start_http(handle, 8080)

    server.run(start)
    return None


# ---- pause -------------------------------------------------------------------------------------


def pause(argv: list[str]) -> int | None:
    from skiff.images import pause as pause_image

    print("Paused", flush=True)
    pause_image.wait_for_signal(lambda sig: print(
        f"Shutting down after receiving signal: {'terminated' if sig == 15 else 'interrupt'}.", flush=True))
    return 0


# ---- connect -----------------------------------------------------------------------------------

# Upstream exits 1 for every failure: e2e tests tell them apart by the first word on stderr.
_CONNECT_FAILED = 1


class _ConnectFailure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)


def _errno_text(error: OSError) -> str:
    # Go's syscall messages are libc's with a lower-case first letter ("connection refused").
    text = os.strerror(error.errno) if error.errno else str(error)
    return text[:1].lower() + text[1:]


def _join_host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, str]:
    """Go's `net.SplitHostPort`: ("host", "port") or ValueError with Go's wording."""

    def bad(why: str) -> ValueError:
        return ValueError(f"address {address}: {why}")

    colon = address.rfind(":")
    if colon < 0:
        raise bad("missing port in address")
    after_open = after_close = 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise bad("missing ']' in address")
        if end + 1 == len(address):
            raise bad("missing port in address")
        if end + 1 != colon:
            raise bad("too many colons in address" if address[end + 1] == ":" else "missing port in address")
        host = address[1:end]
        after_open, after_close = 1, end + 1
    else:
        host = address[:colon]
        if ":" in host:
            raise bad("too many colons in address")
    if "[" in address[after_open:]:
        raise bad("unexpected '[' in address")
    if "]" in address[after_close:]:
        raise bad("unexpected ']' in address")
    return host, address[colon + 1:]


def _lookup_port(service: str, network: str) -> int:
    digits = service[1:] if service.startswith(("+", "-")) else service
    if not service:
        return 0  # Go dials port 0 for "host:", and the kernel refuses it
    if digits and all(c in "0123456789" for c in digits):
        port = int(service)
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"address {service}: invalid port")
        return port
    try:
        return socket.getservbyname(service, "udp" if network == "udp" else "tcp")
    except OSError:
        raise ValueError(f"lookup {network}/{service}: unknown port") from None


def _resolve(address: str, network: str, kind: socket.SocketKind) -> list[tuple[int, tuple]]:
    """(family, sockaddr) of each address `address` names, IPv4 first (Go's preference)."""
    host, service = split_host_port(address)
    port = _lookup_port(service, network)
    try:
        # No host means this machine, as in Go; getaddrinfo gives loopback for None.
        infos = socket.getaddrinfo(host or None, port, type=kind)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise ValueError(f"lookup {host}: no such host") from None
        raise ValueError(f"lookup {host}: {e.strerror[:1].lower() + e.strerror[1:]}") from None
    found: dict[tuple, int] = {}
    for family, _, _, _, sockaddr in sorted(infos, key=lambda info: info[0] != socket.AF_INET):
        found.setdefault(sockaddr, family)
    return [(family, sockaddr) for sockaddr, family in found.items()]


def _connect_tcp(address: str, timeout: float) -> None:
    # Upstream checks the syntax on its own first, so that a typo is UNKNOWN rather than DNS.
    try:
        split_host_port(address)
    except ValueError as e:
        raise _ConnectFailure("UNKNOWN", str(e)) from None
    try:
        targets = _resolve(address, "tcp", socket.SOCK_STREAM)
    except ValueError as e:
        raise _ConnectFailure("DNS", str(e)) from None
    # Go's DialTimeout: 0 waits as long as the kernel does; a negative one has already expired.
    deadline = time.monotonic() + timeout if timeout else None
    first: _ConnectFailure | None = None
    for family, sockaddr in targets:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise first or _ConnectFailure("TIMEOUT")
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(remaining)
            try:
                s.connect(sockaddr)
                return
            except TimeoutError:
                failure = _ConnectFailure("TIMEOUT")
            except ConnectionRefusedError:
                failure = _ConnectFailure("REFUSED")
            except OSError as e:
                failure = _ConnectFailure(
                    "OTHER", f"dial tcp {_join_host_port(sockaddr[0], sockaddr[1])}: connect: {_errno_text(e)}")
        # Go reports the first address's error when every address fails.
        first = first or failure
    raise first or _ConnectFailure("OTHER", f"dial tcp {address}: no suitable address found")


def _connect_udp(address: str, timeout: float, data: str) -> None:
    try:
        family, sockaddr = _resolve(address, "udp", socket.SOCK_DGRAM)[0]
    except ValueError as e:
        raise _ConnectFailure("DNS", str(e)) from None
    remote = _join_host_port(sockaddr[0], sockaddr[1])
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect(sockaddr)
        except OSError as e:
            raise _ConnectFailure("OTHER", f"dial udp {remote}: connect: {_errno_text(e)}") from None
        local = _join_host_port(*s.getsockname()[:2])
        # Unlike TCP, only a positive timeout sets a deadline upstream: 0 or less waits for good.
        deadline = time.monotonic() + timeout if timeout > 0 else None

        def failed(op: str, error: OSError | None) -> _ConnectFailure:
            where = f"{op} udp {local}->{remote}"
            if error is None:
                return _ConnectFailure("TIMEOUT", f"{where}: i/o timeout")
            kind = "REFUSED" if isinstance(error, ConnectionRefusedError) else "UNKNOWN"
            return _ConnectFailure(kind, f"{where}: {op}: {_errno_text(error)}")

        def arm(op: str) -> None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise failed(op, None)
                s.settimeout(remaining)

        try:
            arm("write")
            s.send((data + "\n").encode())
        except TimeoutError:
            raise failed("write", None) from None
        except OSError as e:
            raise failed("write", e) from None
        try:
            arm("read")
            reply = s.recv(1024)
        except TimeoutError:
            raise failed("read", None) from None
        except OSError as e:
            raise failed("read", e) from None
    if not reply:
        raise _ConnectFailure("OTHER", "No data received from the server. "
                                       "Cannot guarantee the server received the request.")


def _connect_sctp(address: str, timeout: float) -> None:
    try:
        family, sockaddr = _resolve(address, "sctp", socket.SOCK_STREAM)[0]
    except ValueError as e:
        raise _ConnectFailure("DNS", str(e)) from None
    try:
        # Fails with "protocol not supported" where the kernel has no SCTP, as upstream's would.
        s = socket.socket(family, socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))
    except OSError as e:
        raise _ConnectFailure("OTHER", _errno_text(e)) from None
    with s:
        if timeout < 0:
            raise _ConnectFailure("TIMEOUT")
        s.settimeout(timeout or None)
        try:
            s.connect(sockaddr)
        except TimeoutError:
            raise _ConnectFailure("TIMEOUT") from None
        except OSError as e:
            # Upstream has no REFUSED for SCTP: every error of the association is OTHER.
            raise _ConnectFailure("OTHER", _errno_text(e)) from None


def _duration_flag(name: str, text: str) -> float:
    """A pflag Duration value in seconds: Go's `time.ParseDuration`, sign and bare "0" included."""
    from skiff.images.whoami import parse_go_duration

    body = text[1:] if text.startswith(("+", "-")) else text
    seconds = 0.0 if body == "0" else parse_go_duration(body) if body else None
    if seconds is None:
        raise golike.FlagError(f'invalid argument "{text}" for "--{name}" flag: time: invalid duration "{text}"')
    return -seconds if text.startswith("-") else seconds


def connect(argv: list[str]) -> int:
    """Try one TCP, UDP or SCTP connection to `host:port`: 0 when it works, else 1 with a reason."""
    flags, rest = golike.parse_flags(argv, {"timeout": "0s", "protocol": "tcp", "udp-data": "hostname"})
    timeout = _duration_flag("timeout", str(flags["timeout"]))
    if len(rest) != 1:
        raise golike.FlagError(f"accepts 1 arg(s), received {len(rest)}")
    address, protocol = rest[0], str(flags["protocol"])
    try:
        if protocol in ("", "tcp"):
            _connect_tcp(address, timeout)
        elif protocol == "udp":
            _connect_udp(address, timeout, str(flags["udp-data"]))
        elif protocol == "sctp":
            _connect_sctp(address, timeout)
        else:
            print(f"Unsupported protocol\n{protocol}", file=sys.stderr)
            return _CONNECT_FAILED
    except _ConnectFailure as failure:
        print(failure, file=sys.stderr)
        return _CONNECT_FAILED
    return 0


SUBCOMMANDS = {"netexec": netexec, "serve-hostname": serve_hostname, "liveness": liveness, "pause": pause,
               "connect": connect}


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("agnhost: Kubernetes' test image, as built into Skiff.\n\nAvailable commands:\n  "
              + "\n  ".join(sorted(SUBCOMMANDS)))
        raise SystemExit(0)
    command = SUBCOMMANDS.get(argv[0])
    if command is None:
        print(f'Error: unknown command "{argv[0]}" for "agnhost"\nRun \'agnhost --help\' for usage.',
              file=sys.stderr)
        raise SystemExit(1)
    try:
        code = command(argv[1:])
    except golike.FlagError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code or 0)
