"""ReplicaSet controller: keeps `spec.replicas` pods running from the template, and reports status.

Like kube-controller-manager it uses expectations: after creating or deleting pods it waits to
see those changes in its cache before counting again, so a burst of events never creates twice.
"""

from __future__ import annotations

import copy
import logging
import time

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.controllers.base import (
    PODS,
    REPLICASETS,
    EventRecorder,
    pod_is_active,
    pod_is_ready,
    split_key,
    write_status,
)
from skiff.controllers.podcontrol import Expectations, create_and_delete, pod_handler

log = logging.getLogger("skiff.controllers.replicaset")
BURST = 100


def owned_pods(rs: dict, pods: list[dict]) -> list[dict]:
    uid = rs["metadata"]["uid"]
    return [p for p in pods if p["metadata"].get("namespace") == rs["metadata"]["namespace"]
            and (meta.controller_ref(p) or {}).get("uid") == uid]


def pods_to_delete(pods: list[dict], n: int) -> list[dict]:
    """Prefer unscheduled, then pending, then not ready, then the youngest, as upstream ranks them."""
    def rank(p: dict) -> tuple:
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(p.get("status", {}).get("phase", ""), 0)
        return (1 if p.get("spec", {}).get("nodeName") else 0, phase_rank, 1 if pod_is_ready(p) else 0,
                -(meta.parse_time(p["metadata"].get("creationTimestamp")) or meta.parse_time("1970-01-01T00:00:00Z")
                  ).timestamp())
    return sorted(pods, key=rank)[:n]


def available(pod: dict, min_ready: int, now: float) -> bool:
    if not pod_is_ready(pod):
        return False
    if min_ready <= 0:
        return True
    c = meta.get_condition(pod, "Ready")
    t = meta.parse_time((c or {}).get("lastTransitionTime"))
    return bool(t and now - t.timestamp() >= min_ready)


def pod_from_template(rs: dict) -> dict:
    tmpl = copy.deepcopy(rs["spec"]["template"])
    md = tmpl.get("metadata") or {}
    pod_md = {"generateName": rs["metadata"]["name"] + "-", "namespace": rs["metadata"]["namespace"],
              "labels": md.get("labels") or {}, "ownerReferences": [meta.owner_reference(rs)]}
    if md.get("annotations"):
        pod_md["annotations"] = md["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": tmpl.get("spec") or {}}


async def run(ctx) -> None:
    client = ctx.client
    rss = ctx.informer(REPLICASETS)
    pods = ctx.informer(PODS)
    queue = WorkQueue()
    exp = Expectations()
    recorder = EventRecorder(client, "replicaset-controller")

    rss.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))
    pods.add_handler(pod_handler("ReplicaSet", exp, queue.add))
    await ctx.wait_synced(REPLICASETS, PODS)

    async def sync(key: str) -> None:
        rs = rss.get(key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        all_owned = owned_pods(rs, pods.list(ns))
        active = [p for p in all_owned if pod_is_active(p)]
        want = rs["spec"].get("replicas", 1)
        if exp.satisfied(key):
            diff = len(active) - want
            create = [pod_from_template(rs) for _ in range(min(-diff, BURST))] if diff < 0 else []
            delete = [p["metadata"]["name"] for p in pods_to_delete(active, diff)] if diff > 0 else []
            await create_and_delete(client, recorder, exp, key, rs, create, delete, "replicaset-controller")
        await update_status(rs, active)

    async def update_status(rs: dict, active: list[dict]) -> None:
        now = time.time()
        min_ready = rs["spec"].get("minReadySeconds", 0)
        tmpl_labels = (rs["spec"].get("template", {}).get("metadata") or {}).get("labels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in tmpl_labels.items())),
            "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
            "availableReplicas": sum(1 for p in active if available(p, min_ready, now)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        for k in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
            if status[k] == 0:
                status.pop(k)
        await write_status(client, REPLICASETS, rs, status, queue)
        if min_ready > 0 and status.get("readyReplicas", 0) > status.get("availableReplicas", 0):
            queue.add_after(meta.key_of(rs), min_ready)

    await run_workers(queue, sync, workers=4, name="replicaset")
