"""An asyncio client for the Kubernetes REST API, used by every Skiff component.

It speaks to the API server exactly as any client does: HTTPS, a bearer token, JSON, watch streams.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from skiff.api.resources import ResourceInfo, lookup


class ClientError(Exception):
    """A failure Status from the API server."""

    def __init__(self, code: int, status: dict):
        super().__init__(status.get("message") or f"HTTP {code}")
        self.code = code
        self.status = status
        self.reason = status.get("reason", "")


def resource(api_version: str, plural: str) -> ResourceInfo:
    group, _, version = api_version.rpartition("/")
    info = lookup(group, version, plural)
    if info is None:
        raise KeyError(f"unknown resource {plural} in {api_version}")
    return info


@dataclass
class Credentials:
    server: str
    token: str
    ca_file: str | None = None


class Client:
    def __init__(self, creds: Credentials, user_agent: str = "skiff"):
        self.creds = creds
        ctx = ssl.create_default_context(cafile=creds.ca_file) if creds.ca_file else None
        self._ssl = ctx
        self._headers = {"Authorization": f"Bearer {creds.token}", "User-Agent": user_agent,
                         "Accept": "application/json"}
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    @classmethod
    def for_state_dir(cls, state_dir: str | Path, in_cluster: bool = False, user_agent: str = "skiff"
                      ) -> Client:
        from skiff.config import ClusterConfig

        cfg = ClusterConfig.load_dir(state_dir)
        server = cfg.in_cluster_server_url if in_cluster else cfg.server_url
        return cls(Credentials(server, cfg.token, str(Path(state_dir) / "pki" / "ca.crt")), user_agent)

    # Requests share a few keep-alive connections, as client-go multiplexes its requests over one
    # HTTP/2 connection: a burst of writes then queues for a connection instead of opening (and
    # TLS-handshaking, on both sides) one per concurrent request. Watches are long-lived and get
    # their own connections, unlimited, so that they never take the requests' places.
    REQUEST_CONNECTIONS = 6

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers=self._headers,
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session for requests (REQUEST_CONNECTIONS connections at most)."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(self.REQUEST_CONNECTIONS)
        return self._session

    @property
    def watch_session(self) -> aiohttp.ClientSession:
        """The session for watches: one connection each."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(0)
        return self._watch_session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    # ---- paths ---------------------------------------------------------------------------
    def path(self, info: ResourceInfo, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        base = f"/api/{info.version}" if not info.group else f"/apis/{info.group}/{info.version}"
        if info.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{info.plural}"
        if name:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json") -> Any:
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body, separators=(",", ":"))
            headers["Content-Type"] = content_type
        async with self.session.request(method, self.creds.server + path, params=params, data=data,
                                        headers=headers) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                try:
                    status = json.loads(raw)
                except ValueError:
                    status = {"message": raw.decode(errors="replace")}
                raise ClientError(resp.status, status)
            if resp.content_type == "application/json":
                return json.loads(raw) if raw else None
            return raw.decode(errors="replace")

    # ---- verbs ---------------------------------------------------------------------------
    async def get(self, info: ResourceInfo, namespace: str | None, name: str, sub: str | None = None) -> dict:
        return await self.request("GET", self.path(info, namespace, name, sub))

    async def list(self, info: ResourceInfo, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> dict:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return await self.request("GET", self.path(info, namespace), params=params)

    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict,
                     field_manager: str | None = None) -> dict:
        params = {"fieldManager": field_manager} if field_manager else None
        return await self.request("POST", self.path(info, namespace), body=obj, params=params)

    async def replace(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict,
                      sub: str | None = None) -> dict:
        return await self.request("PUT", self.path(info, namespace, name, sub), body=obj)

    async def patch(self, info: ResourceInfo, namespace: str | None, name: str, body: Any,
                    patch_type: str = "merge", sub: str | None = None, field_manager: str | None = None,
                    force: bool = False) -> dict:
        ct = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
              "strategic": "application/strategic-merge-patch+json",
              "apply": "application/apply-patch+yaml"}[patch_type]
        params = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self.request("PATCH", self.path(info, namespace, name, sub), body=body,
                                  content_type=ct, params=params or None)

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str,
                     grace_period: int | None = None, propagation: str | None = None,
                     preconditions: dict | None = None) -> dict:
        body: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if propagation:
            body["propagationPolicy"] = propagation
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request("DELETE", self.path(info, namespace, name), body=body)

    async def watch(self, info: ResourceInfo, namespace: str | None = None, resource_version: str = "",
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 1800) -> AsyncIterator[tuple[str, dict]]:
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        async with self.watch_session.get(self.creds.server + self.path(info, namespace), params=params,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    status = json.loads(raw)
                except ValueError:
                    status = {"message": raw.decode(errors="replace")}
                raise ClientError(resp.status, status)
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    st = ev["object"]
                    raise ClientError(int(st.get("code") or 500), st)
                yield ev["type"], ev["object"]
