"""The node agent: what kubelet and kube-proxy are on a real node, for one simulated node.

`skiff up` starts `python -m skiff node-agent --state-dir D --node I` inside node I's network
namespace. The agent registers its Node, renews its Lease, runs the pods bound to it
(skiff.node.kubelet), serves logs/exec/port-forward on <node IP>:10250 (skiff.node.streaming) and
programs Services into the node's nftables (skiff.node.proxyloop) and enforces NetworkPolicies
there (skiff.node.netpolloop). Built-in images start through
a fork server the agent keeps running beside it (skiff.node.forkserver). SIGTERM stops every pod and
removes its sandbox, then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable

from skiff.api import meta
from skiff.client.informer import Informer
from skiff.client.rest import Client, ClientError
from skiff.config import ClusterConfig
from skiff.controllers.base import LEASES, NODES, BackgroundEvents
from skiff.node import nodestatus, runtime
from skiff.node.forkserver import ForkServer
from skiff.node.kubelet import Kubelet, PodResolver

log = logging.getLogger("skiff.node.agent")

# "off" starts built-in images with nsenter like any program (to compare start costs, or to debug).
FORK_SERVER_ENV = "SKIFF_FORK_SERVER"

# How often the full node status (conditions' heartbeat) is written, as kubelet's
# nodeStatusReportFrequency; liveness itself is the Lease.
NODE_STATUS_PERIOD = 10.0
NODE_STATUS_REPORT = 300.0  # the kubelet's nodeStatusReportFrequency
START_EVENTS_DELAY = 3.0


class NodeAgent:
    def __init__(self, state_dir: str, node_index: int):
        self.state_dir = state_dir
        self.index = node_index
        self.cfg = ClusterConfig.load_dir(state_dir)
        self.name = self.cfg.node_name(node_index)
        self.client = Client.for_state_dir(state_dir, in_cluster=True, user_agent="skiff-node-agent")
        self.machine = nodestatus.machine_info(state_dir)
        self.boot_id = str(uuid.uuid4())
        self._status_written = 0.0  # monotonic time of the last Node status write
        self._start_events: BackgroundEvents | None = None  # held here: its task must outlive the call
        self.node_uid: str | None = None
        self.kubelet = Kubelet(self.client, self.cfg, node_index, state_dir)
        self.node_informer = Informer(self.client, NODES, field_selector=f"metadata.name={self.name}")
        self._reassert = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.streaming = None
        self.fork_server: ForkServer | None = None
        self._fork_server_task: asyncio.Task | None = None

    # ---- Node and Lease -----------------------------------------------------------------------------
    async def register(self) -> None:
        """Create the Node, or bring an existing one (agent restart) up to date; retries until the
        API answers."""
        delay = 0.05
        # The API server not answering yet is the normal start, not worth a warning; still not
        # answering after this long is.
        quiet_until = time.monotonic() + 10
        while True:
            try:
                await self._register_once()
                return
            except Exception as e:  # ClientError, TimeoutError, OSError and aiohttp's connection errors
                level = logging.DEBUG if time.monotonic() < quiet_until else logging.WARNING
                log.log(level, "registering node %s: %s", self.name, str(e) or repr(e))
            await asyncio.sleep(delay)
            # Agents start alongside the control plane: poll briskly, as that is seconds at most.
            delay = min(delay * 2, 0.2)

    async def _register_once(self) -> None:
        now = meta.now_rfc3339()
        obj = nodestatus.node_object(self.cfg, self.index, self.machine, now, self.boot_id)
        try:
            node = await self.client.create(NODES, None, obj)
        except ClientError as e:
            if e.code != 409:
                raise
            node = await self.client.get(NODES, None, self.name)
            md = node["metadata"]
            md.setdefault("labels", {}).update(obj["metadata"]["labels"])
            md.setdefault("annotations", {}).update(obj["metadata"]["annotations"])
            node.setdefault("spec", {}).update(obj["spec"])
            node = await self.client.replace(NODES, None, self.name, node)
        self.node_uid = node["metadata"].get("uid")
        await self.write_status(node)
        await self.renew_lease()

    async def write_status(self, node: dict | None = None, force: bool = True) -> None:
        """Write the Node's status. Unless `force`d, only when something in it changed, or every
        NODE_STATUS_REPORT seconds, as the kubelet does since node heartbeats moved to Leases: a
        status rewritten every 10 s for its heartbeat times alone is noise in `kubectl get nodes -w`."""
        node = node or self.node_informer.get(self.name) or await self.client.get(NODES, None, self.name)
        prev = (node.get("status") or {}).get("conditions")
        status = nodestatus.node_status(self.cfg, self.index, self.machine, prev, meta.now_rfc3339(), self.boot_id)
        if not force and time.monotonic() - self._status_written < NODE_STATUS_REPORT and \
                nodestatus.without_heartbeats(status) == nodestatus.without_heartbeats(node.get("status") or {}):
            return
        await self.client.patch(NODES, None, self.name, {"status": status}, "merge", sub="status")
        self._status_written = time.monotonic()

    async def renew_lease(self) -> None:
        ns = nodestatus.LEASE_NAMESPACE
        try:
            await self.client.patch(LEASES, ns, self.name,
                                    {"spec": {"renewTime": meta.now_micro(), "holderIdentity": self.name}})
        except ClientError as e:
            if e.code != 404:
                raise
            lease = nodestatus.lease_object(self.cfg, self.index, self.node_uid, meta.now_micro())
            try:
                await self.client.create(LEASES, ns, lease)
            except ClientError as e2:
                if e2.code != 409:
                    raise

    async def _lease_loop(self) -> None:
        period = max(0.05, self.cfg.node_grace_seconds / 4)
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew_lease()
            except Exception as e:
                log.warning("renewing lease of %s: %r", self.name, e)

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reassert.wait(), NODE_STATUS_PERIOD)
            self._reassert.clear()
            try:
                await self.write_status(force=False)
            except Exception as e:
                log.warning("node status of %s: %r", self.name, e)
                await asyncio.sleep(0.5)

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if etype == "DELETED":
            # Someone deleted our Node: register again, as the kubelet does.
            self._tasks.append(asyncio.get_running_loop().create_task(self.register()))
        elif nodestatus.needs_ready_assertion(node):
            self._reassert.set()

    # ---- run ---------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # First: it preloads the images' code while the agent registers; pods started before it is
        # ready simply go through nsenter.
        if os.environ.get(FORK_SERVER_ENV, "").lower() == "off":
            log.info("%s=off: built-in images start with nsenter", FORK_SERVER_ENV)
        else:
            self._fork_server_task = loop.create_task(self._keep_fork_server(), name="fork-server")
        await self.register()
        self._tasks += [loop.create_task(self._lease_loop(), name="lease"),
                        loop.create_task(self._status_loop(), name="node-status")]
        self.node_informer.add_handler(self._on_node)
        self.node_informer.start()
        await self._start_streaming()
        self._start_proxy()
        await self.kubelet.start()
        self._record_start_events()
        log.info("node %s ready", self.name)
        await stop.wait()
        await self.shutdown()

    def _record_start_events(self) -> None:
        """What a kubelet (and kube-proxy) report on the Node when they start, for `kubectl describe
        node`. Like the kubelet, the reference carries the node's name as its uid."""
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "uid": self.name}}
        # Written a few seconds later (with the time they happened): while a cluster starts, the API
        # server has better things to do, and `skiff up` waits on those.
        settled = time.monotonic() + START_EVENTS_DELAY
        events = self._start_events = BackgroundEvents(self.kubelet.recorder, busy=lambda: time.monotonic() < settled,
                                                       max_delay=START_EVENTS_DELAY, poll=0.2)
        events.record(node, "Normal", "Starting", "Starting kubelet.")
        for condition in ("NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID"):
            events.record(node, "Normal", condition, f"Node {self.name} status is now: {condition}")
        events.record(node, "Normal", "NodeAllocatableEnforced", "Updated Node Allocatable limit across pods")
        events.record(node, "Normal", "NodeReady", f"Node {self.name} status is now: NodeReady")

    async def _keep_fork_server(self) -> None:
        """Keep a fork server running (in this node's network namespace, as the agent is); while
        there is none, built-in images start with nsenter like any other program."""
        delay = 1.0
        while True:
            try:
                server = await ForkServer.start()
            except Exception as e:
                log.warning("no fork server (%s): built-in images start with nsenter", e)
            else:
                self.fork_server = server
                runtime.use_fork_server(server)
                delay = 1.0
                reason = await server.wait_lost()
                runtime.use_fork_server(None)
                self.fork_server = None
                log.warning("%s: built-in images start with nsenter until a new fork server is up", reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _stop_fork_server(self) -> None:
        if self._fork_server_task is not None:
            self._fork_server_task.cancel()
            await asyncio.gather(self._fork_server_task, return_exceptions=True)
        runtime.use_fork_server(None)
        if self.fork_server is not None:
            await self.fork_server.close()
            self.fork_server = None

    async def _start_streaming(self) -> None:
        try:
            from skiff.node.streaming import StreamingServer
        except ImportError as e:
            log.warning("streaming server not available (%s): no logs/exec/port-forward", e)
            return
        server = StreamingServer(self.cfg.node_ip(self.index), nodestatus.KUBELET_PORT, self.cfg.token,
                                 PodResolver(self.kubelet))
        try:
            await server.start()
            self.streaming = server
        except OSError as e:
            log.error("cannot serve on %s:%d: %s", self.cfg.node_ip(self.index), nodestatus.KUBELET_PORT, e)

    def _start_proxy(self) -> None:
        try:
            from skiff.node import netpolloop, proxyloop
        except ImportError as e:
            log.warning("service proxy not available (%s)", e)
            return

        async def guarded(what: str, loop_run: Awaitable[None]) -> None:
            try:
                await loop_run
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s stopped", what)

        loop = asyncio.get_running_loop()
        rotation = proxyloop.Rotation()
        self.kubelet.out_of_rotation = rotation.out_of_rotation
        self._tasks.append(loop.create_task(guarded("service proxy", proxyloop.run(
            self.client, self.cfg, self.name, self.cfg.node_ip(self.index), rotation)), name="proxy"))
        policies = netpolloop.NetworkPolicyLoop(self.client, self.name)
        self.kubelet.admit_pod_network = policies.admit
        self._tasks.append(loop.create_task(guarded("network policy", policies.run()), name="network-policy"))

    async def shutdown(self) -> None:
        log.info("node %s stopping", self.name)
        await self.kubelet.shutdown()
        await self._stop_fork_server()  # after the pods: closing it ends the containers it started
        if self.streaming is not None:
            with contextlib.suppress(Exception):
                await self.streaming.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.node_informer.stop()
        await self.client.close()


def _install_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    # Many container processes: a pidfd per child instead of a waiting thread per child.
    if sys.version_info < (3, 12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                watcher = asyncio.PidfdChildWatcher()
                watcher.attach_loop(loop)
                asyncio.set_child_watcher(watcher)
            except Exception as e:  # no pidfd_open (old kernel): keep the default watcher
                log.debug("pidfd child watcher unavailable: %r", e)


async def _amain(state_dir: str, node_index: int) -> None:
    loop = asyncio.get_running_loop()
    _install_child_watcher(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = NodeAgent(state_dir, node_index)
    await agent.run(stop)


def main(state_dir: str, node_index: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    asyncio.run(_amain(state_dir, node_index))
    sys.exit(0)
