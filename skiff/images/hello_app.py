"""gcr.io/google-samples/hello-app (1.0, 2.0): the GKE quickstart's "Hello, world!" server.

Listens on $PORT (default 8080), answers every path with the greeting, its version and the
pod's hostname, and logs `Serving request: <path>` for each request.
"""

from __future__ import annotations

import os

from skiff.images import golike, server
from skiff.images.netinfo import hostname
from skiff.images.reference import tag_of


def version_from_image(image: str) -> str:
    """hello-app:2.0 says `Version: 2.0.0`; other tags (latest, 1.0) say 1.0.0."""
    tag = tag_of(image)
    major = tag.split(".")[0]
    return f"{major}.0.0" if major.isdigit() and major != "0" else "1.0.0"


def main(argv: list[str]) -> None:
    port = os.environ.get("PORT") or "8080"
    version = version_from_image(os.environ.get("SKIFF_IMAGE", ""))
    body = f"Hello, world!\nVersion: {version}\nHostname: {hostname()}\n".encode()

    def handle(request: server.Request) -> server.Response:
        server.log(f"{golike.log_prefix()}Serving request: {request.path}")
        return server.Response(body)

    async def start() -> None:
        await server.start_http(handle, int(port))
        server.log(f"{golike.log_prefix()}Server listening on port {port}")

    server.run(start)
