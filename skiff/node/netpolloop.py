"""The node agent's NetworkPolicy part: policies, pods and namespaces -> this node's policy table.

Pods and namespaces are watched only while some NetworkPolicy exists: a cluster without policies
(most of them) pays nothing for this, neither watch traffic in a pod burst nor a netfilter hook
on the data path. Changes are coalesced briefly, so that a rollout costs one transaction.

A pod of this node is judged from before its containers start: the kubelet hands over the pod
and its new IP (admit) and waits until the table holds them, as a CNI plugin that enforces
policy finishes its ADD before the runtime starts containers. Otherwise a new pod would be
unprotected until its status, with the IP, came back through the API server.
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
from skiff.proxy.nft import NftApplier, sync_or_retry_later

log = logging.getLogger("skiff.netpol")
NETWORK_POLICIES = lookup("networking.k8s.io", "v1", "networkpolicies")
COALESCE_SECONDS = 0.01
# How long a new pod's containers wait for the table; past it they start anyway (logged).
ADMIT_TIMEOUT_SECONDS = 2.0


class _Watched:
    """The pods and namespaces policies refer to, kept as the little policies look at."""

    def __init__(self, client: Client, changed: asyncio.Event, admitted: dict[str, PodInfo]):
        self.pods: dict[str, PodInfo] = {}
        self._admitted = admitted
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
        if etype == "DELETED" and self._admitted.pop(key, None) is not None:
            self._changed.set()  # deleted before its status ever showed the IP the kubelet admitted
        # Status updates (conditions, restarts) are most pod events; they change nothing here.
        if _replace(self.pods, key, info):
            self._changed.set()

    def _on_namespace(self, etype: str, obj: dict, old: dict | None) -> None:
        meta = obj.get("metadata") or {}
        labels = None if etype == "DELETED" else dict(meta.get("labels") or {})
        if _replace(self.namespaces, meta.get("name") or "", labels):
            self._changed.set()


def _replace(table: dict, key: str, value: object | None) -> bool:
    """table[key] = value, or no entry when value is None; whether that changed anything."""
    if table.get(key) == value:
        return False
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
    return True


class NetworkPolicyLoop:
    def __init__(self, client: Client, node_name: str):
        self.client = client
        self.node_name = node_name
        self._changed = asyncio.Event()
        self._policies = Informer(client, NETWORK_POLICIES)
        self._policies.add_handler(lambda etype, obj, old: self._changed.set())
        self._watched: _Watched | None = None
        # Pods of this node handed over by the kubelet before their status shows an IP, by key.
        self._admitted: dict[str, PodInfo] = {}
        self._generation = 0  # bumped by each admit; a sync that started after it covers it
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._running = False

    async def admit(self, pod: dict, ip: str) -> None:
        """Until this node's table judges `pod`, whose sandbox got `ip` and whose containers are
        about to start. Immediate when no policy exists."""
        if not self._running or not self._policies.cache:
            return  # a loop that is not running enforces nothing, so there is nothing to wait for
        status = dict(pod.get("status") or {}, podIP=ip, phase="Pending")
        info = pod_info(dict(pod, status=status))
        if info is None:
            return
        self._admitted[key_of(pod)] = info
        self._generation += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._generation, done))
        self._changed.set()
        try:
            await asyncio.wait_for(asyncio.shield(done), ADMIT_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("pod %s starts before the NetworkPolicy table holds it", key_of(pod))

    def _release(self, generation: int) -> None:
        waiting = []
        for wanted, done in self._waiters:
            if wanted > generation:
                waiting.append((wanted, done))
            elif not done.done():
                done.set_result(None)
        self._waiters = waiting

    def _pods(self) -> list[PodInfo]:
        known = self._watched.pods if self._watched else {}
        # The API's view wins once it has the pod's IP; until then the kubelet's word stands.
        for key in [k for k in self._admitted if k in known]:
            del self._admitted[key]
        return list(known.values()) + [p for k, p in self._admitted.items() if k not in known]

    async def run(self) -> None:
        applier = NftApplier(TABLE)
        applied = False
        self._running = True
        self._policies.start()
        await self._policies.synced.wait()
        self._changed.set()
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(COALESCE_SECONDS)
                self._changed.clear()
                generation = self._generation
                t0 = time.perf_counter()
                if self._policies.cache and self._watched is None:
                    self._watched = _Watched(self.client, self._changed, self._admitted)
                    await self._watched.start()
                elif not self._policies.cache and self._watched is not None:
                    await self._watched.stop()
                    self._watched = None
                    self._admitted.clear()
                namespaces = self._watched.namespaces if self._watched else {}
                rs = desired_ruleset(self._policies.list(), self._pods(), namespaces, self.node_name)
                if applied or rs.chains:  # nothing enforced yet and nothing to enforce: no table at all
                    result = await sync_or_retry_later(applier, rs, self._changed, "the NetworkPolicy table")
                    if result is None:
                        continue
                    applied = True
                    if result.kind != "noop":
                        log.debug("network policy %s sync in %.1f ms", result.kind,
                                  (time.perf_counter() - t0) * 1000)
                self._release(generation)
        finally:
            self._running = False
            self._release(self._generation)
            await self._policies.stop()
            if self._watched is not None:
                await self._watched.stop()
            if applied:
                await applier.delete_table()
