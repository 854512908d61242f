"""Starts the control-plane controllers with shared informers, like kube-controller-manager."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from skiff.api.resources import ResourceInfo
from skiff.client.informer import Informer
from skiff.client.rest import Client
from skiff.config import ClusterConfig

log = logging.getLogger("skiff.controllers")

# Each module exposes `async def run(ctx: Context) -> None`, which registers its informer handlers
# and then processes its work queue forever.
CONTROLLERS = [
    "skiff.scheduler.scheduler",
    "skiff.controllers.deployment",
    "skiff.controllers.replicaset",
    "skiff.controllers.job",
    "skiff.controllers.daemonset",
    "skiff.controllers.statefulset",
    "skiff.controllers.endpointslice",
    "skiff.controllers.endpointslicemirroring",
    "skiff.controllers.loadbalancer",
    "skiff.controllers.namespace",
    "skiff.controllers.garbagecollector",
    "skiff.controllers.nodelifecycle",
    "skiff.controllers.serviceaccount",
]


@dataclass
class Context:
    cfg: ClusterConfig
    state_dir: Path
    client: Client
    informers: dict[str, Informer] = field(default_factory=dict)

    def informer(self, info: ResourceInfo) -> Informer:
        """One shared informer per resource type, started on first use."""
        key = f"{info.group}/{info.plural}"
        inf = self.informers.get(key)
        if inf is None:
            inf = Informer(self.client, info)
            self.informers[key] = inf
            inf.start()
        return inf

    async def wait_synced(self, *infos: ResourceInfo) -> None:
        await asyncio.gather(*(self.informer(i).synced.wait() for i in infos))


@dataclass
class Running:
    ctx: Context
    tasks: list[asyncio.Task]
    crashed: list[str] = field(default_factory=list)


async def start_all(cfg: ClusterConfig, state_dir: Path, on_crash: Callable[[], None] | None = None) -> Running:
    """Start every controller. A controller whose loop raises is recorded in `crashed` and
    `on_crash` is called: the process is then meant to exit and be restarted whole."""
    client = Client.for_state_dir(state_dir, user_agent="skiff-controller-manager")
    ctx = Context(cfg, state_dir, client)
    running = Running(ctx, [])
    for mod_name in CONTROLLERS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                log.warning("controller %s is not available", mod_name)
                continue
            raise
        running.tasks.append(asyncio.get_running_loop().create_task(
            _guard(mod_name, mod.run(ctx), running, on_crash), name=mod_name))
    return running


async def _guard(name: str, coro: Awaitable[None], running: Running, on_crash: Callable[[], None] | None) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("controller %s crashed; the controller manager exits to be restarted", name)
        running.crashed.append(name)
        if on_crash is not None:
            on_crash()


async def stop_all(running: Running) -> None:
    for t in running.tasks:
        t.cancel()
    for inf in running.ctx.informers.values():
        await inf.stop()
    await asyncio.gather(*running.tasks, return_exceptions=True)
    await running.ctx.client.close()
