"""Pod sandboxes: the per-pod network namespace, its veth into the node, and what holds them.

A sandbox is what a pod's containers share (the role of the CRI pod sandbox):

- a network namespace ``<node netns>.<namespace>.<pod>.<uid8>`` with loopback up and ``eth0``,
  a veth whose other end lives in the node's namespace. The pod has its IP as a /32 and a default
  route via the node's pod gateway (an address on the node's loopback); the node has a /32
  route to the pod on the veth. Created from the host or from inside the node's namespace alike:
  every command names its namespace (``ip -n``).
- a UTS namespace whose hostname is the pod's, and a mount namespace with the pod's resolv.conf,
  hosts and hostname bound over /etc, a /sys of the pod's network namespace, and the pod's volumes
  (VolumeMount: a host directory or file the kubelet filled, bind-mounted at its mountPath; a
  missing mountPath is made in a view private to the pod, never on the host: see
  skiff.node.podmounts).

The node agent normally makes all of that without starting a process, as CRI-O does without
infra containers: its fork server creates the three namespaces in-process and pins them with bind
mounts (the network one at /run/netns/<pod netns>, the others in the node's pin directory
/run/skiff/<node netns>/, a private tmpfs), with the /etc files next to the pins in
<pod netns>.etc/ (as a runtime keeps them in a sandbox's state directory); the agent wires the veth, addresses and routes with rtnetlink messages
(skiff.net.rtnl). Containers and exec sessions join the pins (Sandbox.ns_path). With no process
per sandbox and no file on disk, a sandbox costs a fraction of the CPU, which is what a burst of
new pods waits on.

A hostNetwork pod's sandbox (create_host_network_sandbox) is the node's network namespace with a
UTS and a mount namespace of its own, pinned the same way under the pod's sandbox name; removing
it kills only what runs in its mount namespace and unpins those two.

Without a fork server (or if that path fails) `ip` does the same, with a holder process:
``ip netns add``, /etc/netns/<pod netns>/ files that ``ip netns exec`` bind-mounts over /etc,
and ``sleep infinity`` in the pod's network namespace, that mount namespace and its own UTS
namespace, started detached (not our child) like the pause container.

Usage (async, from the node agent's event loop):

    sb = await create_sandbox(node_netns, pod_uid, "web", "default", ip, gateway, resolv, hosts,
                              mounts=[VolumeMount("/var/lib/.../token", "/var/run/secrets/...", read_only=True)])
    ...
    await destroy_sandbox(sb)          # or destroy_sandbox_netns(node_netns, netns) for orphans
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from skiff.net import names
from skiff.net.ipcmd import CommandError, ip_batch, run
from skiff.net.ns import (
    ETC_NETNS_DIR,
    kill_namespace_processes,
    kill_netns_processes,
    list_netns,
    netns_exists,
    netns_path,
    ns_pin_path,
    pin_dir,
    remove_netns_pin,
    remove_ns_pins,
    set_sysctls,
)
from skiff.net.rtnl import Rtnl
from skiff.node.forkserver import (
    ForkServer,
    ForkServerError,
    MountFailed,
    SpawnFailed,
    child_env,
    volume_helper_argv,
)

log = logging.getLogger(__name__)

# Sets the UTS hostname with a shell builtin (no `hostname` process), reports its pid, becomes sleep.
_PAUSE_SCRIPT = 'printf %s "$0" > /proc/sys/kernel/hostname && echo $$ && exec sleep infinity >/dev/null 2>&1'


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class VolumeMount:
    """A volume as the pod's containers see it: `source` (an absolute host path: a directory, or a
    file for a subPath that is one) bind-mounted at `target` (an absolute path in the pod, a
    volumeMount's mountPath). A directory shows the source's live contents (the kubelet's atomic
    symlink swaps included); `read_only` mounts refuse writes (EROFS)."""

    source: str
    target: str
    read_only: bool = False


def plan_mounts(mounts: Iterable[VolumeMount]) -> list[VolumeMount]:
    """`mounts` in the order to make them: each before those mounted inside it (a stable sort, so of
    two at the same target the later one ends up on top), exact duplicates once. Raises
    SandboxError, naming the volume's target, for a path that is not absolute."""
    unique = list(dict.fromkeys(mounts))
    for m in unique:
        for what, path in (("target", m.target), ("source", m.source)):
            if not os.path.isabs(path):
                raise SandboxError(f'volume mount at "{m.target}": the {what} {path!r} is not an absolute path')
    return sorted(unique, key=lambda m: [part for part in os.path.normpath(m.target).split("/") if part])


@dataclass
class Sandbox:
    netns: str
    node_netns: str
    pod_uid: str
    pod_name: str
    namespace: str
    ip: str
    gateway: str
    hostname: str
    host_veth: str  # the veth end inside the node's namespace
    pause_pid: int  # the process holding the namespaces; 0 when they are pinned
    created_at: float = 0.0
    # PID 1 of the PID namespace its containers share (shareProcessNamespace), else 0.
    pid_holder: int = 0

    @property
    def pinned(self) -> bool:
        """No process holds the namespaces: bind mounts do (skiff.net.ns.ns_pin_path)."""
        return self.pause_pid == 0

    @property
    def host_network(self) -> bool:
        return self.netns == self.node_netns

    @property
    def pin_name(self) -> str:
        """The name its UTS and mount namespaces are pinned under: its network namespace's, or for a
        hostNetwork pod (which shares the node's) the name that one would have had."""
        if self.host_network:
            return names.pod_netns_name(self.node_netns, self.namespace, self.pod_name, self.pod_uid)
        return self.netns

    @property
    def netns_path(self) -> str:
        return netns_path(self.netns)

    def ns_path(self, kind: str) -> str:
        """Path of one of the sandbox's namespaces ("uts", "mnt", "net"; "pid" when its containers
        share one): its pin, or the holder's /proc entry."""
        if kind == "pid":
            if not self.pid_holder:
                raise ValueError(f"the containers of sandbox {self.netns} share no PID namespace")
            return f"/proc/{self.pid_holder}/ns/pid"
        if kind == "net" and self.host_network:
            return self.netns_path
        if self.pinned:
            return ns_pin_path(self.pin_name, kind)
        return f"/proc/{self.pause_pid}/ns/{kind}"

    def is_alive(self) -> bool:
        """The sandbox's namespaces are still there to join (pinned, or held by its process)."""
        try:
            if self.pinned:
                nsfs = os.stat("/proc/self/ns/net").st_dev
                return all(os.stat(self.ns_path(kind)).st_dev == nsfs for kind in ("net", "uts", "mnt"))
            return os.stat(self.ns_path("net")).st_ino == os.stat(self.netns_path).st_ino
        except OSError:
            return False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Sandbox:
        return cls(**data)


def write_pod_etc(netns: str, resolv_conf: str, hosts: str, hostname: str) -> str:
    """Write the files `ip netns exec` bind-mounts over /etc for this pod; returns the directory."""
    directory = os.path.join(ETC_NETNS_DIR, netns)
    os.makedirs(directory, exist_ok=True)
    for filename, content in (("resolv.conf", resolv_conf), ("hosts", hosts), ("hostname", hostname + "\n")):
        path = os.path.join(directory, filename)
        # Rewrite in place: a running pod sees the bind-mounted inode, not a replacement file.
        with open(path, "w") as f:
            f.write(content)
    return directory


async def _start_pause(netns: str, hostname: str) -> int:
    # setsid --fork: the pause process is re-parented to init, so it is never our zombie and
    # lives on when the agent restarts.
    argv = ["setsid", "--fork", "ip", "netns", "exec", netns, "unshare", "--uts",
            "sh", "-c", _PAUSE_SCRIPT, hostname]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    line = out.decode().strip()
    if not line.isdigit():
        raise SandboxError(f"could not start the sandbox process for {netns}: {err.decode().strip()}")
    return int(line)


class _NodeLinks:
    """One rtnetlink socket per node namespace, reopened when the namespace behind the name changes.
    A lock serializes its users: sandboxes are created on the event loop and removed on threads."""

    def __init__(self) -> None:
        self._sockets: dict[str, tuple[int, Rtnl]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, node_netns: str) -> Iterator[Rtnl]:
        with self._lock:
            ident = os.stat(netns_path(node_netns)).st_ino
            known = self._sockets.get(node_netns)
            if known is None or known[0] != ident:
                if known is not None:
                    known[1].close()
                known = (ident, Rtnl.in_netns(node_netns))
                self._sockets[node_netns] = known
            try:
                yield known[1]
            except OSError:
                # A fresh socket next time, in case this one went stale.
                self._sockets.pop(node_netns, None)
                known[1].close()
                raise


_node_links = _NodeLinks()


def wire_pod_network(node_netns: str, netns: str, veth: str, ip: str, gateway: str) -> None:
    """The veth, addresses and routes of a sandbox whose namespace exists, by rtnetlink (what the
    two `ip -batch` runs of the fallback path do)."""
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _node_links.use(node_netns) as node:
            node.add_veth(veth, "eth0", fd, up=True)
        # The kernel creates a veth's far end down (it cannot be brought up in the same request).
        # It goes up before the node's route is added: that request looks the veth up, which makes
        # the kernel settle the veth's pending link state at once, and while the far end is down
        # that state is "no carrier", whose handling waits for an RCU grace period under the RTNL
        # lock.
        with Rtnl.in_netns_fd(fd, netns) as pod, pod.batch():
            pod.set_up("lo")
            pod.add_address("eth0", f"{ip}/32")
            pod.set_up("eth0")
            pod.add_route(f"{gateway}/32", dev="eth0", scope="link")
            pod.add_route("default", via=gateway, dev="eth0")
        with _node_links.use(node_netns) as node:
            node.add_route(f"{ip}/32", dev=veth, scope="link", proto=names.ROUTE_PROTO)
    finally:
        os.close(fd)


def _etc_files(resolv_conf: str, hosts: str, hostname: str) -> dict[str, str]:
    """The kubelet-managed files bound over the pod's /etc (name -> content)."""
    return {"resolv.conf": resolv_conf, "hosts": hosts, "hostname": hostname + "\n"}


# What containerd 2.x (kind's runtime) sets in every pod network namespace: processes that are not
# root may bind ports below 1024 and send ICMP echo (ping) with a datagram socket.
POD_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}


