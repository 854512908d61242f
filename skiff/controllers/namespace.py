"""Namespace controller: when a namespace is deleted, delete everything in it, then finalize it."""

from __future__ import annotations

import copy
import logging

from skiff.api import meta
from skiff.api.resources import RESOURCES
from skiff.client.informer import WorkQueue, run_workers
from skiff.client.rest import ClientError
from skiff.controllers.base import NAMESPACES

log = logging.getLogger("skiff.controllers.namespace")
# events.k8s.io events are the same objects as core events; deleting them once is enough.
CONTENT = [r for r in RESOURCES if r.namespaced and not (r.group == "events.k8s.io")]


async def run(ctx) -> None:
    client = ctx.client
    namespaces = ctx.informer(NAMESPACES)
    queue = WorkQueue()
    namespaces.add_handler(lambda t, o, old: queue.add(o["metadata"]["name"])
                           if t != "DELETED" and o["metadata"].get("deletionTimestamp") else None)
    await ctx.wait_synced(NAMESPACES)

    async def sync(name: str) -> None:
        ns = namespaces.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for info in CONTENT:
            items = (await client.list(info, name))["items"]
            for item in items:
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await client.delete(info, name, item["metadata"]["name"], propagation="Background")
                except ClientError as e:
                    if e.code != 404:
                        raise
        if remaining:
            queue.add_after(name, 0.1)
            return
        new = copy.deepcopy(ns)
        new.setdefault("spec", {})["finalizers"] = []
        try:
            await client.replace(NAMESPACES, None, name, new, sub="finalize")
        except ClientError as e:
            if e.code not in (404, 409):
                raise
            if e.code == 409:
                queue.add_after(name, 0.05)
        log.info("namespace %s finalized at %s", name, meta.now_rfc3339())

    await run_workers(queue, sync, workers=2, name="namespace")
