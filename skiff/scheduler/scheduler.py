"""The scheduler: binds pending pods to Ready nodes.

Filters as kube-scheduler does for the fields Skiff supports (node readiness, unschedulable,
NoSchedule taints and tolerations, nodeSelector), then scores by spreading: fewest pods of the
same owner on the node first, then fewest pods overall.
"""

from __future__ import annotations

import asyncio
import logging

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import NODES, PODS, BackgroundEvents, EventRecorder, split_key

log = logging.getLogger("skiff.scheduler")
# Bindings in flight at once: enough to keep the API server busy during a burst of new pods.
BIND_CONCURRENCY = 16


def node_is_ready(node: dict) -> bool:
    c = meta.get_condition(node, "Ready")
    return bool(c and c.get("status") == "True")


def tolerates(pod: dict, taint: dict) -> bool:
    for t in pod.get("spec", {}).get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if op == "Equal" and t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def filter_nodes(pod: dict, nodes: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """-> (feasible nodes, reason -> count of nodes rejected for it), for FailedScheduling messages."""
    reasons: dict[str, int] = {}
    ok = []
    selector = pod.get("spec", {}).get("nodeSelector") or {}
    for node in nodes:
        labels = node["metadata"].get("labels") or {}
        if not node_is_ready(node):
            why = "node(s) were not ready"
        elif node.get("spec", {}).get("unschedulable"):
            why = "node(s) were unschedulable"
        elif any(labels.get(k) != v for k, v in selector.items()):
            why = "node(s) didn't match Pod's node affinity/selector"
        else:
            bad = [t for t in node.get("spec", {}).get("taints") or []
                   if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod, t)]
            if bad:
                t = bad[0]
                why = f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"
            else:
                ok.append(node)
                continue
        reasons[why] = reasons.get(why, 0) + 1
    return ok, reasons


def score(pod: dict, nodes: list[dict], pods: list[dict]) -> dict:
    owner = meta.controller_ref(pod)
    owner_uid = owner.get("uid") if owner else None

    def key(node: dict) -> tuple[int, int, str]:
        name = node["metadata"]["name"]
        on_node = [p for p in pods if p.get("spec", {}).get("nodeName") == name
                   and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        same = sum(1 for p in on_node if owner_uid and (meta.controller_ref(p) or {}).get("uid") == owner_uid)
        return same, len(on_node), name
    return min(nodes, key=key)


async def run(ctx) -> None:
    client = ctx.client
    pods = ctx.informer(PODS)
    nodes = ctx.informer(NODES)
    queue = WorkQueue()
    recorder = EventRecorder(client, "default-scheduler")
    # Bindings made but not yet seen in the cache count towards spreading immediately.
    assumed: dict[str, str] = {}
    binds: set[asyncio.Task] = set()
    # Scheduled events wait while bindings are in flight: binding is what the pods wait for.
    events = BackgroundEvents(recorder, busy=lambda: bool(binds))
    binding_slots = asyncio.Semaphore(BIND_CONCURRENCY)

    def pending(pod: dict) -> bool:
        spec = pod.get("spec", {})
        return (not spec.get("nodeName") and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
                and not pod["metadata"].get("deletionTimestamp"))

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        if etype != "DELETED" and pending(pod):
            queue.add(meta.key_of(pod))
        if etype == "DELETED" or pod.get("spec", {}).get("nodeName"):
            assumed.pop(meta.key_of(pod), None)

    def on_node(etype: str, node: dict, old: dict | None) -> None:
        # A node becoming ready may unblock pods that could not be placed.
        for p in pods.list():
            if pending(p):
                queue.add(meta.key_of(p))

    pods.add_handler(on_pod)
    nodes.add_handler(on_node)
    await ctx.wait_synced(PODS, NODES)

    async def schedule(key: str) -> None:
        pod = pods.get(key)
        if pod is None or not pending(pod) or key in assumed:
            return
        # The scoring below reads the cache and the assumptions; no await may come between the two.
        feasible, reasons = filter_nodes(pod, nodes.list())
        if not feasible:
            total = len(nodes.list())
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            msg = f"0/{total} nodes are available: {detail}." if detail else f"0/{total} nodes are available."
            await recorder.record(pod, "Warning", "FailedScheduling", msg)
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                    "lastProbeTime": None, "lastTransitionTime": meta.now_rfc3339()}
            try:
                await client.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                   {"status": {"conditions": [cond]}}, "strategic", sub="status")
            except ClientError:
                pass
            queue.add_after(key, 1.0)
            return
        view = list(pods.list())
        for k, node_name in assumed.items():
            p = pods.get(k)
            if p is not None:
                view.append({**p, "spec": {**p.get("spec", {}), "nodeName": node_name}})
        node = score(pod, feasible, view)
        node_name = node["metadata"]["name"]
        # Assume the binding before it is written, as kube-scheduler does, so that a pod scheduled
        # concurrently already counts this one when spreading; then bind in the background, as
        # kube-scheduler's binding cycle does, so the next pod is placed without waiting for the API.
        assumed[key] = node_name
        task = asyncio.get_running_loop().create_task(bind(key, pod, node_name), name=f"bind-{key}")
        binds.add(task)
        task.add_done_callback(binds.discard)

    async def bind(key: str, pod: dict, node_name: str) -> None:
        ns, name = split_key(key)
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        async with binding_slots:
            try:
                await client.request("POST", client.path(PODS, ns, name, "binding"), body=binding)
            except Exception as e:
                assumed.pop(key, None)
                if not (isinstance(e, ClientError) and e.code in (404, 409)):  # gone, or bound elsewhere
                    log.warning("binding %s to %s failed: %s", key, node_name, e)
                    queue.add_rate_limited(key)
                return
        events.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node_name}")

    await asyncio.gather(run_workers(queue, schedule, workers=2, name="scheduler"))