async def _create_pinned(server: ForkServer, node_netns: str, netns: str, veth: str, ip: str, gateway: str,
                         resolv_conf: str, hosts: str, hostname: str, mounts: Sequence[VolumeMount]) -> None:
    """The fork server's way: pinned namespaces, wired by rtnetlink."""
    pins = {kind: ns_pin_path(netns, kind) for kind in ("net", "uts", "mnt")}
    await server.sandbox(netns, pins, pin_dir(node_netns), _etc_files(resolv_conf, hosts, hostname), hostname, [asdict(m) for m in mounts],
                         sysctls=POD_SYSCTLS)
    wire_pod_network(node_netns, netns, veth, ip, gateway)


async def _mount_in_holder(pause_pid: int, mounts: Sequence[VolumeMount]) -> None:
    """The fallback's way to mount volumes: a helper process joins the holder's mount namespace and
    mounts them as the fork server does (joining a mount namespace takes a single-threaded process,
    which the agent is not). Raises SandboxError with the helper's reason."""
    proc = await asyncio.create_subprocess_exec(
        *volume_helper_argv(pause_pid), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=child_env(), cwd="/")
    _, err = await proc.communicate(json.dumps([asdict(m) for m in mounts]).encode())
    if proc.returncode != 0:
        raise SandboxError(err.decode(errors="replace").strip() or f"the volume helper exited with {proc.returncode}")


