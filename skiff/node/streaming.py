"""The node agent's streaming server: what kubelet serves on :10250 for logs, exec, attach and
port-forward. The API server relays kubectl's requests here (skiff.apiserver.nodeproxy):

    GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&timestamps&previous&sinceSeconds&...
    GET /exec/{ns}/{pod}/{container}?command=..&stdin&stdout&stderr&tty    WebSocket *.channel.k8s.io
    GET /attach/{ns}/{pod}/{container}?stdout&stderr                        WebSocket *.channel.k8s.io
    GET /portForward/{ns}/{pod}                                            WebSocket SPDY/3.1+portforward.k8s.io

Every request must carry ``Authorization: Bearer <cluster token>``.

The node agent supplies a resolver (see `Resolver`) that maps names to its pods: log files,
sandboxes, environments and whether a container runs. Port-forward connects to the port on the
pod's loopback inside its network namespace (as containerd does, so servers bound to 127.0.0.1
are reachable too), or to the pod IP when no sandbox is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import time
from typing import Protocol

import aiohttp
from aiohttp import web

from skiff.net.ns import call_in_netns
from skiff.node import execproto, runtime, streaming_exec
from skiff.node.sandbox import Sandbox
from skiff.node.securitycontext import Credentials
from skiff.node.spdy import ProtocolError
from skiff.node.spdy_portforward import PortForwardSession
from skiff.node.streaming_logs import LogOptions, LogOptionsError, parse_log_options

log = logging.getLogger(__name__)

PORT_FORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
DIAL_TIMEOUT = 5.0


class Resolver(Protocol):
    def container_log_path(self, namespace: str, pod: str, container: str, previous: bool) -> str | None: ...
    def sandbox(self, namespace: str, pod: str) -> Sandbox | None: ...
    def container_env(self, namespace: str, pod: str, container: str) -> dict[str, str]: ...
    def container_credentials(self, namespace: str, pod: str, container: str) -> Credentials | None: ...
    def container_image(self, namespace: str, pod: str, container: str) -> str | None: ...
    def pod_ip(self, namespace: str, pod: str) -> str | None: ...
    def is_running(self, namespace: str, pod: str, container: str) -> bool: ...
    def waiting_reason(self, namespace: str, pod: str, container: str) -> str: ...
    def started_at(self, namespace: str, pod: str, container: str) -> float | None: ...


def _status(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


ATTACH_CATCH_UP = 3.0  # seconds after a container's start within which an attach replays its output

# How the kubelet words the commonest reasons a container is not running yet, for `kubectl logs`.
_WAITING_WORDS = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}


def _pod_not_found(pod: str) -> web.Response:
    return _status(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1", "t")


def _offered(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


def _go_dial_error(exc: BaseException) -> str:
    # In the words of Go's net package, which is what kubectl users see from a real kubelet.
    if isinstance(exc, OSError) and exc.errno:
        return f"connect: {os.strerror(exc.errno).lower()}"
    return "i/o timeout"


async def dial_in_sandbox(sandbox: Sandbox, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to 127.0.0.1:port (then [::1]) inside the pod's network namespace."""
    errors = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        # The socket belongs to the namespace it was created in; connect can then happen here.
        sock = await asyncio.to_thread(call_in_netns, sandbox.netns, lambda f=family: socket.socket(f))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), DIAL_TIMEOUT)
            return await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError) as exc:
            sock.close()
            errors.append(f"dial tcp {host if family == socket.AF_INET else '[' + host + ']'}:{port}: "
                          f"{_go_dial_error(exc)}")
    raise ConnectionRefusedError(
        f"failed to connect to localhost:{port} inside namespace {sandbox.netns}, IPv4: {errors[0]} "
        f"IPv6 {errors[1]}")


