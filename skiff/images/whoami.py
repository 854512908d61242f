"""traefik/whoami: a tiny server that prints what it knows about the request and itself.

Flags: `--port` (default $WHOAMI_PORT_NUMBER or 80), `--name` (default $WHOAMI_NAME),
`--verbose`, `--cert`/`--key` (TLS). Endpoints: `/` (hostname, IPs, remote address, the request
as received; `?wait=1s`, `?env=true`), `/api` (the same as JSON), `/health` (GET the current
status; POST a status code to change it), `/data?size=N&unit=kb|mb|gb`, `/bench` (`1`).
`/echo` (WebSocket) is not implemented: it answers 400, or 501 to an upgrade.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from skiff.images import golike, server
from skiff.images.netinfo import hostname, interface_addresses

_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Headers Go's Request.Write prints in its own way, or not at all, rather than in sorted order.
_SPECIAL = {"host", "user-agent", "content-length", "transfer-encoding", "trailer"}


def canonical(name: str) -> str:
    """Go's `textproto.CanonicalMIMEHeaderKey`: `x-forwarded-for` -> `X-Forwarded-For`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def request_dump(request: server.Request) -> str:
    """The request as Go's `Request.Write` prints it: request line, Host, User-Agent,
    Content-Length, then the other headers sorted by canonical name, a blank line, the body."""
    lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {request.header('host')}"]
    agent = request.header("user-agent", "Go-http-client/1.1")
    if agent:
        lines.append(f"User-Agent: {agent}")
    if request.body:
        lines.append(f"Content-Length: {len(request.body)}")
    others = sorted((canonical(k), v) for k, v in request.headers if k.lower() not in _SPECIAL)
    lines.extend(f"{k}: {v}" for k, v in sorted(others, key=lambda kv: kv[0]))
    return "\r\n".join(lines) + "\r\n\r\n" + request.body.decode("utf-8", "replace")


def parse_go_duration(text: str) -> float | None:
    """Go's `time.ParseDuration` (`1s`, `1.5ms`, `1m30s`); None if it is not one."""
    import re

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def main(argv: list[str]) -> None:
    try:
        flags, _ = golike.parse_flags(argv, {
            "port": os.environ.get("WHOAMI_PORT_NUMBER") or "80",
            "name": os.environ.get("WHOAMI_NAME", ""),
            "verbose": False, "cert": "", "key": "", "cacert": "",
            "allowed-origins": os.environ.get("WHOAMI_ALLOWED_ORIGINS") or "*",
        })
    except golike.FlagError as e:
        raise SystemExit(golike.flag_failure("whoami", e)) from None
    port = str(flags["port"])
    name = str(flags["name"])
    verbose = bool(flags["verbose"])
    origins = str(flags["allowed-origins"])
    health_status = [200]

    def whoami(request: server.Request) -> server.Response:
        lines = []
        if name:
            lines.append(f"Name: {name}")
        lines.append(f"Hostname: {hostname()}")
        lines.extend(f"IP: {ip}" for ip in interface_addresses())
        lines.append(f"RemoteAddr: {request.remote_addr}")
        text = "\n".join(lines) + "\n" + request_dump(request)
        if request.arg("env").lower() in ("1", "t", "true"):
            text += "".join(f"{k}={v}\n" for k, v in os.environ.items())
        return server.Response(text.encode())

    def api(request: server.Request) -> server.Response:
        headers: dict[str, list[str]] = {}
        for k, v in request.headers:
            if k.lower() != "host":
                headers.setdefault(canonical(k), []).append(v)
        data: dict[str, object] = {
            "hostname": hostname(), "ip": interface_addresses(),
            "headers": dict(sorted(headers.items())), "url": request.target,
            "host": request.header("host"), "method": request.method, "name": name,
            "remoteAddr": request.remote_addr,
        }
        if request.arg("env").lower() in ("1", "t", "true"):
            data["environ"] = dict(sorted(os.environ.items()))
        data = {k: v for k, v in data.items() if v}  # Go's omitempty
        # Go's encoder escapes <, > and & and ends with a newline.
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"
        return server.Response(body.encode(), content_type="application/json", headers=[
            ("Access-Control-Allow-Methods", "*"), ("Access-Control-Allow-Origin", origins)])

    def health(request: server.Request) -> server.Response:
        if request.method == "POST":
            try:
                code = int(json.loads(request.body))
            except (ValueError, TypeError):
                return server.Response(b"invalid status code\n", status=400)
            server.log(f"Update health check status code [{code}]")
            health_status[0] = code
            return server.Response(b"", content_type=None)
        return server.Response(b"", status=health_status[0], content_type=None)

    def data(request: server.Request) -> server.Response:
        try:
            size = max(int(request.arg("size")), 0)
        except ValueError:
            size = 1
        size *= _UNITS.get(request.arg("unit").lower(), 1)
        headers = None
        if request.arg("attachment").lower() in ("1", "t", "true"):
            headers = [("Content-Disposition", "Attachment")]

        def chunks(remaining: int = size):
            block = (_ALPHABET * ((1 << 16) // len(_ALPHABET) + 1))[:1 << 16]
            while remaining > 0:
                n = min(remaining, len(block))
                yield block[:n]
                remaining -= n

        if size <= 1 << 16:
            return server.Response(b"".join(chunks()), headers=headers)
        return server.Response(chunks(), length=size, headers=headers)

    bench_body = server.Response(b"1", content_type="text/plain")

    def echo(request: server.Request) -> server.Response:
        if request.header("upgrade").lower() == "websocket":
            return server.Response(b"WebSocket echo is not implemented by Skiff's whoami\n", status=501)
        return server.Response(b"Bad Request\n", status=400)

    routes = {"/api": api, "/health": health, "/data": data, "/bench": lambda r: bench_body, "/echo": echo}

    async def waited(request: server.Request, seconds: float) -> server.Response:
        await asyncio.sleep(seconds)
        return whoami(request)

    def handle(request: server.Request) -> server.Response | asyncio.Future[server.Response]:
        route = routes.get(request.path)
        if route is not None:
            response = route(request)
        else:
            wait = request.arg("wait")
            seconds = parse_go_duration(wait) if wait else None
            if seconds:
                return asyncio.ensure_future(waited(request, seconds))
            response = whoami(request)
        if verbose:
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
            server.log(f'{golike.log_prefix()}{request.remote_addr} - - [{stamp}] '
                       f'"{request.method} {request.path} {request.version}" - -')
        return response

    async def start() -> None:
        tls = None
        if flags["cert"] and flags["key"]:
            import ssl

            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(flags["cert"]), str(flags["key"]))
            if flags["cacert"]:
                tls.load_verify_locations(str(flags["cacert"]))
                tls.verify_mode = ssl.CERT_REQUIRED
            server.log(f"{golike.log_prefix()}Starting up with TLS on port {port}")
        else:
            server.log(f"{golike.log_prefix()}Starting up on port {port}")
        await server.start_http(handle, int(port), ssl=tls)

    server.run(start)
