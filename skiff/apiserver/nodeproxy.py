"""Pod logs, exec, attach and port-forward: the API server proxies them to the pod's node agent,
as kube-apiserver proxies to the kubelet. WebSocket messages are relayed one to one, so the
agent speaks the channel protocols (v5.channel.k8s.io, SPDY/3.1+portforward.k8s.io) itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
from aiohttp import web

from skiff.api import errors
from skiff.api.resources import lookup
from skiff.apiserver.upstream import UpstreamSession, relay_body

if TYPE_CHECKING:
    from skiff.apiserver.handlers import Target
    from skiff.apiserver.server import APIServer

AGENT_PORT = 10250
NODES = lookup("", "v1", "nodes")


class NodeProxy:
    def __init__(self, server: APIServer):
        self.server = server
        self._upstream = UpstreamSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._upstream.get()

    async def close(self) -> None:
        await self._upstream.close()

    async def _agent_base(self, pod: dict) -> str:
        node_name = pod.get("spec", {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f'pod {pod["metadata"]["name"]} does not have a host assigned')
        node = await self.server.registry.get(NODES, None, node_name)
        for addr in node.get("status", {}).get("addresses") or []:
            if addr.get("type") == "InternalIP":
                port = (node.get("status", {}).get("daemonEndpoints", {}).get("kubeletEndpoint", {})
                        .get("Port") or AGENT_PORT)
                return f"http://{addr['address']}:{port}"
        raise errors.APIError(503, "ServiceUnavailable", f"node {node_name} has no InternalIP")

    def _container(self, pod: dict, request: web.Request) -> str:
        names = [c["name"] for c in pod.get("spec", {}).get("containers") or []]
        c = request.query.get("container")
        if c:
            inits = [x["name"] for x in pod.get("spec", {}).get("initContainers") or []]
            if c not in names + inits:
                raise errors.bad_request(f"container {c} is not valid for pod {pod['metadata']['name']}")
            return c
        if len(names) == 1:
            return names[0]
        raise errors.bad_request(f"a container name must be specified for pod {pod['metadata']['name']}, "
                                 f"choose one of: [{' '.join(names)}]")

    async def handle(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = await self.server.registry.get(t.info, t.namespace, t.name or "")
        base = await self._agent_base(pod)
        ns, name = quote(t.namespace or ""), quote(t.name or "")
        headers = {"Authorization": f"Bearer {self.server.cfg.token}"}
        if t.subresource == "log":
            container = self._container(pod, request)
            url = f"{base}/containerLogs/{ns}/{name}/{quote(container)}"
            return await self._relay_http(request, url, headers)
        if t.subresource == "portforward":
            url = f"{base}/portForward/{ns}/{name}"
        else:
            phase = pod.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is "
                                         f"{phase}")
            container = self._container(pod, request)
            url = f"{base}/{t.subresource}/{ns}/{name}/{quote(container)}"
        return await self._relay_websocket(request, url, headers)

    async def _agent_refusal(self, url: str, request: web.Request, headers: dict) -> str | None:
        """The node agent's reason for refusing this stream (a container that is not running), if any."""
        try:
            async with self.session.get(url, params=request.query, headers=headers) as r:
                if r.status == 404:
                    body = await r.json(content_type=None)
                    return (body or {}).get("message") if isinstance(body, dict) else None
        except (aiohttp.ClientError, ValueError):
            return None
        return None

    async def _relay_http(self, request: web.Request, url: str, headers: dict) -> web.StreamResponse:
        try:
            upstream = await self.session.get(url, params=request.query, headers=headers)
        except aiohttp.ClientError as e:
            raise errors.APIError(502, "InternalError", f"error dialing backend: {e}") from None
        try:
            if upstream.status != 200:
                body = await upstream.read()
                return web.Response(body=body, status=upstream.status,
                                    content_type=upstream.content_type or "application/json")
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            return await relay_body(request, resp, upstream)
        finally:
            upstream.release()

    async def _relay_websocket(self, request: web.Request, url: str, headers: dict) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if request.headers.get("Upgrade", "").lower() != "websocket" or not offered:
            # kubectl comes here (SPDY) after a failed WebSocket attempt. Say why the kubelet refused,
            # in the plain text kubectl shows as "unable to upgrade connection: <reason>".
            reason = await self._agent_refusal(url, request, headers)
            if reason is not None:
                return web.Response(status=500, text=reason)
            raise errors.bad_request("Upgrade request required")
        try:
            upstream = await self.session.ws_connect(url.replace("http://", "ws://"), params=request.query,
                                                     headers=headers, protocols=offered, autoping=True,
                                                     max_msg_size=0)
        except (aiohttp.ClientError, aiohttp.WSServerHandshakeError) as e:
            raise errors.APIError(502, "InternalError", f"error dialing backend: {e}") from None
        ws = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else offered[:1],
                                   autoping=True, max_msg_size=0, heartbeat=None)
        await ws.prepare(request)

        async def pump(src, dst) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                else:
                    break
            with contextlib.suppress(Exception):
                await dst.close()

        a = asyncio.create_task(pump(ws, upstream))
        b = asyncio.create_task(pump(upstream, ws))
        try:
            await asyncio.wait({a, b}, return_when=asyncio.ALL_COMPLETED)
        finally:
            for task in (a, b):
                task.cancel()
            await upstream.close()
        return ws
