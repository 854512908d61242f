"""The `proxy` subresources of pods and services: HTTP through the API server to a pod, as
kube-apiserver serves `/api/v1/namespaces/<ns>/pods/<name>[:port]/proxy/<path>` and
`.../services/[<scheme>:]<name>[:<port>]/proxy/<path>`. With `kubectl proxy` on the host, that is how
the Kubernetes Basics tutorial reaches a pod, and how anyone reaches a ClusterIP Service from outside.

A Service is reached through one of its ready endpoints, picked at random, as kube-apiserver does:
the request does not go through the ClusterIP (the API server is no node and has no service proxy).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from skiff.api import errors
from skiff.api.resources import lookup
from skiff.apiserver.upstream import UpstreamSession, relay_body

if TYPE_CHECKING:
    from skiff.apiserver.server import APIServer

PODS = lookup("", "v1", "pods")
SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
# Hop-by-hop headers (RFC 9110) and those aiohttp sets itself: not copied between the two legs.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "host", "authorization"}


def split_scheme_name_port(id_: str) -> tuple[str, str, str]:
    """`name`, `name:port` or `scheme:name:port` -> (scheme, name, port); ValueError otherwise."""
    parts = id_.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
        if scheme not in ("http", "https"):
            raise ValueError(id_)
    else:
        raise ValueError(id_)
    if not name:
        raise ValueError(id_)
    return scheme or "http", name, port


def pod_port(pod: dict, port: str) -> str:
    """The port to reach a pod on: the one asked for, else its first declared container port."""
    if port:
        return port
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                return str(p["containerPort"])
    return ""


def service_endpoints(service: dict, slices: list[dict], port: str) -> list[tuple[str, int]]:
    """(address, port) of the ready endpoints behind the Service port named (or numbered) `port`."""
    wanted = port
    for sp in (service.get("spec") or {}).get("ports") or []:
        if port and port.isdigit() and sp.get("port") == int(port):
            wanted = sp.get("name") or ""  # a number names the Service port; slices carry its name
            break
    out = []
    for sl in slices:
        ports = [p for p in sl.get("ports") or [] if (p.get("name") or "") == wanted and p.get("port")]
        if not ports:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            out += [(ep["addresses"][0], ports[0]["port"])] if ep.get("addresses") else []
    return out


class Proxy:
    def __init__(self, server: APIServer):
        self.server = server
        # Bodies pass through as they come (compressed stays compressed), as a proxy should.
        self._upstream = UpstreamSession(auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._upstream.get()

    async def close(self) -> None:
        await self._upstream.close()

    async def handle(self, request: web.Request, info, namespace: str, id_: str, path: str) -> web.StreamResponse:
        try:
            scheme, name, port = split_scheme_name_port(id_)
        except ValueError:
            raise errors.bad_request(f"invalid {info.singular} request {id_!r}") from None
        registry = self.server.registry
        if info is PODS:
            pod = await registry.get(PODS, namespace, name)
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                raise errors.bad_request("address not allowed")
            port = pod_port(pod, port)
            target = f"{ip}:{port}" if port else ip
        else:
            svc = await registry.get(SERVICES, namespace, name)
            items, _, _ = await registry.list(SLICES, namespace)
            mine = [s for s in items if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name]
            candidates = service_endpoints(svc, mine, port)
            if not candidates:
                raise errors.APIError(503, "ServiceUnavailable", f'no endpoints available for service "{id_}"')
            ip, number = random.choice(candidates)
            target = f"{ip}:{number}"
        if not path and not request.path.endswith("/"):
            # As kube-apiserver: the proxied root is the directory, so relative links resolve in it.
            raise web.HTTPMovedPermanently(request.path + "/" + (f"?{request.query_string}" if request.query_string else ""))
        url = f"{scheme}://{target}/{path}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        try:
            upstream = await self.session.request(request.method, url, params=request.query, headers=headers,
                                                  data=request.content if request.can_read_body else None,
                                                  allow_redirects=False, ssl=False)
        except aiohttp.ClientError as e:
            raise errors.APIError(503, "ServiceUnavailable", f"error trying to reach {info.singular}: {e}") from None
        try:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    resp.headers.add(k, v)
            return await relay_body(request, resp, upstream)
        finally:
            upstream.release()
