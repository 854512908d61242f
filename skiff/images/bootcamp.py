"""gcr.io/google-samples/kubernetes-bootcamp (v1) and jocatalin/kubernetes-bootcamp (v2): the Node.js
server of the Kubernetes Basics tutorial.

Listens on 8080 and answers every request with `Hello Kubernetes bootcamp! | Running on: <pod> | v=N`;
logs its start and, per request, the running count and uptime, as the tutorial's `kubectl logs` shows.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from skiff.images import server
from skiff.images.netinfo import hostname
from skiff.images.reference import tag_of


def version_from_image(image: str) -> str:
    """kubernetes-bootcamp:v2 says `v=2`; v1 (the only other tag there is) says `v=1`."""
    tag = tag_of(image)
    return tag[1:] if tag.startswith("v") and tag[1:].isdigit() else "1"


def _js_date(t: float) -> str:
    """A Date as Node's console.log prints it: 2026-10-07T17:45:19.453Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str]) -> None:
    host = os.environ.get("HOSTNAME") or hostname()
    body = f"Hello Kubernetes bootcamp! | Running on: {host} | v={version_from_image(os.environ.get('SKIFF_IMAGE', ''))}\n"
    encoded = body.encode()
    started = time.time()
    requests = 0

    def handle(request: server.Request) -> server.Response:
        nonlocal requests
        requests += 1
        now = time.time()
        server.log(f"Running On: {host} | Total Requests: {requests} | App Uptime: {now - started:.3f} seconds "
                   f"| Log Time: {_js_date(now)}")
        return server.Response(encoded, content_type="text/plain")

    async def start() -> None:
        await server.start_http(handle, 8080)
        server.log(f"Kubernetes Bootcamp App Started At: {_js_date(started)} | Running On:  {host} \n")

    server.run(start)