def ip_wiring(netns: str, veth: str, ip: str, gateway: str) -> tuple[list[str], list[str]]:
    """The `ip -batch` lines that do what wire_pod_network does: (in the node's namespace, in the pod's)."""
    node = [
        f"link add {veth} type veth peer name eth0 netns {netns}",
        f"link set {veth} up",
        f"route add {ip}/32 dev {veth} scope link proto {names.ROUTE_PROTO}",
    ]
    pod = [
        "link set lo up",
        f"addr add {ip}/32 dev eth0",
        "link set eth0 up",
        f"route add {gateway}/32 dev eth0 scope link",
        f"route add default via {gateway} dev eth0",
    ]
    return node, pod


async def _create_with_ip(node_netns: str, netns: str, veth: str, ip: str, gateway: str, hostname: str) -> int:
    await run(["ip", "netns", "add", netns])
    await asyncio.to_thread(set_sysctls, netns, POD_SYSCTLS, True)
    pause = asyncio.ensure_future(_start_pause(netns, hostname))
    try:
        node_lines, pod_lines = ip_wiring(netns, veth, ip, gateway)
        await ip_batch(node_lines, node_netns)
        await ip_batch(pod_lines, netns)
    finally:
        pause_pid = await pause
    return pause_pid


async def create_sandbox(
    node_netns: str,
    pod_uid: str,
    pod_name: str,
    namespace: str,
    ip: str,
    gateway: str,
    resolv_conf: str,
    hosts: str,
    hostname: str | None = None,
    fork_server: ForkServer | None = None,
    mounts: Sequence[VolumeMount] = (),
) -> Sandbox:
    """Create a pod's sandbox on the node whose network namespace is `node_netns`.

    `ip` comes from the node's IPAM, `gateway` is the node's pod gateway (first address of its pod
    CIDR). `hostname` defaults to the pod name (pod.spec.hostname when set). `mounts` are the pod's
    volumes, mounted in its mount namespace (parents before what is mounted inside them, whatever
    their order here). With a live `fork_server` no process is started (see the module
    docstring). On failure everything created so far is removed and the error re-raised; a volume
    that cannot be mounted raises SandboxError naming its source and target.
    """
    started = time.monotonic()
    planned = plan_mounts(mounts)
    hostname = hostname or pod_name
    netns = names.pod_netns_name(node_netns, namespace, pod_name, pod_uid)
    veth = names.pod_veth_name(netns)
    if not netns_exists(node_netns):
        raise SandboxError(f"node network namespace {node_netns} does not exist")
    if netns_exists(netns):
        # A previous attempt died half-way; start clean.
        await destroy_sandbox_netns(node_netns, netns)
    pause_pid = None
    if can_pin_sandboxes(fork_server, node_netns):
        try:
            await _create_pinned(fork_server, node_netns, netns, veth, ip, gateway, resolv_conf, hosts, hostname,
                                 planned)
            pause_pid = 0
        except MountFailed as exc:
            # The other way would fail alike.
            await destroy_sandbox_netns(node_netns, netns)
            raise SandboxError(f"failed to create the sandbox of pod {namespace}/{pod_name}: {exc}") from exc
        except (ForkServerError, SpawnFailed, OSError) as exc:
            log.warning("sandbox %s through the fork server failed (%s); using ip", netns, exc)
            await destroy_sandbox_netns(node_netns, netns)
        except BaseException:
            await destroy_sandbox_netns(node_netns, netns)
            raise
    if pause_pid is None:
        write_pod_etc(netns, resolv_conf, hosts, hostname)
        try:
            pause_pid = await _create_with_ip(node_netns, netns, veth, ip, gateway, hostname)
            if planned:
                await _mount_in_holder(pause_pid, planned)
        except (CommandError, SandboxError, OSError) as exc:
            await destroy_sandbox_netns(node_netns, netns)
            raise SandboxError(f"failed to create the sandbox of pod {namespace}/{pod_name}: {exc}") from exc
        except BaseException:
            await destroy_sandbox_netns(node_netns, netns)
            raise
    sb = Sandbox(
        netns=netns, node_netns=node_netns, pod_uid=pod_uid, pod_name=pod_name, namespace=namespace,
        ip=ip, gateway=gateway, hostname=hostname, host_veth=veth, pause_pid=pause_pid,
        created_at=time.time(),
    )
    elapsed = time.monotonic() - started
    if elapsed > 1.0:
        # Worth knowing when a node is overloaded; a sandbox normally takes a few ms.
        log.warning("sandbox %s took %.0f ms", netns, elapsed * 1000)
    return sb


