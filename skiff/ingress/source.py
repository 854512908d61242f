"""The control side of the Ingress controller: watch the API, rebuild the route table, write status.

Informers on ingresses, ingressclasses, services, endpointslices and secrets feed one debounced
rebuild (a burst of endpoint changes during a rollout becomes one table). The table goes to the
proxy workers (see supervisor.py); then Ingress statuses are brought in line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from skiff.client.informer import Informer
from skiff.client.rest import Client, ClientError, resource
from skiff.ingress.routes import RouteTable, build_route_table
from skiff.ingress.status import published_addresses, status_patches

log = logging.getLogger("skiff.ingress.source")

INGRESSES = resource("networking.k8s.io/v1", "ingresses")
INGRESS_CLASSES = resource("networking.k8s.io/v1", "ingressclasses")
SERVICES = resource("v1", "services")
ENDPOINT_SLICES = resource("discovery.k8s.io/v1", "endpointslices")
SECRETS = resource("v1", "secrets")


class IngressSource:
    def __init__(self, client: Client, on_table: Callable[[RouteTable], Awaitable[None]],
                 class_name: str = "skiff", controller: str = "skiff.dev/ingress-controller",
                 publish_service: str = "skiff-system/skiff-ingress", debounce: float = 0.01) -> None:
        self.client = client
        self.on_table = on_table
        self.class_name = class_name
        self.controller = controller
        self.publish_service = publish_service
        self.debounce = debounce
        self.informers = {info.plural: Informer(client, info)
                          for info in (INGRESSES, INGRESS_CLASSES, SERVICES, ENDPOINT_SLICES, SECRETS)}
        self.synced = asyncio.Event()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._served: frozenset[str] = frozenset()

    async def start(self) -> None:
        for inf in self.informers.values():
            inf.add_handler(self._changed)
            inf.start()
        await asyncio.gather(*(inf.synced.wait() for inf in self.informers.values()))
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="ingress-source")
        self._dirty.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for inf in self.informers.values():
            await inf.stop()

    def _changed(self, etype: str, obj: dict, old: dict | None) -> None:
        if obj.get("kind") == "Secret" and obj.get("type") != "kubernetes.io/tls":
            return
        self._dirty.set()

    def build(self) -> RouteTable:
        i = self.informers
        return build_route_table(i["ingresses"].list(), i["services"].list(), i["endpointslices"].list(),
                                 i["secrets"].list(), i["ingressclasses"].list(), self.class_name,
                                 self.controller)

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)
            self._dirty.clear()
            try:
                table = self.build()
                await self.on_table(table)
                self.synced.set()
                await self.sync_status(table)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingress sync failed; retrying")
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def sync_status(self, table: RouteTable) -> None:
        svc = self.informers["services"].get(self.publish_service)
        addresses = published_addresses(svc)
        patches = status_patches(self.informers["ingresses"].list(), table.served, addresses, self._served)
        self._served = table.served
        for ns, name, body in patches:
            try:
                await self.client.patch(INGRESSES, ns, name, body, "merge", sub="status")
            except ClientError as e:
                if e.code != 404:
                    log.warning("updating status of ingress %s/%s: %s", ns, name, e)
