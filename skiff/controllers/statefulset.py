"""StatefulSet controller: pods with stable names and network identities, made and replaced in
order, as kube-controller-manager's statefulset controller keeps them.

`plan` is the pure core (a StatefulSet and its pods in; the ordinals to create, the pods to delete
and the status out); `run` applies it. Pod `<name>-<i>` gets hostname `<name>-<i>` and subdomain
`serviceName`, so a headless Service of that name gives it the DNS name
`<name>-<i>.<serviceName>.<namespace>.svc.cluster.local`, and the labels
`statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and `controller-revision-hash`.

`OrderedReady` creates pod i only once pods 0..i-1 are Running and Ready, and removes surplus pods
from the highest ordinal down, one at a time; `Parallel` does both at once. A `RollingUpdate`
replaces pods from the highest ordinal down to its `partition`, one at a time, each once the others
are Running and Ready; `OnDelete` replaces a pod only when it is deleted.

Not covered: PersistentVolumeClaims (Skiff has no PersistentVolumes: a pod whose template asks for
volumeClaimTemplates gets the claim's volume and then the kubelet's FailedMount event), and
ControllerRevisions (so a pod below the partition that is recreated gets the new template, and
there is no `kubectl rollout history/undo` for StatefulSets).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import PODS, STATEFULSETS, EventRecorder, pod_is_ready, split_key, write_status
from skiff.controllers.deployment import template_hash
from skiff.controllers.podcontrol import Expectations, pod_handler
from skiff.controllers.replicaset import available, owned_pods

log = logging.getLogger("skiff.controllers.statefulset")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
HASH_LABEL = "controller-revision-hash"


@dataclass
class Plan:
    create: list[int] = field(default_factory=list)  # ordinals
    delete: list[str] = field(default_factory=list)  # pod names
    status: dict = field(default_factory=dict)


def update_revision(sts: dict) -> str:
    return f"{sts['metadata']['name']}-{template_hash(sts['spec'].get('template') or {})}"


def ordinal_of(sts: dict, pod: dict) -> int | None:
    prefix = sts["metadata"]["name"] + "-"
    name = pod["metadata"]["name"]
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() and str(int(rest)) == rest else None


def _revision(pod: dict) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(HASH_LABEL)


def _healthy(pod: dict) -> bool:
    return ((pod.get("status") or {}).get("phase") == "Running" and pod_is_ready(pod)
            and not pod["metadata"].get("deletionTimestamp"))


def plan(sts: dict, pods: list[dict], now: float) -> Plan:
    """What the controller does next for `sts`, given the pods it owns."""
    out = Plan()
    spec, old_status = sts["spec"], sts.get("status") or {}
    replicas = spec.get("replicas", 1)
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    update_rev = update_revision(sts)
    current_rev = old_status.get("currentRevision") or update_rev
    by_ordinal = {i: p for p in pods if (i := ordinal_of(sts, p)) is not None}

    blocked = False  # OrderedReady: an earlier pod is not yet Running and Ready
    for i in range(replicas):
        pod = by_ordinal.get(i)
        if pod is None:
            if not blocked:
                out.create.append(i)
            blocked = blocked or ordered
            continue
        if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") and \
                not pod["metadata"].get("deletionTimestamp"):
            out.delete.append(pod["metadata"]["name"])  # made again by the next sync
        if ordered and not _healthy(pod):
            blocked = True

    surplus = sorted((i for i in by_ordinal if i >= replicas), reverse=True)
    live_surplus = [i for i in surplus if not by_ordinal[i]["metadata"].get("deletionTimestamp")]
    if not ordered:
        out.delete += [by_ordinal[i]["metadata"]["name"] for i in live_surplus]
    elif not blocked and live_surplus and len(live_surplus) == len(surplus):
        out.delete.append(by_ordinal[live_surplus[0]]["metadata"]["name"])  # one at a time, the highest first

    strategy = spec.get("updateStrategy") or {}
    all_healthy = all(i in by_ordinal and _healthy(by_ordinal[i]) for i in range(replicas))
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and all_healthy and not surplus:
        partition = (strategy.get("rollingUpdate") or {}).get("partition", 0)
        for i in range(replicas - 1, partition - 1, -1):
            if _revision(by_ordinal[i]) != update_rev:
                out.delete.append(by_ordinal[i]["metadata"]["name"])
                break

    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    updated = sum(1 for p in live if _revision(p) == update_rev)
    if updated >= replicas and all_healthy:
        current_rev = update_rev  # the update is done
    out.status = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if pod_is_ready(p)),
        "currentReplicas": sum(1 for p in live if _revision(p) == current_rev),
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": update_rev,
        "collisionCount": 0,
        "availableReplicas": sum(1 for p in live if available(p, spec.get("minReadySeconds", 0), now)),
    }
    for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        if not out.status[key]:
            out.status.pop(key)
    out.delete = list(dict.fromkeys(out.delete))
    return out


def pod_for(sts: dict, ordinal: int) -> dict:
    """Pod `ordinal` of `sts`, as the controller creates it."""
    tmpl = copy.deepcopy(sts["spec"].get("template") or {})
    md = tmpl.get("metadata") or {}
    spec = tmpl.get("spec") or {}
    name = f"{sts['metadata']['name']}-{ordinal}"
    labels = {**(md.get("labels") or {}), POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
              HASH_LABEL: update_revision(sts)}
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = {c["metadata"]["name"]: c for c in sts["spec"].get("volumeClaimTemplates") or []
              if (c.get("metadata") or {}).get("name")}
    if claims:
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{name}"}} for claim in claims]
        spec["volumes"] = volumes
    pod_md = {"name": name, "namespace": sts["metadata"]["namespace"], "labels": labels,
              "ownerReferences": [meta.owner_reference(sts)]}
    if md.get("annotations"):
        pod_md["annotations"] = md["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": spec}


async def run(ctx) -> None:
    client = ctx.client
    sets = ctx.informer(STATEFULSETS)
    pods = ctx.informer(PODS)
    queue = WorkQueue()
    recorder = EventRecorder(client, "statefulset-controller")
    exp = Expectations()  # pods created or deleted and not yet seen: the plan waits for the cache

    sets.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))
    pods.add_handler(pod_handler("StatefulSet", exp, queue.add))
    await ctx.wait_synced(STATEFULSETS, PODS)

    async def sync(key: str) -> None:
        sts = sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        if not exp.satisfied(key):
            queue.add_after(key, 0.2)
            return
        ns, _ = split_key(key)
        p = plan(sts, owned_pods(sts, pods.list(ns)), time.time())
        exp.expect(key, adds=len(p.create), dels=set(p.delete))
        for ordinal in p.create:
            body = pod_for(sts, ordinal)
            name = body["metadata"]["name"]
            try:
                await client.create(PODS, ns, body, field_manager="statefulset-controller")
                await recorder.record(sts, "Normal", "SuccessfulCreate",
                                      f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful")
            except ClientError as e:
                exp.lower(key, 1)
                await recorder.record(sts, "Warning", "FailedCreate",
                                      f"create Pod {name} in StatefulSet {sts['metadata']['name']} failed error: {e}")
                if e.code != 409:
                    raise
        for name in p.delete:
            try:
                await client.delete(PODS, ns, name)
                await recorder.record(sts, "Normal", "SuccessfulDelete",
                                      f"delete Pod {name} in StatefulSet {sts['metadata']['name']} successful")
            except ClientError as e:
                exp.observed_delete(key, name)
                if e.code != 404:
                    raise
        await write_status(client, STATEFULSETS, sts, p.status, queue)
        min_ready = sts["spec"].get("minReadySeconds", 0)
        if min_ready > 0 and p.status.get("readyReplicas", 0) > p.status["availableReplicas"]:
            queue.add_after(key, min_ready)

    await run_workers(queue, sync, workers=4, name="statefulset")
