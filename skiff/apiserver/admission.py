"""Admission for Services: ClusterIP and NodePort allocation, as kube-apiserver's service REST storage does.

The allocators' bitmaps are persisted in the store (like kube's RangeAllocation objects) a moment
after each change; at start-up they are restored and a repair pass compares them with the live
Services, logging leaks and rebuilding from the Services, which are the source of truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from skiff.api import errors
from skiff.api.resources import ResourceInfo, lookup
from skiff.apiserver.allocators import IPAllocator, PortAllocator, ServiceAllocations
from skiff.store.interface import KeyExists

if TYPE_CHECKING:
    from skiff.apiserver.server import APIServer

log = logging.getLogger("skiff.apiserver.admission")
RANGES_KEY = "/registry/ranges/services"
SERVICES = lookup("", "v1", "services")


class ServiceAdmission:
    def __init__(self, server: APIServer):
        self.server = server
        cfg = server.cfg
        self.alloc = ServiceAllocations(IPAllocator(cfg.service_cidr), PortAllocator(cfg.node_port_range))
        self._persist_task: asyncio.Task | None = None
        self.repair_messages: list[str] = []

    async def load(self) -> None:
        store = self.server.store
        kv = await store.get(RANGES_KEY)
        if kv is not None:
            try:
                self.alloc.restore(json.loads(kv.value))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable allocation snapshot: %s", e)
        services, _, _ = await self.server.registry.list(SERVICES, None)
        self.repair_messages = self.alloc.repair(services)
        for msg in self.repair_messages:
            log.warning("repair: %s", msg)
        await self._persist()

    async def _persist(self) -> None:
        store = self.server.store
        data = json.dumps(self.alloc.snapshot(), separators=(",", ":")).encode()
        kv = await store.get(RANGES_KEY)
        if kv is None:
            try:
                await store.create(RANGES_KEY, data)
                return
            except KeyExists:
                kv = await store.get(RANGES_KEY)
        if kv is not None and kv.value != data:
            await store.update(RANGES_KEY, data)

    def _schedule_persist(self) -> None:
        # Debounced: many creates in a burst cost one snapshot write. A crash before it lands loses
        # nothing, because repair rebuilds the bitmaps from the Services at start-up.
        if self._persist_task is None or self._persist_task.done():
            async def later() -> None:
                await asyncio.sleep(0.2)
                try:
                    await self._persist()
                except Exception:
                    log.exception("persisting service allocations")
            self._persist_task = asyncio.get_running_loop().create_task(later())

    async def admit(self, info: ResourceInfo, new: dict, old: dict | None, dry_run: bool
                    ) -> Callable[[], None] | None:
        if info is not SERVICES:
            return None
        if old is None:
            errs = self.alloc.allocate_create(new)
            def undo():
                return (self.alloc.release(new))
        else:
            errs = self.alloc.allocate_update(new, old)
            def undo():
                return (self.alloc.rollback_update(new, old))
        if errs:
            raise errors.invalid_object("Service", "", new["metadata"].get("name", ""), errs)
        if not dry_run:
            self._schedule_persist()
        return undo

    async def on_deleted(self, info: ResourceInfo, obj: dict) -> None:
        if info is SERVICES:
            self.alloc.release(obj)
            self._schedule_persist()
