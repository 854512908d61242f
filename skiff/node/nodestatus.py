"""The Node object and Lease a node agent registers and keeps renewing (pure: facts in, dicts out)."""

from __future__ import annotations

import math
import platform
import uuid
from dataclasses import dataclass

from skiff.config import ClusterConfig

KUBELET_VERSION = "v1.33.0-skiff"
RUNTIME_VERSION = "skiff://0.1.0"
KUBELET_PORT = 10250
LEASE_NAMESPACE = "kube-node-lease"
MAX_PODS = 110

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass
class MachineInfo:
    cpus: int
    memory_bytes: int
    disk_bytes: int
    kernel: str
    os_image: str
    arch: str


def machine_info(state_dir: str = "/") -> MachineInfo:
    """The host's facts, read once at start (every simulated node shares the machine)."""
    import os

    try:
        with open("/proc/meminfo") as f:
            mem = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem = 1 << 30
    try:
        st = os.statvfs(state_dir)
        disk = st.f_blocks * st.f_frsize
    except OSError:
        disk = 0
    os_image = "Linux"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return MachineInfo(cpus=os.cpu_count() or 1, memory_bytes=mem, disk_bytes=disk, kernel=platform.release(),
                       os_image=os_image, arch=_ARCH.get(platform.machine(), platform.machine()))


def node_labels(cfg: ClusterConfig, index: int, m: MachineInfo) -> dict[str, str]:
    labels = {
        "beta.kubernetes.io/arch": m.arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": m.arch,
        "kubernetes.io/hostname": cfg.node_name(index),
        "kubernetes.io/os": "linux",
    }
    if index == 0:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return labels


def node_spec(cfg: ClusterConfig, index: int) -> dict:
    cidr = cfg.node_pod_cidr(index)
    return {"podCIDR": cidr, "podCIDRs": [cidr]}


def _resources(m: MachineInfo) -> dict[str, str]:
    return {"cpu": str(m.cpus), "memory": f"{m.memory_bytes // 1024}Ki",
            "ephemeral-storage": f"{m.disk_bytes // 1024}Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
            "pods": str(MAX_PODS)}


_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def node_conditions(previous: list[dict] | None, now: str) -> list[dict]:
    """Healthy conditions with heartbeat `now`; lastTransitionTime kept where the status is unchanged."""
    prev = {c.get("type"): c for c in previous or []}
    out = []
    for ctype, status, reason, message in _CONDITIONS:
        p = prev.get(ctype) or {}
        since = p.get("lastTransitionTime") if p.get("status") == status and p.get("lastTransitionTime") else now
        out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since})
    return out


def node_status(cfg: ClusterConfig, index: int, m: MachineInfo, previous: list[dict] | None, now: str,
                boot_id: str = "") -> dict:
    res = _resources(m)
    # Each simulated node is its own machine: a stable identity of its own, as a kind node container has.
    machine_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"skiff:{cfg.name}/{cfg.node_name(index)}")
    return {
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip(index)},
                      {"type": "Hostname", "address": cfg.node_name(index)}],
        "capacity": dict(res),
        "allocatable": dict(res),
        "conditions": node_conditions(previous, now),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "architecture": m.arch, "bootID": boot_id, "containerRuntimeVersion": RUNTIME_VERSION,
            "kernelVersion": m.kernel, "kubeProxyVersion": "", "kubeletVersion": KUBELET_VERSION,
            "machineID": machine_uuid.hex, "operatingSystem": "linux", "osImage": m.os_image,
            "systemUUID": str(machine_uuid),
        },
    }


def without_heartbeats(status: dict) -> dict:
    """A Node status less what changes on every report (condition heartbeat times): what is left
    changes only when something about the node does."""
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                         for c in status.get("conditions") or []]
    return out


def node_object(cfg: ClusterConfig, index: int, m: MachineInfo, now: str, boot_id: str = "") -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.node_name(index), "labels": node_labels(cfg, index, m),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": node_spec(cfg, index),
        "status": node_status(cfg, index, m, None, now, boot_id),
    }


def lease_duration(cfg: ClusterConfig) -> int:
    return max(1, math.ceil(cfg.node_grace_seconds))


def lease_object(cfg: ClusterConfig, index: int, node_uid: str | None, renew_time: str) -> dict:
    name = cfg.node_name(index)
    md: dict = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": name, "leaseDurationSeconds": lease_duration(cfg),
                     "renewTime": renew_time}}


def needs_ready_assertion(node: dict | None) -> bool:
    """True when the Ready condition is not True (e.g. the node lifecycle controller set Unknown)."""
    for c in (node or {}).get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") != "True"
    return True