def _destroy_sync(node_netns: str, netns: str) -> None:
    kill_netns_processes([netns])
    veth = names.pod_veth_name(netns)
    # Deleting the veth also drops the node's /32 route to the pod, right away.
    try:
        with _node_links.use(node_netns) as node:
            node.delete_link(veth)
    except OSError:
        subprocess.run(["ip", "-n", node_netns, "link", "del", veth], capture_output=True)
    try:
        remove_netns_pin(netns)
    except OSError:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    with contextlib.suppress(OSError):
        remove_ns_pins(netns)
    shutil.rmtree(os.path.join(ETC_NETNS_DIR, netns), ignore_errors=True)


async def destroy_sandbox_netns(node_netns: str, netns: str) -> None:
    """Kill everything in the pod's namespace and remove it, its veth and its /etc/netns files.

    Safe to call again, and for sandboxes whose Sandbox object was lost (agent restart).
    """
    await asyncio.to_thread(_destroy_sync, node_netns, netns)


async def destroy_sandbox(sandbox: Sandbox) -> None:
    if sandbox.host_network:
        await destroy_host_network_sandbox(sandbox)
    else:
        await destroy_sandbox_netns(sandbox.node_netns, sandbox.netns)


def can_pin_sandboxes(server: ForkServer | None, node_netns: str) -> bool:
    """Whether sandboxes on this node can be made the fork server's way (pinned, no process)."""
    return server is not None and server.alive and os.path.ismount(pin_dir(node_netns))


