"""Shared pieces of controllers: resource handles, event recording, pod readiness."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from skiff.api import meta
from skiff.api.resources import lookup
from skiff.client.rest import Client, ClientError

log = logging.getLogger("skiff.controllers")

PODS = lookup("", "v1", "pods")
SERVICES = lookup("", "v1", "services")
NODES = lookup("", "v1", "nodes")
NAMESPACES = lookup("", "v1", "namespaces")
EVENTS = lookup("", "v1", "events")
ENDPOINTS = lookup("", "v1", "endpoints")
LEASES = lookup("coordination.k8s.io", "v1", "leases")
DEPLOYMENTS = lookup("apps", "v1", "deployments")
REPLICASETS = lookup("apps", "v1", "replicasets")
JOBS = lookup("batch", "v1", "jobs")
DAEMONSETS = lookup("apps", "v1", "daemonsets")
STATEFULSETS = lookup("apps", "v1", "statefulsets")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
INGRESSES = lookup("networking.k8s.io", "v1", "ingresses")


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


def pod_is_ready(pod: dict) -> bool:
    c = meta.get_condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def pod_is_active(pod: dict) -> bool:
    return (pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp"))


async def replace_status(client: Client, info, obj: dict, queue) -> bool:
    """PUT obj's status subresource. A conflict (the object moved on) requeues the key shortly and a
    vanished object is not an error; both return False."""
    md = obj["metadata"]
    try:
        await client.replace(info, md.get("namespace"), md["name"], obj, sub="status")
        return True
    except ClientError as e:
        if e.code == 409:
            queue.add_after(meta.key_of(obj), 0.01)
            return False
        if e.code == 404:
            return False
        raise


async def write_status(client: Client, info, obj: dict, status: dict, queue) -> None:
    """Make obj's status `status`, its conditions kept, unless it already is (see replace_status)."""
    old = obj.get("status") or {}
    if status == {k: v for k, v in old.items() if k != "conditions"}:
        return
    new = copy.deepcopy(obj)
    new["status"] = {**status, **({"conditions": old["conditions"]} if old.get("conditions") else {})}
    await replace_status(client, info, new, queue)


class EventRecorder:
    """Writes core/v1 Events, aggregating repeats into a count as kube's recorder does."""

    def __init__(self, client: Client, component: str, host: str | None = None):
        self.client = client
        self.component = component
        self.host = host
        self._seen: dict[tuple, tuple[str, int]] = {}

    async def record(self, obj: dict, etype: str, reason: str, message: str, field_path: str | None = None,
                     at: float | None = None) -> None:
        """Write the Event (or count a repeat). `at` is when it happened (Unix time), if not now: an
        Event written later still sorts, by name and by time, where it happened."""
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        ref: dict[str, Any] = {"kind": obj.get("kind"), "namespace": md.get("namespace"), "name": md["name"],
                               "uid": md.get("uid"), "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": md.get("resourceVersion")}
        if field_path:
            ref["fieldPath"] = field_path
        key = (ns, md.get("uid"), reason, message, etype, field_path)
        when = time.time() if at is None else at
        now = meta.rfc3339(when)
        try:
            prev = self._seen.get(key)
            if prev is not None:
                name, count = prev
                try:
                    await self.client.patch(EVENTS, ns, name, {"count": count + 1, "lastTimestamp": now})
                    self._seen[key] = (name, count + 1)
                    return
                except ClientError:
                    pass
            source: dict[str, Any] = {"component": self.component}
            if self.host:
                source["host"] = self.host
            stamp = int(when * 1e9)
            ev = {
                "apiVersion": "v1", "kind": "Event",
                # Named like kube's recorder (<object>.<hex nanoseconds>), so listing order is creation order.
                "metadata": {"name": f"{md['name']}.{stamp:x}", "namespace": ns},
                "eventTime": None,
                "involvedObject": ref, "reason": reason, "message": message, "type": etype,
                "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host or "",
            }
            for _ in range(8):
                try:
                    created = await self.client.create(EVENTS, ns, ev)
                    break
                except ClientError as e:
                    # Two Events recorded back to back can share a stamp: a float time.time() resolves
                    # only ~240 ns today. The next free nanosecond keeps both, in order.
                    if e.code != 409:
                        raise
                    stamp += 1
                    ev["metadata"]["name"] = f"{md['name']}.{stamp:x}"
            else:
                raise ClientError(409, {"message": f"no free name for event {reason} on {md['name']}"})
            self._seen[key] = (created["metadata"]["name"], 1)
            if len(self._seen) > 4096:
                self._seen.clear()
        except ClientError as e:
            # Expected: a namespace being deleted refuses new Events (403), the object is gone (404).
            level = logging.DEBUG if e.code in (403, 404) else logging.WARNING
            log.log(level, "could not record event %s on %s: %s", reason, md["name"], e)


class BackgroundEvents:
    """Events written by one task, in order, without the recording code waiting for the API.

    While `busy()` says the component is in the middle of a burst (pods being placed or started),
    a queued Event waits, `max_delay` at most: the writes that make pods run and Ready go first,
    the Events that describe them follow a moment later. kube's event broadcaster is asynchronous
    and rate-limited in the same spirit; here nothing is dropped."""

    def __init__(self, recorder: EventRecorder, busy: Callable[[], bool] = lambda: False,
                 max_delay: float = 1.0, poll: float = 0.02) -> None:
        self.recorder = recorder
        self.busy = busy
        self.max_delay = max_delay
        self.poll = poll
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def record(self, obj: dict, etype: str, reason: str, message: str, field_path: str | None = None,
               at: float | None = None) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="events")
        self._queue.put_nowait((time.monotonic(), time.time() if at is None else at, obj, etype, reason, message,
                                field_path))

    async def _run(self) -> None:
        while True:
            queued, happened, obj, etype, reason, message, field_path = await self._queue.get()
            try:
                while self.busy() and time.monotonic() < queued + self.max_delay:
                    await asyncio.sleep(self.poll)
                await self.recorder.record(obj, etype, reason, message, field_path, at=happened)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("event %s: %r", reason, e)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Write what is queued (without waiting for quiet), for `timeout` at most, then stop."""
        self.busy = lambda: False
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                pass
            self._task.cancel()
            self._task = None
