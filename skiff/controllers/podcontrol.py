"""What the controllers that own pods by generated names (ReplicaSet, Job, DaemonSet) share, as
upstream's controller_utils: watching their pods with expectations, and creating and deleting pods
with the same Events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from skiff.api import meta
from skiff.client.rest import Client, ClientError
from skiff.controllers.base import PODS, EventRecorder


class Expectations:
    """Pods a controller created or deleted and has not yet seen in its cache: until it has, it does
    not count its pods again, so a burst of events never creates (or deletes) twice."""

    def __init__(self) -> None:
        self._adds: dict[str, tuple[int, float]] = {}
        self._dels: dict[str, tuple[set[str], float]] = {}

    def expect(self, key: str, adds: int = 0, dels: set[str] | None = None) -> None:
        if adds:
            self._adds[key] = (adds, time.monotonic())
        if dels:
            self._dels[key] = (set(dels), time.monotonic())

    def observed_add(self, key: str) -> None:
        if key in self._adds:
            n, t = self._adds[key]
            if n <= 1:
                del self._adds[key]
            else:
                self._adds[key] = (n - 1, t)

    def observed_delete(self, key: str, pod_name: str) -> None:
        if key in self._dels:
            names, _t = self._dels[key]
            names.discard(pod_name)
            if not names:
                del self._dels[key]

    def lower(self, key: str, adds: int) -> None:
        for _ in range(adds):
            self.observed_add(key)

    def satisfied(self, key: str) -> bool:
        now = time.monotonic()
        a = self._adds.get(key)
        d = self._dels.get(key)
        # Expectations expire, as upstream's do (5 min there; much shorter here, the cache is local).
        if a and now - a[1] > 10:
            self._adds.pop(key, None)
            a = None
        if d and now - d[1] > 10:
            self._dels.pop(key, None)
            d = None
        return a is None and d is None


def pod_handler(kind: str, exp: Expectations, enqueue: Callable[[str], None]) -> Callable[[str, dict, dict | None], None]:
    """An informer handler for pods: a pod whose controller is a `kind` queues its owner's key and
    counts towards the owner's expectations (seen created, seen deleted or deleting)."""

    def on_pod(etype: str, pod: dict, old: dict | None) -> None:
        ref = meta.controller_ref(pod)
        if not ref or ref.get("kind") != kind:
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        if etype == "ADDED":
            exp.observed_add(key)
        elif etype == "DELETED" or (pod["metadata"].get("deletionTimestamp")
                                    and not (old or {}).get("metadata", {}).get("deletionTimestamp")):
            exp.observed_delete(key, pod["metadata"]["name"])
        enqueue(key)

    return on_pod


async def create_and_delete(client: Client, recorder: EventRecorder, exp: Expectations, key: str, owner: dict,
                            create: list[dict], delete: list[str], field_manager: str) -> None:
    """Create the pods `create` and delete the pods named `delete` for `owner` (queue key `key`),
    expecting to see each, with SuccessfulCreate/FailedCreate/SuccessfulDelete Events. A failed
    create is raised once the rest are done, so that the work queue retries the key."""
    ns = owner["metadata"]["namespace"]
    failed: list[BaseException] = []
    if create:
        exp.expect(key, adds=len(create))
        results = await asyncio.gather(*(client.create(PODS, ns, body, field_manager=field_manager)
                                         for body in create), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                failed.append(r)
                exp.lower(key, 1)
                await recorder.record(owner, "Warning", "FailedCreate", f"Error creating: {r}")
            else:
                await recorder.record(owner, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
    if delete:
        exp.expect(key, dels=set(delete))
        for name in delete:
            try:
                await client.delete(PODS, ns, name)
                await recorder.record(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
            except ClientError as e:
                exp.observed_delete(key, name)
                if e.code != 404:
                    raise
    if failed:
        raise failed[0]
