"""Informers (list + watch into a local cache) and work queues, after client-go's tools/cache.

A controller registers a handler, the informer keeps the cache current and calls the handler with
every change; the handler usually just enqueues a key. Reconcile loops read from the cache.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from skiff.api.meta import key_of
from skiff.api.resources import ResourceInfo
from skiff.client.rest import Client, ClientError

log = logging.getLogger("skiff.informer")

Handler = Callable[[str, dict, dict | None], Any]  # (event type, object, old object)


class Informer:
    def __init__(self, client: Client, info: ResourceInfo, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client = client
        self.info = info
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, dict] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._task: asyncio.Task | None = None

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.cache.values())
        return [o for o in self.cache.values() if o["metadata"].get("namespace") == namespace]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer-{self.info.plural}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _emit(self, etype: str, obj: dict, old: dict | None) -> None:
        for h in self.handlers:
            try:
                r = h(etype, obj, old)
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                log.exception("informer handler for %s failed", self.info.plural)

    async def _relist(self) -> None:
        lst = await self.client.list(self.info, self.namespace, self.label_selector, self.field_selector)
        fresh = {key_of(o): o for o in lst["items"]}
        for o in lst["items"]:
            o.setdefault("apiVersion", self.info.api_version)
            o.setdefault("kind", self.info.kind)
        old_cache = self.cache
        self.cache = fresh
        for k, o in fresh.items():
            prev = old_cache.get(k)
            if prev is None:
                await self._emit("ADDED", o, None)
            elif prev["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
                await self._emit("MODIFIED", o, prev)
        for k, o in old_cache.items():
            if k not in fresh:
                await self._emit("DELETED", o, None)
        self.resource_version = lst["metadata"]["resourceVersion"]
        self.synced.set()

    async def _run(self) -> None:
        backoff = 0.05
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for etype, obj in self.client.watch(self.info, self.namespace, self.resource_version,
                                                          self.label_selector, self.field_selector,
                                                          timeout_seconds=random.randint(300, 600)):
                    rv = obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if etype == "BOOKMARK":
                        continue
                    k = key_of(obj)
                    old = self.cache.get(k)
                    if etype == "DELETED":
                        self.cache.pop(k, None)
                        await self._emit("DELETED", obj, old)
                    else:
                        self.cache[k] = obj
                        await self._emit("ADDED" if old is None else "MODIFIED", obj, old)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except ClientError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.warning("watch %s failed: %s", self.info.plural, e)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception as e:  # connection loss: the API server restarting, for instance
                log.debug("watch %s interrupted: %s", self.info.plural, e)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


class WorkQueue:
    """A de-duplicating queue of keys. A key being processed and re-added is processed again once
    after the current run, never concurrently, as client-go's workqueue guarantees."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(0.005 * (2 ** n), 10.0))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    async def get(self) -> str:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)


async def run_workers(queue: WorkQueue, reconcile: Callable[[str], Awaitable[None]], workers: int = 1,
                      name: str = "controller") -> None:
    """Process keys forever; a failed reconcile is retried with exponential back-off."""
    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                await reconcile(key)
                queue.forget(key)
            except asyncio.CancelledError:
                raise
            except ClientError as e:
                if e.code == 409:
                    queue.add_after(key, 0.005)
                else:
                    log.warning("%s: reconcile %s failed: %s", name, key, e)
                    queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: reconcile %s failed", name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))
