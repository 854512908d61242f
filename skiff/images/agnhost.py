"""registry.k8s.io/e2e-test-images/agnhost: Kubernetes' own test image, one binary with
subcommands. Implemented: `netexec`, `serve-hostname`, `liveness`, `pause`.

netexec: HTTP on `--http-port` (8080) with `/`, `/clientip`, `/dial`, `/echo`, `/exit`,
`/healthz`, `/hostname`, `/hostName`, `/redirect`, `/shell`, `/shutdown`; UDP on `--udp-port`
(8081, -1 disables) answering `hostname`, `echo <msg>` and `clientip`. `/upload` and SCTP are
not implemented.
"""

from __future__ import annotations

import asyncio
import json
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


SUBCOMMANDS = {"netexec": netexec, "serve-hostname": serve_hostname, "liveness": liveness, "pause": pause}


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
