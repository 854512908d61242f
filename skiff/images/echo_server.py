"""kicbase/echo-server (the image of minikube's "hello-minikube" handbook): answers every request
with who served it and the request as received, on $PORT (default 8080).
"""

from __future__ import annotations

import os

from skiff.images import server
from skiff.images.netinfo import hostname


def describe(request: server.Request, served_by: str) -> bytes:
    """`Request served by <host>`, the request line, Host, then the other headers sorted by name,
    then the body if there is one, as the echo server writes them."""
    host = next((v for k, v in request.headers if k.lower() == "host"), "")
    lines = [f"Request served by {served_by}", "", f"{request.version} {request.method} {request.target}", "",
             f"Host: {host}"]
    others: dict[str, list[str]] = {}
    for k, v in request.headers:
        if k.lower() != "host":
            others.setdefault("-".join(p.capitalize() for p in k.split("-")), []).append(v)
    for name in sorted(others):
        lines += [f"{name}: {v}" for v in others[name]]
    text = "\n".join(lines) + "\n"
    if request.body:
        return text.encode() + b"\n" + request.body
    return text.encode()


def main(argv: list[str]) -> None:
    port = int(os.environ.get("PORT") or 8080)
    me = hostname()

    def handle(request: server.Request) -> server.Response:
        return server.Response(describe(request, me), content_type="text/plain")

    async def start() -> None:
        await server.start_http(handle, port)
        server.log(f"Echo server listening on port {port}.")

    server.run(start)
