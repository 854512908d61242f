"""LoadBalancer controller: assigns addresses from the pool to `type: LoadBalancer` Services and
announces them, as cloud-provider-kind or MetalLB do.

Announcement is a host route `<ip>/32 via <node ip>` to one Ready node; when that node goes
NotReady the route moves, which is MetalLB's layer-2 failover in routing form. With
externalTrafficPolicy Local the node must have a ready endpoint of the Service. With Cluster any
node serves, but one with a ready endpoint is preferred (traffic then skips a second node hop):
when the route is first made, and once when the Service's first endpoints appear (no connection
through the old node can exist yet). Otherwise the route stays put, so that endpoints moving
(a rolling update) never cut the connections going through its node.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.config import pool_range
from skiff.controllers.base import NODES, SERVICES, SLICES, EventRecorder, replace_status
from skiff.net.names import host_link_name

log = logging.getLogger("skiff.controllers.loadbalancer")
LB_CLASS = "skiff.dev/lb"


def parse_pool(pool: str) -> list[str]:
    """`a.b.c.d-e.f.g.h` or a CIDR -> addresses, in order."""
    first, last = pool_range(pool)
    return [str(ipaddress.IPv4Address(i)) for i in range(int(first), int(last) + 1)]


def wants_lb(svc: dict) -> bool:
    spec = svc.get("spec", {})
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, "", LB_CLASS)


def requested_ip(svc: dict) -> str | None:
    spec = svc.get("spec", {})
    ann = svc["metadata"].get("annotations") or {}
    return spec.get("loadBalancerIP") or ann.get("metallb.universe.tf/loadBalancerIPs") or None


def current_ips(svc: dict) -> list[str]:
    return [i["ip"] for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []) if i.get("ip")]


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, (err or out).decode().strip()


async def run(ctx) -> None:
    client = ctx.client
    cfg = ctx.cfg
    pool = parse_pool(cfg.lb_pool)
    host_link = host_link_name(cfg.name)
    services = ctx.informer(SERVICES)
    nodes = ctx.informer(NODES)
    slices = ctx.informer(SLICES)
    queue = WorkQueue()
    recorder = EventRecorder(client, "service-lb-controller")
    owner: dict[str, str] = {}  # ip -> service key
    routes: dict[str, str] = {}  # ip -> node ip it is routed to
    had_endpoints: dict[str, bool] = {}  # service key -> whether it had ready endpoints at its last sync

    services.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def requeue_all(*_a) -> None:
        for s in services.list():
            if wants_lb(s) or current_ips(s):
                queue.add(meta.key_of(s))
    nodes.add_handler(requeue_all)
    slices.add_handler(lambda t, o, old: queue.add(
        f"{o['metadata']['namespace']}/{(o['metadata'].get('labels') or {}).get('kubernetes.io/service-name')}"))
    await ctx.wait_synced(SERVICES, NODES, SLICES)
    for s in services.list():
        if wants_lb(s):
            for ip in current_ips(s):
                owner[ip] = meta.key_of(s)

    def ready_nodes() -> list[dict]:
        out = []
        for n in nodes.list():
            c = meta.get_condition(n, "Ready")
            if c and c.get("status") == "True" and not n.get("spec", {}).get("unschedulable"):
                out.append(n)
        return sorted(out, key=lambda n: n["metadata"]["name"])

    def node_ip(node: dict) -> str | None:
        for a in node.get("status", {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return a["address"]
        return None

    def endpoint_nodes(svc: dict) -> set[str]:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        found = set()
        for sl in slices.list(ns):
            if (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") and ep.get("nodeName"):
                    found.add(ep["nodeName"])
        return found

    def pick_node(svc: dict) -> str | None:
        candidates = ready_nodes()
        local = endpoint_nodes(svc)
        key = meta.key_of(svc)
        first_endpoints = bool(local) and not had_endpoints.get(key, False)
        had_endpoints[key] = bool(local)
        preferred = [n for n in candidates if n["metadata"]["name"] in local]
        if svc["spec"].get("externalTrafficPolicy") == "Local":
            candidates = preferred or candidates
        ips = [i for i in (node_ip(n) for n in candidates) if i]
        preferred_ips = [i for i in (node_ip(n) for n in preferred) if i]
        # Keep the current node while it stays a candidate, so traffic does not move needlessly;
        # a Service that just got its first endpoints has no connections to keep.
        for ip in current_ips(svc):
            if routes.get(ip) in ips and not (first_endpoints and routes[ip] not in preferred_ips):
                return routes[ip]
        best = preferred_ips or ips
        return best[0] if best else None

    async def announce(ip: str, via: str | None) -> None:
        if via is None:
            if ip in routes:
                await _ip("route", "del", f"{ip}/32")
                routes.pop(ip, None)
            return
        if routes.get(ip) == via:
            return
        rc, err = await _ip("route", "replace", f"{ip}/32", "via", via, "dev", host_link)
        if rc == 0:
            routes[ip] = via
        else:
            log.warning("cannot route %s via %s: %s", ip, via, err)

    async def withdraw(key: str) -> None:
        had_endpoints.pop(key, None)
        freed = False
        for ip, k in list(owner.items()):
            if k == key:
                owner.pop(ip)
                await announce(ip, None)
                freed = True
        if freed:
            # Services left <pending> by an exhausted pool get the freed address.
            for other in services.list():
                if wants_lb(other) and not current_ips(other):
                    queue.add(meta.key_of(other))

    async def sync(key: str) -> None:
        svc = services.get(key)
        if svc is None or not wants_lb(svc):
            await withdraw(key)
            if svc is not None and current_ips(svc) and svc["spec"].get("type") != "LoadBalancer":
                new = copy.deepcopy(svc)
                new["status"]["loadBalancer"] = {}
                await replace_status(client, SERVICES, new, queue)
            return
        ips = current_ips(svc)
        want = requested_ip(svc)
        if want and ips and want not in ips:
            await withdraw(key)
            ips = []
        if not ips:
            ip = None
            if want:
                if owner.get(want, key) != key:
                    await recorder.record(svc, "Warning", "AllocationFailed",
                                          f"Failed to allocate IP for \"{key}\": {want} is already in use by "
                                          f"{owner[want]}")
                    return
                ip = want
            else:
                ip = next((a for a in pool if a not in owner), None)
            if ip is None:
                await recorder.record(svc, "Warning", "AllocationFailed",
                                      f"Failed to allocate IP for \"{key}\": no available IPs in the pool "
                                      f"{cfg.lb_pool} ({len(pool)} addresses, all in use); delete a LoadBalancer "
                                      f"Service or restart the cluster with a larger --lb-pool")
                return
            owner[ip] = key
            new = copy.deepcopy(svc)
            new.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
            if not await replace_status(client, SERVICES, new, queue):
                owner.pop(ip, None)
                return
            await recorder.record(svc, "Normal", "IPAllocated", f"Assigned IP [\"{ip}\"]")
            ips = [ip]
        via = pick_node(svc)
        for ip in ips:
            owner[ip] = key
            await announce(ip, via)

    # After a restart, a Service that has endpoints already is no "first endpoints" case.
    for s in services.list():
        if wants_lb(s) and current_ips(s):
            had_endpoints[meta.key_of(s)] = bool(endpoint_nodes(s))
    await run_workers(queue, sync, workers=1, name="loadbalancer")
