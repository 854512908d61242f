"""DaemonSet controller: one pod of the template on every node that should run it, as
kube-controller-manager's daemon controller keeps them.

`plan` is the pure core (a DaemonSet, the nodes and its pods in; the nodes to create a pod for, the
pods to delete and the status out); `run` applies it. A node should run the pod when it matches the
template's nodeSelector and required node affinity and the pod tolerates its NoSchedule and
NoExecute taints, counting the tolerations every daemon pod gets (not-ready and unreachable
NoExecute, the pressure and unschedulable NoSchedule taints). A node that is not Ready takes no new
daemon pod (upstream's not-ready NoSchedule taint) but keeps the one it has. Each pod is pinned to
its node with required node affinity on `metadata.name`, and the scheduler binds it there.

Updates: `RollingUpdate` replaces old pods (other `controller-revision-hash`) node by node, keeping
at most `maxUnavailable` nodes without an available pod; `OnDelete` waits for each old pod to be
deleted. Not covered: `maxSurge` (updates go as if it were 0), ControllerRevisions (so no
`kubectl rollout history/undo` for DaemonSets).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.controllers.base import (
    DAEMONSETS,
    NODES,
    PODS,
    EventRecorder,
    pod_is_ready,
    split_key,
    write_status,
)
from skiff.controllers.deployment import template_hash
from skiff.controllers.podcontrol import Expectations, create_and_delete, pod_handler
from skiff.controllers.replicaset import available, owned_pods
from skiff.scheduler.scheduler import node_is_ready, node_selection_matches, tolerates

log = logging.getLogger("skiff.controllers.daemonset")

HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
# What the daemon controller adds to every daemon pod (AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


@dataclass
class Plan:
    create: list[str] = field(default_factory=list)  # node names
    delete: list[str] = field(default_factory=list)  # pod names
    status: dict = field(default_factory=dict)


def daemon_pod_spec(ds: dict) -> dict:
    """The template's pod spec with the tolerations every daemon pod gets."""
    spec = copy.deepcopy((ds["spec"].get("template") or {}).get("spec") or {})
    tolerations = list(spec.get("tolerations") or [])
    wanted = DAEMON_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for t in wanted:
        if t not in tolerations:
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    return spec


