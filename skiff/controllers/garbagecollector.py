"""Garbage collector: deletes dependents whose owners are gone (background propagation), deletes
dependents before their owner (foreground, the `foregroundDeletion` finalizer), and orphans
dependents (the `orphan` finalizer), following ownerReferences as kube-controller-manager does.
"""

from __future__ import annotations

import copy
import logging

from skiff.api import meta
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import (
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    PODS,
    REPLICASETS,
    SERVICES,
    SLICES,
    STATEFULSETS,
)

log = logging.getLogger("skiff.controllers.gc")

# Owner kinds Skiff's controllers create dependents for, and the dependent kinds they own. Pods and
# EndpointSlices own nothing, but a foreground or orphan delete puts the finalizer on them too, and
# the collector is what removes it.
OWNERS = {"Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS, "DaemonSet": DAEMONSETS, "StatefulSet": STATEFULSETS,
          "Job": JOBS, "Service": SERVICES, "Pod": PODS, "EndpointSlice": SLICES}
DEPENDENTS = [REPLICASETS, PODS, SLICES]


async def run(ctx) -> None:
    client = ctx.client
    owners = {kind: ctx.informer(info) for kind, info in OWNERS.items()}
    deps = {info.plural: ctx.informer(info) for info in DEPENDENTS}
    queue = WorkQueue()  # keys: "dep|<plural>|<ns>/<name>" or "owner|<kind>|<ns>/<name>"

    def owner_alive(ref: dict, ns: str) -> bool | None:
        inf = owners.get(ref.get("kind", ""))
        if inf is None:
            return None  # an owner kind we do not track: leave the dependent alone
        o = inf.get(f"{ns}/{ref['name']}")
        return o is not None and o["metadata"].get("uid") == ref.get("uid")

    def dependents_of(owner: dict) -> list[tuple[str, dict]]:
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"].get("namespace")
        out = []
        for plural, inf in deps.items():
            for d in inf.list(ns):
                if any(r.get("uid") == uid for r in d["metadata"].get("ownerReferences") or []):
                    out.append((plural, d))
        return out

    def on_dep(plural: str):
        def handler(etype: str, obj: dict, old: dict | None) -> None:
            if etype != "DELETED" and obj["metadata"].get("ownerReferences"):
                queue.add(f"dep|{plural}|{meta.key_of(obj)}")
            if etype == "DELETED":
                for ref in obj["metadata"].get("ownerReferences") or []:
                    if ref.get("kind") in OWNERS:
                        queue.add(f"owner|{ref['kind']}|{obj['metadata'].get('namespace')}/{ref['name']}")
        return handler

    def on_owner(kind: str):
        def handler(etype: str, obj: dict, old: dict | None) -> None:
            if etype == "DELETED":
                if kind in ("Pod", "EndpointSlice"):
                    return  # they own nothing
                for plural, d in dependents_of(obj):
                    queue.add(f"dep|{plural}|{meta.key_of(d)}")
            elif obj["metadata"].get("deletionTimestamp"):
                queue.add(f"owner|{kind}|{meta.key_of(obj)}")
        return handler

    for plural, inf in deps.items():
        inf.add_handler(on_dep(plural))
    for kind, inf in owners.items():
        inf.add_handler(on_owner(kind))
    await ctx.wait_synced(*OWNERS.values(), *DEPENDENTS)
    for plural, inf in deps.items():
        for d in inf.list():
            if d["metadata"].get("ownerReferences"):
                queue.add(f"dep|{plural}|{meta.key_of(d)}")

    info_by_plural = {i.plural: i for i in DEPENDENTS}

    async def sync(key: str) -> None:
        what, type_name, okey = key.split("|", 2)
        ns, _, name = okey.rpartition("/")
        if what == "dep":
            inf = deps[type_name]
            d = inf.get(okey)
            if d is None or d["metadata"].get("deletionTimestamp"):
                return
            refs = d["metadata"].get("ownerReferences") or []
            states = [owner_alive(r, ns) for r in refs]
            if refs and all(s is False for s in states):
                # If an owner is being deleted in the foreground, block on this dependent as upstream does.
                try:
                    await client.delete(info_by_plural[type_name], ns, name, propagation="Background")
                except ClientError as e:
                    if e.code != 404:
                        raise
            return
        owner = owners[type_name].get(okey)
        if owner is None or not owner["metadata"].get("deletionTimestamp"):
            return
        finalizers = owner["metadata"].get("finalizers") or []
        children = dependents_of(owner)
        if "orphan" in finalizers:
            uid = owner["metadata"]["uid"]
            for plural, d in children:
                refs = [r for r in d["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                patch = [{"op": "replace", "path": "/metadata/ownerReferences", "value": refs}]
                try:
                    await client.patch(info_by_plural[plural], ns, d["metadata"]["name"], patch, "json")
                except ClientError as e:
                    if e.code != 404:
                        raise
            await _drop_finalizer(owner, "orphan")
        elif "foregroundDeletion" in finalizers:
            if children:
                for plural, d in children:
                    if not d["metadata"].get("deletionTimestamp"):
                        try:
                            await client.delete(info_by_plural[plural], ns, d["metadata"]["name"],
                                                propagation="Foreground")
                        except ClientError as e:
                            if e.code != 404:
                                raise
                queue.add_after(key, 0.2)
                return
            await _drop_finalizer(owner, "foregroundDeletion")

    async def _drop_finalizer(owner: dict, finalizer: str) -> None:
        new = copy.deepcopy(owner)
        new["metadata"]["finalizers"] = [f for f in owner["metadata"].get("finalizers") or [] if f != finalizer]
        info = OWNERS[owner["kind"]] if owner.get("kind") in OWNERS else None
        if info is None:
            return
        try:
            await client.replace(info, owner["metadata"].get("namespace"), owner["metadata"]["name"], new)
        except ClientError as e:
            if e.code not in (404, 409):
                raise
            if e.code == 409:
                queue.add_after(f"owner|{owner['kind']}|{meta.key_of(owner)}", 0.05)

    await run_workers(queue, sync, workers=4, name="garbagecollector")
