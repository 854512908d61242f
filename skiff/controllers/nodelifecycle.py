"""Node lifecycle controller: a node whose agent stops renewing its Lease becomes NotReady (Ready
condition Unknown, unreachable taints), its pods are marked not Ready so Services stop sending them
traffic, and after the pods' toleration for `node.kubernetes.io/unreachable` (300 s by default)
they are deleted so that their controllers replace them, as kube-controller-manager does."""

from __future__ import annotations

import asyncio
import copy
import logging
import time

import aiohttp

from skiff.api import meta
from skiff.client.rest import ClientError
from skiff.controllers.base import LEASES, NODES, PODS, EventRecorder

log = logging.getLogger("skiff.controllers.nodelifecycle")
UNREACHABLE = "node.kubernetes.io/unreachable"


def lease_age(lease: dict | None, now: float) -> float:
    if lease is None:
        return float("inf")
    t = meta.parse_time(lease.get("spec", {}).get("renewTime"))
    return now - t.timestamp() if t else float("inf")


def toleration_seconds(pod: dict) -> float:
    for t in pod.get("spec", {}).get("tolerations") or []:
        if t.get("key") in (UNREACHABLE, None, "") and t.get("effect") in ("NoExecute", None, ""):
            if t.get("operator") == "Exists" or t.get("key") == UNREACHABLE:
                return float(t["tolerationSeconds"]) if t.get("tolerationSeconds") is not None else float("inf")
    return 300.0


async def run(ctx) -> None:
    client = ctx.client
    grace = ctx.cfg.node_grace_seconds
    nodes = ctx.informer(NODES)
    leases_inf = ctx.informer(LEASES)
    pods = ctx.informer(PODS)
    recorder = EventRecorder(client, "node-controller")
    evictions = EventRecorder(client, "taint-eviction-controller")
    not_ready_since: dict[str, float] = {}
    registered: set[str] = set()  # nodes this controller has announced, as kube's does on first sight
    await ctx.wait_synced(NODES, LEASES, PODS)

    async def mark_unreachable(node: dict) -> None:
        name = node["metadata"]["name"]
        new = copy.deepcopy(node)
        now = meta.now_rfc3339()
        conds = new.setdefault("status", {}).setdefault("conditions", [])
        for c in conds:
            if c.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
                if c.get("status") != "Unknown":
                    c["lastTransitionTime"] = now
                c.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                          "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": c.get(
                              "lastHeartbeatTime")})
        await client.replace(NODES, None, name, new, sub="status")
        taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") != UNREACHABLE]
        taints += [{"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now},
                   {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}]
        await client.patch(NODES, None, name, {"spec": {"taints": taints}})
        await recorder.record(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        for pod in pods.list():
            if pod.get("spec", {}).get("nodeName") != name:
                continue
            # Only Ready: nobody can know what the containers do now (kube's MarkPodsNotReady).
            conds = [dict(c) for c in pod.get("status", {}).get("conditions") or []]
            changed = False
            for c in conds:
                if c.get("type") == "Ready" and c.get("status") != "False":
                    c.update({"status": "False", "lastTransitionTime": now})
                    changed = True
            if changed:
                try:
                    await client.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                       {"status": {"conditions": conds}}, "merge", sub="status")
                except ClientError as e:
                    if e.code != 404:
                        raise
                await recorder.record(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def evict(pod: dict) -> None:
        """The taint eviction controller's deletion of a pod whose toleration of the unreachable
        node ran out: it says so in the pod's conditions and in an Event first."""
        md = pod["metadata"]
        await evictions.record(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {md['namespace']}/{md['name']}")
        conds = [c for c in pod.get("status", {}).get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conds.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                      "message": "Taint manager: deleting due to NoExecute taint", "lastProbeTime": None,
                      "lastTransitionTime": meta.now_rfc3339()})
        try:
            await client.patch(PODS, md["namespace"], md["name"], {"status": {"conditions": conds}}, "merge",
                               sub="status")
            await client.delete(PODS, md["namespace"], md["name"])
        except ClientError as e:
            if e.code != 404:
                raise

    async def clear_taints(node: dict) -> None:
        taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") != UNREACHABLE]
        if len(taints) != len(node.get("spec", {}).get("taints") or []):
            await client.patch(NODES, None, node["metadata"]["name"], {"spec": {"taints": taints or None}})

    while True:
        now = time.time()
        for node in nodes.list():
            name = node["metadata"]["name"]
            ready = meta.get_condition(node, "Ready") or {}
            lease = leases_inf.get(f"kube-node-lease/{name}")
            try:
                if name not in registered:
                    await recorder.record(node, "Normal", "RegisteredNode",
                                          f"Node {name} event: Registered Node {name} in Controller")
                    registered.add(name)
                if lease_age(lease, now) > grace:
                    if ready.get("status") != "Unknown":
                        await mark_unreachable(node)
                    since = not_ready_since.setdefault(name, time.monotonic())
                    waited = time.monotonic() - since
                    for pod in pods.list():
                        if pod.get("spec", {}).get("nodeName") == name and waited >= toleration_seconds(pod) \
                                and not pod["metadata"].get("deletionTimestamp"):
                            await evict(pod)
                else:
                    not_ready_since.pop(name, None)
                    if ready.get("status") == "True":
                        await clear_taints(node)
            except (ClientError, aiohttp.ClientError, TimeoutError) as e:
                # The next pass retries, as a work queue would: an API server that is restarting
                # must not take the node controller down with it.
                log.warning("node %s: %s", name, e)
        registered &= {n["metadata"]["name"] for n in nodes.list()}  # a node added again is announced again
        await asyncio.sleep(min(1.0, grace / 4))