def node_should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(should a new daemon pod go there, may one there keep running), as nodeShouldRunDaemonPod."""
    pod = {"spec": daemon_pod_spec(ds)}
    spec = pod["spec"]
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not node_selection_matches(pod, node):
        return False, False
    run = keep = True
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute") or tolerates(pod, taint):
            continue
        run = False
        if taint["effect"] == "NoExecute":
            keep = False
    if node.get("spec", {}).get("unschedulable") is True and not tolerates(
            pod, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
        run = False
    if not node_is_ready(node):
        run = False  # upstream: the not-ready NoSchedule taint, which daemon pods do not tolerate
    return run, keep


def node_of(pod: dict) -> str | None:
    """The node a daemon pod is for: where it is bound, or where its node affinity pins it."""
    if pod.get("spec", {}).get("nodeName"):
        return pod["spec"]["nodeName"]
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(req.get("values") or []) == 1:
                return req["values"][0]
    return None


def _scaled(value: object, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


def plan(ds: dict, nodes: list[dict], pods: list[dict], now: float) -> Plan:
    """What the controller does next for `ds`, given every node and the pods it owns."""
    out = Plan()
    spec = ds["spec"]
    current = template_hash(spec.get("template") or {})
    min_ready = spec.get("minReadySeconds", 0)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    failed = [p for p in live if (p.get("status") or {}).get("phase") == "Failed"]
    out.delete += [p["metadata"]["name"] for p in failed]  # replaced by the next sync
    by_node: dict[str, list[dict]] = {}
    for p in live:
        if p in failed or (p.get("status") or {}).get("phase") == "Succeeded":
            continue
        by_node.setdefault(node_of(p) or "", []).append(p)
    for plist in by_node.values():
        plist.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")

    names = {n["metadata"]["name"] for n in nodes}
    for name, plist in by_node.items():
        if name not in names:  # its node is gone
            out.delete += [p["metadata"]["name"] for p in plist]

    desired = current_n = misscheduled = ready = avail = updated = 0
    wanted: dict[str, dict] = {}  # node -> the daemon pod it keeps
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        run, keep = node_should_run(ds, node)
        here = by_node.get(name, [])
        if run:
            desired += 1
        if not keep:
            out.delete += [p["metadata"]["name"] for p in here]
            if here:
                misscheduled += 1
            continue
        if not here:
            if run:
                out.create.append(name)
            continue
        if not run:
            misscheduled += 1
            continue
        out.delete += [p["metadata"]["name"] for p in here[1:]]  # one per node: the oldest stays
        pod = here[0]
        wanted[name] = pod
        current_n += 1
        if pod_is_ready(pod):
            ready += 1
        if available(pod, min_ready, now):
            avail += 1
        if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == current:
            updated += 1

    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        budget = max(1, _scaled(rolling.get("maxUnavailable", 1), desired)) if desired else 0
        unavailable = desired - avail
        old = [p for p in wanted.values() if (p["metadata"].get("labels") or {}).get(HASH_LABEL) != current]
        # Old pods that are not available cost nothing to replace; then as many as the budget allows.
        for p in sorted(old, key=lambda p: available(p, min_ready, now)):
            if not available(p, min_ready, now):
                out.delete.append(p["metadata"]["name"])
            elif unavailable < budget:
                out.delete.append(p["metadata"]["name"])
                unavailable += 1

    out.status = {
        "currentNumberScheduled": current_n, "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired, "numberReady": ready,
        "observedGeneration": ds["metadata"].get("generation", 1),
        "updatedNumberScheduled": updated, "numberAvailable": avail,
        "numberUnavailable": desired - avail,
    }
    for key in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
        if not out.status[key]:
            out.status.pop(key)
    out.delete = list(dict.fromkeys(out.delete))
    return out


def pod_for(ds: dict, node: str) -> dict:
    """A daemon pod of `ds` for `node`, as the controller creates it."""
    tmpl = ds["spec"].get("template") or {}
    md = tmpl.get("metadata") or {}
    spec = daemon_pod_spec(ds)
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    # The node was chosen against the template's own terms: the pod keeps only its node's.
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    labels = {**(md.get("labels") or {}), HASH_LABEL: template_hash(tmpl),
              GENERATION_LABEL: str(ds["metadata"].get("generation", 1))}
    pod_md = {"generateName": ds["metadata"]["name"] + "-", "namespace": ds["metadata"]["namespace"],
              "labels": labels, "ownerReferences": [meta.owner_reference(ds)]}
    if md.get("annotations"):
        pod_md["annotations"] = dict(md["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": spec}


async def run(ctx) -> None:
    client = ctx.client
    sets = ctx.informer(DAEMONSETS)
    pods = ctx.informer(PODS)
    nodes = ctx.informer(NODES)
    queue = WorkQueue()
    exp = Expectations()
    recorder = EventRecorder(client, "daemonset-controller")

    sets.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def on_node(etype: str, node: dict, old: dict | None) -> None:
        for ds in sets.list():
            queue.add(meta.key_of(ds))

    pods.add_handler(pod_handler("DaemonSet", exp, queue.add))
    nodes.add_handler(on_node)
    await ctx.wait_synced(DAEMONSETS, PODS, NODES)

    async def sync(key: str) -> None:
        ds = sets.get(key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        ns, _ = split_key(key)
        p = plan(ds, nodes.list(), owned_pods(ds, pods.list(ns)), time.time())
        if exp.satisfied(key):
            await create_and_delete(client, recorder, exp, key, ds, [pod_for(ds, node) for node in p.create], p.delete,
                                    "daemonset-controller")
        else:
            queue.add_after(key, 0.2)
        await write_status(client, DAEMONSETS, ds, p.status, queue)
        min_ready = ds["spec"].get("minReadySeconds", 0)
        if min_ready > 0 and p.status["numberReady"] > p.status.get("numberAvailable", 0):
            queue.add_after(key, min_ready)

    await run_workers(queue, sync, workers=4, name="daemonset")