async def create_host_network_sandbox(server: ForkServer | None, node_netns: str, pod_uid: str, pod_name: str,
                                      namespace: str, node_ip: str, resolv_conf: str, hosts: str, hostname: str,
                                      mounts: Sequence[VolumeMount] = ()) -> Sandbox:
    """A hostNetwork pod's sandbox: the node's network namespace, with a UTS namespace of its own
    (the node's hostname, as a hostNetwork pod on Kubernetes sees) and a mount namespace with the
    /etc files and volumes, pinned as any pod's are. Needs a live fork server; raises SandboxError
    (nothing left behind) when it cannot be made."""
    if server is None or not can_pin_sandboxes(server, node_netns):
        raise SandboxError("a hostNetwork pod's own namespaces need the node's fork server")
    planned = plan_mounts(mounts)
    key = names.pod_netns_name(node_netns, namespace, pod_name, pod_uid)
    pins = {kind: ns_pin_path(key, kind) for kind in ("uts", "mnt")}
    remove_ns_pins(key)  # a previous attempt's, if it died half-way
    try:
        await server.sandbox(key, pins, pin_dir(node_netns), _etc_files(resolv_conf, hosts, hostname), hostname, [asdict(m) for m in planned],
                             join_net=netns_path(node_netns))
    except (ForkServerError, SpawnFailed, OSError) as exc:
        raise SandboxError(f"failed to create the sandbox of pod {namespace}/{pod_name}: {exc}") from exc
    return Sandbox(netns=node_netns, node_netns=node_netns, pod_uid=pod_uid, pod_name=pod_name, namespace=namespace,
                   ip=node_ip, gateway="", hostname=hostname, host_veth="", pause_pid=0, created_at=time.time())


def _destroy_host_network_sync(sandbox: Sandbox) -> None:
    # Only what is in the pod's own UTS namespace, which all its containers and exec sessions
    # join (containers have mount namespaces of their own): the node's network namespace stays
    # untouched.
    kill_namespace_processes(sandbox.ns_path("uts"), "uts")
    remove_ns_pins(sandbox.pin_name)


async def destroy_host_network_sandbox(sandbox: Sandbox) -> None:
    """Kill what is left in a hostNetwork sandbox and unpin its UTS and mount namespaces."""
    if sandbox.pinned:  # not the agent's own namespaces (no fork server): nothing of its own
        await asyncio.to_thread(_destroy_host_network_sync, sandbox)


def list_sandbox_netns(node_netns: str) -> list[str]:
    """Pod namespaces present on a node, e.g. to remove orphans after an agent restart."""
    return [ns for ns in list_netns() if names.is_pod_netns(ns) and names.node_of_netns(ns) == node_netns]