class StreamingServer:
    def __init__(self, host: str, port: int, token: str, resolver: Resolver):
        self.host = host
        self.port = port
        self.token = token
        self.resolver = resolver
        self._runner: web.AppRunner | None = None
        self._sessions: set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        app.router.add_get("/exec/{namespace}/{pod}/{container}", self.exec)
        app.router.add_post("/exec/{namespace}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{namespace}/{pod}/{container}", self.attach)
        app.router.add_post("/attach/{namespace}/{pod}/{container}", self.attach)
        app.router.add_get("/portForward/{namespace}/{pod}", self.port_forward)
        app.router.add_post("/portForward/{namespace}/{pod}", self.port_forward)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # tests ask for any free port
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            # Streaming sessions never end on their own (follow, exec shells); aiohttp would wait
            # for them at shutdown, so end them first.
            sessions = list(self._sessions)
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    # ---- logs ------------------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            opts = parse_log_options(request.query)
        except LogOptionsError as exc:
            return _status(400, "BadRequest", str(exc))
        path = self.resolver.container_log_path(ns, pod, container, opts.previous)
        if path is None:
            if self.resolver.sandbox(ns, pod) is None and self.resolver.pod_ip(ns, pod) is None:
                return _pod_not_found(pod)
            if opts.previous:
                return _status(400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" '
                                                  f"not found")
            reason = self.resolver.waiting_reason(ns, pod, container)
            return _status(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start: '
                                              f"{_WAITING_WORDS.get(reason, reason)}")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        if not opts.follow or opts.previous:
            body = runtime.read_log(path, opts.tail_lines, opts.timestamps, opts.since, opts.limit_bytes)
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body)
            await resp.write_eof()
            return resp
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await self._track(self._follow(resp, path, ns, pod, container, opts))
        return resp

    async def _follow(self, resp: web.StreamResponse, path: str, ns: str, pod: str, container: str,
                      opts: LogOptions) -> None:
        budget = opts.limit_bytes
        # Follow this instance of the container, as the kubelet follows one container ID: a restart
        # (a new log file) ends the stream like the exit does.
        chunks = runtime.follow_log(
            path, lambda: self.resolver.is_running(ns, pod, container)
            and self.resolver.container_log_path(ns, pod, container, False) == path,
            opts.tail_lines, opts.timestamps, opts.since)
        try:
            async for chunk in chunks:
                if budget is not None:
                    chunk = chunk[:budget]
                    budget -= len(chunk)
                await resp.write(chunk)
                if budget == 0:
                    break
            await resp.write_eof()
        except ConnectionResetError:
            pass  # kubectl went away (Ctrl-C on `logs -f`): nothing left to serve
        finally:
            await chunks.aclose()

    # ---- exec / attach ---------------------------------------------------------------------------

    async def _upgrade(self, request: web.Request, protocols: tuple[str, ...] | list[str]) \
            -> tuple[web.WebSocketResponse | None, str]:
        offered = _offered(request)
        chosen = next((p for p in protocols if p in offered), None)
        if request.headers.get("Upgrade", "").lower() != "websocket" or chosen is None:
            return None, ""
        ws = web.WebSocketResponse(protocols=[chosen], autoping=True, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        return ws, chosen

    def _check_container(self, ns: str, pod: str, container: str) -> web.Response | None:
        if self.resolver.sandbox(ns, pod) is None:
            return _pod_not_found(pod)
        if not self.resolver.is_running(ns, pod, container):
            return _status(404, "NotFound", f'container not found ("{container}")')
        return None

    async def exec(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        problem = self._check_container(ns, pod, container)
        if problem is not None:
            return problem
        ws, protocol = await self._upgrade(request, execproto.SUPPORTED_PROTOCOLS)
        if ws is None:
            return _status(400, "BadRequest", "Upgrade request required")
        argv = request.query.getall("command", [])
        tty = _flag(request, "tty")
        await self._track(streaming_exec.serve_exec(
            ws, protocol, self.resolver.sandbox(ns, pod), list(argv),
            self.resolver.container_env(ns, pod, container),
            stdin=_flag(request, "stdin"), stdout=_flag(request, "stdout"),
            stderr=_flag(request, "stderr") and not tty, tty=tty,
            creds=self.resolver.container_credentials(ns, pod, container),
            image=self.resolver.container_image(ns, pod, container),
            namespaces=self.resolver.container_namespaces(ns, pod, container)))
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        problem = self._check_container(ns, pod, container)
        if problem is not None:
            return problem
        path = self.resolver.container_log_path(ns, pod, container, False)
        if path is None:
            return _status(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start: '
                                              f"ContainerCreating")
        ws, protocol = await self._upgrade(request, execproto.SUPPORTED_PROTOCOLS)
        if ws is None:
            return _status(400, "BadRequest", "Upgrade request required")
        # A container here starts in milliseconds, where a runtime takes a good part of a second, so a
        # short command (`kubectl run -i --rm ... -- curl -s URL`) would be done before kubectl attaches.
        # An attach that soon after the start gets the run's output from its beginning.
        started = self.resolver.started_at(ns, pod, container)
        await self._track(streaming_exec.serve_attach(
            ws, protocol, path, lambda: self.resolver.is_running(ns, pod, container),
            stdout=_flag(request, "stdout"), stderr=_flag(request, "stderr"),
            from_start=started is not None and time.time() - started < ATTACH_CATCH_UP))
        return ws

    async def _track(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._sessions.add(task)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            self._sessions.discard(task)

    # ---- port-forward ----------------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, pod = request.match_info["namespace"], request.match_info["pod"]
        sandbox = self.resolver.sandbox(ns, pod)
        pod_ip = self.resolver.pod_ip(ns, pod)
        if sandbox is None and pod_ip is None:
            return _pod_not_found(pod)
        ws, _ = await self._upgrade(request, [PORT_FORWARD_PROTOCOL])
        if ws is None:
            return _status(400, "BadRequest", "Upgrade request required")

        async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if sandbox is not None:
                return await dial_in_sandbox(sandbox, port)
            assert pod_ip is not None
            return await asyncio.wait_for(asyncio.open_connection(pod_ip, port), DIAL_TIMEOUT)

        async def send(data: bytes) -> None:
            await ws.send_bytes(data)

        session = PortForwardSession(send, dial, describe=lambda port: f"pod {ns}/{pod}")
        await self._track(self._run_port_forward(ws, session))
        return ws

    async def _run_port_forward(self, ws: web.WebSocketResponse, session: PortForwardSession) -> None:
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await session.feed(msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        except ProtocolError as exc:
            log.warning("port-forward: %s", exc)
        finally:
            await session.close()
            with contextlib.suppress(Exception):
                await ws.close()
