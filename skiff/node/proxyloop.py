"""The node agent's proxy part: Services + EndpointSlices -> this node's nftables table, kept in sync.

Changes are coalesced for a few milliseconds so that a burst (a rollout, a scale) costs one
transaction; the ruleset builder reuses what did not change and the applier sends only the diff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from skiff.client.informer import Informer
from skiff.client.rest import Client
from skiff.config import ClusterConfig
from skiff.controllers.base import SERVICES, SLICES
from skiff.proxy.conntrack import delete_flows, stale_udp_flows
from skiff.proxy.model import NodeContext
from skiff.proxy.nft import NftApplier, sync_or_retry_later
from skiff.proxy.rules import RulesetBuilder, ServiceKey, slice_service_key

log = logging.getLogger("skiff.proxy")
COALESCE_SECONDS = 0.005


def _in_rotation(ip: str, slices: Iterable[dict]) -> bool:
    """Whether any of `slices` lists `ip` as a ready endpoint (one the proxy sends new connections to)."""
    return any(ip in (ep.get("addresses") or []) and (ep.get("conditions") or {}).get("ready") is not False
               for sl in slices for ep in sl.get("endpoints") or [])


class Rotation:
    """Lets the kubelet wait until this node's proxy has taken a terminating pod out of rotation: the
    slices it last programmed list the pod's IP as ready nowhere. The answer is computed after a sync
    only while someone waits, so syncs cost nothing more otherwise."""

    def __init__(self) -> None:
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._slices: Callable[[], Iterable[dict]] = lambda: ()

    async def out_of_rotation(self, ip: str) -> None:
        """Return once the programmed slices no longer list `ip` as ready."""
        if not _in_rotation(ip, self._slices()):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ip, fut))
        try:
            await fut
        finally:
            self._waiters = [(i, f) for i, f in self._waiters if f is not fut]

    def synced(self, slices: Callable[[], Iterable[dict]]) -> None:
        """After a sync that programmed `slices()`."""
        self._slices = slices
        if not self._waiters:
            return
        current = list(slices())
        for ip, fut in self._waiters:
            if not fut.done() and not _in_rotation(ip, current):
                fut.set_result(None)


async def run(client: Client, cfg: ClusterConfig, node_name: str, node_ip: str,
              rotation: Rotation | None = None) -> None:
    node = NodeContext(node_name=node_name, node_ips=(node_ip,), pod_cidr=cfg.pod_cidr,
                       service_cidr=cfg.service_cidr)
    builder = RulesetBuilder(node)
    applier = NftApplier()
    services = Informer(client, SERVICES)
    slices = Informer(client, SLICES)
    # Like kube-proxy's change trackers: remember which Services changed since the last sync, and
    # index slices by Service, so a sync rebuilds only those (see RulesetBuilder.update).
    dirty: set[ServiceKey] = set()
    slices_by_service: dict[ServiceKey, dict[str, dict]] = {}
    changed = asyncio.Event()

    def on_service(etype: str, obj: dict, old: dict | None) -> None:
        meta = obj.get("metadata") or {}
        dirty.add((meta.get("namespace") or "default", meta.get("name") or ""))
        changed.set()

    def on_slice(etype: str, obj: dict, old: dict | None) -> None:
        name = (obj.get("metadata") or {}).get("name") or ""
        # A relabelled slice leaves the Service it belonged to.
        prev_key = slice_service_key(old) if old is not None else None
        if prev_key is not None:
            slices_by_service.get(prev_key, {}).pop(name, None)
            dirty.add(prev_key)
        key = slice_service_key(obj)
        if key is not None:
            if etype == "DELETED":
                slices_by_service.get(key, {}).pop(name, None)
            else:
                slices_by_service.setdefault(key, {})[name] = obj
            dirty.add(key)
        changed.set()

    def service_of(key: ServiceKey) -> dict | None:
        return services.get(f"{key[0]}/{key[1]}")

    def slices_of(key: ServiceKey) -> list[dict]:
        return list(slices_by_service.get(key, {}).values())

    services.add_handler(on_service)
    slices.add_handler(on_slice)
    services.start()
    slices.start()
    await asyncio.gather(services.synced.wait(), slices.synced.wait())
    prev_udp: dict = {}
    changed.set()
    try:
        while True:
            await changed.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            changed.clear()
            t0 = time.perf_counter()
            keys = list(dirty)
            dirty.clear()
            rs = builder.update(keys, service_of, slices_of)
            result = await sync_or_retry_later(applier, rs, changed, "the Service proxy's nftables table")
            if result is None:
                continue
            if rotation is not None:
                rotation.synced(lambda: (sl for group in slices_by_service.values() for sl in group.values()))
            flows = stale_udp_flows(prev_udp, rs.udp_destinations)
            if flows:
                await delete_flows(flows)
            prev_udp = rs.udp_destinations
            if result.kind != "noop":
                log.debug("proxy %s sync in %.1f ms", result.kind, (time.perf_counter() - t0) * 1000)
    finally:
        await services.stop()
        await slices.stop()
        await applier.delete_table()
