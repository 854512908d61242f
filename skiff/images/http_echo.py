"""hashicorp/http-echo: answers every request with the text given by `-text` (or $ECHO_TEXT).

Flags: `-listen` (default `:5678`), `-text`, `-status-code` (default 200), `-version`.
`/health` answers `{"status":"ok"}`. Each echo request is logged in http-echo's access format.
"""

from __future__ import annotations

import os
import sys
import time

from skiff.images import golike, server

VERSION = "1.0.0"


def main(argv: list[str]) -> None:
    try:
        flags, rest = golike.parse_flags(
            argv, {"listen": ":5678", "text": "", "version": False, "status-code": 200},
            interspersed=False)
    except golike.FlagError as e:
        raise SystemExit(golike.flag_failure("http-echo", e)) from None
    if flags["version"]:
        print(f"http-echo v{VERSION}", file=sys.stderr)
        raise SystemExit(0)
    text = str(flags["text"]) or os.environ.get("ECHO_TEXT", "")
    if not text:
        print("Missing -text option or ECHO_TEXT env var!", file=sys.stderr)
        raise SystemExit(127)
    if rest:
        print("Too many arguments!", file=sys.stderr)
        raise SystemExit(127)
    status = int(flags["status-code"])
    listen = str(flags["listen"])
    host, port = server.parse_listen(listen, 5678)
    echo = (text + "\n").encode()
    health = b'{"status":"ok"}\n'
    app_headers = [("X-App-Name", "http-echo"), ("X-App-Version", VERSION)]

    def handle(request: server.Request) -> server.Response:
        if request.path == "/health":
            return server.Response(health, headers=app_headers)
        started = time.monotonic()
        response = server.Response(echo, status=status, headers=app_headers)
        server.log(
            f'{time.strftime("%Y/%m/%d %H:%M:%S")} {request.header("host")} {request.remote_addr} '
            f'"{request.method} {request.path} {request.version}" {status} {len(echo)} '
            f'"{request.header("user-agent")}" {golike.duration(time.monotonic() - started)}')
        return response

    async def start() -> None:
        await server.start_http(handle, port, host)
        server.log(f"{golike.log_prefix()}[INFO] server is listening on {listen}")

    def on_signal(sig: int) -> None:
        server.log(f"{golike.log_prefix()}[INFO] received interrupt, shutting down...")

    server.run(start, on_signal)
