"""Deployment controller: Deployment -> ReplicaSets with pod-template-hash, revisions, rolling update
(maxSurge/maxUnavailable) or Recreate, and status with the Available and Progressing conditions."""

from __future__ import annotations

import copy
import json
import logging
import math

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import DEPLOYMENTS, PODS, REPLICASETS, EventRecorder, replace_status, split_key

log = logging.getLogger("skiff.controllers.deployment")
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict, collision_count: int = 0) -> str:
    """A short, stable name suffix from the pod template, in the same alphabet kube uses."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    h = 0x811C9DC5
    for b in data + str(collision_count).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def _strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def templates_equal(a: dict, b: dict) -> bool:
    return _strip_hash(a) == _strip_hash(b)


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as absolute numbers: surge rounds up, unavailable down; never both 0."""
    replicas = d["spec"].get("replicas", 1)
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}

    def value(v, round_up: bool) -> int:
        if v is None:
            v = "25%"
        if isinstance(v, str) and v.endswith("%"):
            x = int(v[:-1]) * replicas / 100
            return math.ceil(x) if round_up else math.floor(x)
        return int(v)
    surge, unavail = value(ru.get("maxSurge"), True), value(ru.get("maxUnavailable"), False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def revision_of(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


async def run(ctx) -> None:
    client = ctx.client
    deps = ctx.informer(DEPLOYMENTS)
    rss = ctx.informer(REPLICASETS)
    pods = ctx.informer(PODS)
    queue = WorkQueue()
    recorder = EventRecorder(client, "deployment-controller")

    deps.add_handler(lambda t, o, old: queue.add(meta.key_of(o)))

    def on_rs(etype: str, rs: dict, old: dict | None) -> None:
        ref = meta.controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        # Recreate waits for old pods to be gone.
        if etype == "DELETED":
            ref = meta.controller_ref(pod)
            if ref and ref.get("kind") == "ReplicaSet":
                rs = rss.get(f"{pod['metadata']['namespace']}/{ref['name']}")
                dref = meta.controller_ref(rs) if rs else None
                if dref and dref.get("kind") == "Deployment":
                    queue.add(f"{pod['metadata']['namespace']}/{dref['name']}")

    rss.add_handler(on_rs)
    pods.add_handler(on_pod)
    await ctx.wait_synced(DEPLOYMENTS, REPLICASETS, PODS)

    async def scale(rs: dict, replicas: int, d: dict) -> dict:
        if rs["spec"].get("replicas") == replicas:
            return rs
        old_n = rs["spec"].get("replicas", 0)
        surge, _ = resolve_fenceposts(d)
        body = {"metadata": {"annotations": {
            "deployment.kubernetes.io/desired-replicas": str(d["spec"].get("replicas", 1)),
            "deployment.kubernetes.io/max-replicas": str(d["spec"].get("replicas", 1) + surge)}},
            "spec": {"replicas": replicas}}
        new = await client.patch(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], body)
        verb = "up" if replicas > old_n else "down"
        await recorder.record(d, "Normal", "ScalingReplicaSet",
                              f"Scaled {verb} replica set {rs['metadata']['name']} from {old_n} to {replicas}")
        return new

    async def sync(key: str) -> None:
        d = deps.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        uid = d["metadata"]["uid"]
        owned = [rs for rs in rss.list(ns) if (meta.controller_ref(rs) or {}).get("uid") == uid]
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        template = spec["template"]
        new_rs = next((rs for rs in owned if templates_equal(rs["spec"]["template"], template)), None)
        olds = [rs for rs in owned if rs is not new_rs]
        max_rev = max((revision_of(rs) for rs in owned), default=0)
        if spec.get("paused"):
            await update_status(d, new_rs, olds)
            return
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if new_rs is None:
            h = template_hash(template, (d.get("status") or {}).get("collisionCount", 0))
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            if strategy == "Recreate":
                initial = 0
            else:
                surge, _ = resolve_fenceposts(d)
                current = sum(rs["spec"].get("replicas", 0) for rs in olds)
                initial = max(0, min(replicas, replicas + surge - current))
            annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                           if k not in ("kubectl.kubernetes.io/last-applied-configuration", REVISION)}
            annotations.update({REVISION: str(max_rev + 1),
                                "deployment.kubernetes.io/desired-replicas": str(replicas),
                                "deployment.kubernetes.io/max-replicas": str(replicas + resolve_fenceposts(d)[0])})
            body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": tmpl["metadata"]["labels"],
                                 "annotations": annotations, "ownerReferences": [meta.owner_reference(d)]},
                    "spec": {"replicas": initial, "minReadySeconds": spec.get("minReadySeconds", 0),
                             "selector": selector, "template": tmpl}}
            try:
                new_rs = await client.create(REPLICASETS, ns, body, field_manager="deployment-controller")
            except ClientError as e:
                if e.code == 409:
                    # Same name, different template: a hash collision. Bump the count and retry.
                    cc = (d.get("status") or {}).get("collisionCount", 0) + 1
                    await client.patch(DEPLOYMENTS, ns, name, {"status": {"collisionCount": cc}}, sub="status")
                    return
                raise
            await recorder.record(d, "Normal", "ScalingReplicaSet",
                                  f"Scaled up replica set {new_rs['metadata']['name']} from 0 to {initial}")
        elif revision_of(new_rs) < max_rev:
            # A rollback (or a return to an older template): that ReplicaSet becomes the newest revision.
            new_rs = await client.patch(REPLICASETS, ns, new_rs["metadata"]["name"],
                                        {"metadata": {"annotations": {REVISION: str(max_rev + 1)}}})
        if strategy == "Recreate":
            for rs in olds:
                if rs["spec"].get("replicas", 0) != 0:
                    await scale(rs, 0, d)
            old_pods = [p for p in pods.list(ns) if (meta.controller_ref(p) or {}).get("uid") in
                        {rs["metadata"]["uid"] for rs in olds}]
            if not old_pods:
                new_rs = await scale(new_rs, replicas, d)
        else:
            new_rs = await rolling(d, new_rs, olds)
        await update_status(d, new_rs, olds)
        await cleanup(d, olds)

    async def rolling(d: dict, new_rs: dict, olds: list[dict]) -> dict:
        replicas = d["spec"].get("replicas", 1)
        surge, unavail = resolve_fenceposts(d)
        all_rs = [new_rs, *olds]
        total = sum(rs["spec"].get("replicas", 0) for rs in all_rs)
        new_n = new_rs["spec"].get("replicas", 0)
        if not olds or all(rs["spec"].get("replicas", 0) == 0 for rs in olds):
            return await scale(new_rs, replicas, d)
        if new_n < replicas:
            up = min(replicas + surge - total, replicas - new_n)
            if up > 0:
                new_rs = await scale(new_rs, new_n + up, d)
                total += up
        # Scale old ReplicaSets down as far as availability allows: first their unhealthy pods.
        min_available = replicas - unavail
        available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in all_rs)
        new_unavailable = new_rs["spec"].get("replicas", 0) - (new_rs.get("status") or {}).get("availableReplicas", 0)
        budget = available - min_available - max(0, new_unavailable)
        olds_sorted = sorted(olds, key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        for rs in olds_sorted:
            cur = rs["spec"].get("replicas", 0)
            if cur == 0:
                continue
            unhealthy = cur - (rs.get("status") or {}).get("availableReplicas", 0)
            cut = max(0, unhealthy)
            if budget > 0:
                cut = min(cur, cut + budget)
                budget -= max(0, cut - max(0, unhealthy))
            cut = min(cut, cur, max(0, total - min_available))
            if cut > 0:
                await scale(rs, cur - cut, d)
                total -= cut
        return new_rs

    async def update_status(d: dict, new_rs: dict | None, olds: list[dict]) -> None:
        all_rs = [r for r in [new_rs, *olds] if r]
        replicas = d["spec"].get("replicas", 1)
        _, unavail = resolve_fenceposts(d)
        st = lambda rs, k: (rs.get("status") or {}).get(k, 0)  # noqa: E731
        total = sum(st(rs, "replicas") for rs in all_rs)
        updated = st(new_rs, "replicas") if new_rs else 0
        ready = sum(st(rs, "readyReplicas") for rs in all_rs)
        avail = sum(st(rs, "availableReplicas") for rs in all_rs)
        now = meta.now_rfc3339()
        old_conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}

        def cond(ctype: str, status: str, reason: str, message: str) -> dict:
            prev = old_conds.get(ctype)
            c = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
                 "reason": reason, "message": message}
            if prev and prev.get("status") == status:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", now)
                if prev.get("reason") == reason and prev.get("message") == message:
                    c["lastUpdateTime"] = prev.get("lastUpdateTime", now)
            return c
        if avail >= replicas - unavail:
            available_c = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available_c = cond("Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (new_rs is not None and updated == replicas and total == replicas and avail >= replicas
                    and st(new_rs, "availableReplicas") >= replicas)
        if complete:
            progressing = cond("Progressing", "True", "NewReplicaSetAvailable",
                               f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif "Progressing" not in old_conds:
            progressing = cond("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        else:
            progressing = cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": avail,
                  "unavailableReplicas": max(0, replicas - avail), "conditions": [available_c, progressing]}
        if (d.get("status") or {}).get("collisionCount"):
            status["collisionCount"] = d["status"]["collisionCount"]
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if status[k] == 0:
                status.pop(k)
        if status != d.get("status"):
            new = copy.deepcopy(d)
            new["status"] = status
            await replace_status(client, DEPLOYMENTS, new, queue)

    async def cleanup(d: dict, olds: list[dict]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted([rs for rs in olds if rs["spec"].get("replicas", 0) == 0 and
                       (rs.get("status") or {}).get("replicas", 0) == 0], key=revision_of)
        for rs in idle[:max(0, len(idle) - limit)]:
            try:
                await client.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ClientError as e:
                if e.code != 404:
                    raise

    await run_workers(queue, sync, workers=2, name="deployment")
