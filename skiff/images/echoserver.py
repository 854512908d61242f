"""registry.k8s.io/echoserver (1.4 ... 1.10): the nginx + Lua echo server of the "Using Source IP"
tutorial and of older minikube guides. Answers every request on 8080 with the client's address (the
point of the source-IP tutorial), the request and its headers, in the layout of the image's tag:
1.10's sections with tabs, or 1.4's capitalised blocks.
"""

from __future__ import annotations

import os

from skiff.images import server
from skiff.images.netinfo import hostname
from skiff.images.reference import tag_of

PORT = 8080


def describe(request: server.Request, me: str, old_layout: bool, pod: dict[str, str]) -> bytes:
    host = next((v for k, v in request.headers if k.lower() == "host"), "")
    host_only = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    path, _, query = request.target.partition("?")
    headers = sorted((k.lower(), v) for k, v in request.headers)
    version = request.version.removeprefix("HTTP/")
    uri = f"http://{host_only}:{PORT}{request.target}"
    if old_layout:
        lines = ["CLIENT VALUES:", f"client_address={request.peer[0]}", f"command={request.method}",
                 f"real path={path}", f"query={query or 'nil'}", f"request_version={version}",
                 f"request_uri={uri}", "", "SERVER VALUES:", "server_version=nginx: 1.10.0 - lua: 10001", "",
                 "HEADERS RECEIVED:", *(f"{k}={v}" for k, v in headers), "BODY:"]
        body = request.body.decode(errors="replace") if request.body else "-no body in request-"
        return ("\n".join(lines) + "\n" + body).encode()
    info = ([f"\tnode name:\t{pod['node']}", f"\tpod name:\t{pod['name']}", f"\tpod namespace:\t{pod['namespace']}",
             f"\tpod IP:\t{pod['ip']}"] if pod else ["\t-no pod information available-"])
    lines = ["", "", f"Hostname: {me}", "", "Pod Information:", *info, "", "Server values:",
             "\tserver_version=nginx: 1.13.3 - lua: 10008", "", "Request Information:",
             f"\tclient_address={request.peer[0]}", f"\tmethod={request.method}", f"\treal path={path}",
             f"\tquery={query}", f"\trequest_version={version}", "\trequest_scheme=http", f"\trequest_uri={uri}", "",
             "Request Headers:", *(f"\t{k}={v}" for k, v in headers), "", "Request Body:"]
    body = request.body.decode(errors="replace") if request.body else "\t-no body in request-"
    return ("\n".join(lines) + "\n" + body + "\n\n").encode()


def main(argv: list[str]) -> None:
    old_layout = tag_of(os.environ.get("SKIFF_IMAGE", "")) == "1.4"
    me = hostname()
    # The downward-API variables the image's template prints when a manifest sets them.
    env = {k: os.environ.get(v, "") for k, v in (("node", "NODE_NAME"), ("name", "POD_NAME"),
                                                  ("namespace", "POD_NAMESPACE"), ("ip", "POD_IP"))}
    pod = env if all(env.values()) else {}

    def handle(request: server.Request) -> server.Response:
        return server.Response(describe(request, me, old_layout, pod), content_type="text/plain")

    async def start() -> None:
        await server.start_http(handle, PORT)

    server.run(start)
