"""The node agent's proxy part: Services + EndpointSlices -> this node's nftables table, kept in sync.

Changes are coalesced for a few milliseconds so that a burst (a rollout, a scale) costs one
transaction; the ruleset builder reuses what did not change and the applier sends only the diff.
"""

from __future__ import annotations

import asyncio
import logging
import time

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


async def run(client: Client, cfg: ClusterConfig, node_name: str, node_ip: str) -> None:
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
