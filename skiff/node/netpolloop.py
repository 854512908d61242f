"""The node agent's NetworkPolicy part: policies, pods and namespaces -> this node's policy table.

Pods and namespaces are watched only while some NetworkPolicy exists: a cluster without policies
(most of them) pays nothing for this, neither watch traffic in a pod burst nor a netfilter hook
on the data path. Changes are coalesced briefly, so that a rollout costs one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time

from skiff.api.meta import key_of
from skiff.api.resources import lookup
from skiff.client.informer import Informer
from skiff.client.rest import Client
from skiff.controllers.base import NAMESPACES, PODS
from skiff.netpol.rules import TABLE, PodInfo, desired_ruleset, pod_info
from skiff.proxy.nft import NftApplier

log = logging.getLogger("skiff.netpol")
NETWORK_POLICIES = lookup("networking.k8s.io", "v1", "networkpolicies")
COALESCE_SECONDS = 0.01


class _Watched:
    """The pods and namespaces policies refer to, kept as the little policies look at."""

    def __init__(self, client: Client, changed: asyncio.Event):
        self.pods: dict[str, PodInfo] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self._changed = changed
        self._pod_informer = Informer(client, PODS)
        self._ns_informer = Informer(client, NAMESPACES)
        self._pod_informer.add_handler(self._on_pod)
        self._ns_informer.add_handler(self._on_namespace)

    async def start(self) -> None:
        self._pod_informer.start()
        self._ns_informer.start()
        await asyncio.gather(self._pod_informer.synced.wait(), self._ns_informer.synced.wait())

    async def stop(self) -> None:
        await asyncio.gather(self._pod_informer.stop(), self._ns_informer.stop())

    def _on_pod(self, etype: str, obj: dict, old: dict | None) -> None:
        key = key_of(obj)
        info = None if etype == "DELETED" else pod_info(obj)
        # Status updates (conditions, restarts) are most pod events; they change nothing here.
        if self.pods.get(key) == info:
            return
        if info is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = info
        self._changed.set()

    def _on_namespace(self, etype: str, obj: dict, old: dict | None) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        labels = None if etype == "DELETED" else dict(meta.get("labels") or {})
        if self.namespaces.get(name) == labels:
            return
        if labels is None:
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = labels
        self._changed.set()


async def run(client: Client, node_name: str) -> None:
    changed = asyncio.Event()
    policies = Informer(client, NETWORK_POLICIES)
    policies.add_handler(lambda etype, obj, old: changed.set())
    policies.start()
    watched: _Watched | None = None
    applier = NftApplier(TABLE)
    applied = False
    await policies.synced.wait()
    changed.set()
    try:
        while True:
            await changed.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            changed.clear()
            t0 = time.perf_counter()
            if policies.cache and watched is None:
                watched = _Watched(client, changed)
                await watched.start()
            elif not policies.cache and watched is not None:
                await watched.stop()
                watched = None
            pods = list(watched.pods.values()) if watched else []
            rs = desired_ruleset(policies.list(), pods, watched.namespaces if watched else {}, node_name)
            if not applied and not rs.chains:
                continue  # nothing to enforce and nothing enforced yet: no table at all
            try:
                result = await applier.sync(rs)
            except Exception:
                log.exception("programming the NetworkPolicy table failed; retrying with a full sync")
                applier.force_full_sync()
                await asyncio.sleep(0.5)
                changed.set()
                continue
            applied = True
            if result.kind != "noop":
                log.debug("network policy %s sync in %.1f ms", result.kind, (time.perf_counter() - t0) * 1000)
    finally:
        await policies.stop()
        if watched is not None:
            await watched.stop()
        if applied:
            await applier.delete_table()
