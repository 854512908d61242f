"""Pod status from what the node knows about its containers (pure: records in, status dict out).

The node agent keeps one `ContainerRecord` per container; `pod_status` turns them, with the
sandbox's addresses, into `status` as the kubelet reports it: phase, the five conditions,
containerStatuses and initContainerStatuses. The phase rules follow the kubelet's getPhase.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime

WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """One container of the pod, as the node agent sees it right now."""

    name: str
    image: str  # canonical reference, e.g. docker.io/library/nginx:latest
    state: str = WAITING
    reason: str | None = None  # waiting: ContainerCreating/PodInitializing/CrashLoopBackOff/...; terminated
    message: str | None = None
    container_id: str | None = None  # without the skiff:// prefix
    image_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    last_terminated: dict | None = None  # the `terminated` dict of the previous instance
    sidecar: bool = False  # an init container with restartPolicy Always

    def terminate(self, exit_code: int, started_at: float | None, finished_at: float, reason: str | None = None,
                  message: str | None = None) -> None:
        self.state = TERMINATED
        self.exit_code = exit_code
        self.started_at = started_at
        self.finished_at = finished_at
        self.reason = reason or ("Completed" if exit_code == 0 else "Error")
        self.message = message
        self.ready = False
        self.started = False

    def terminated_dict(self) -> dict:
        d: dict = {"exitCode": self.exit_code if self.exit_code is not None else 0, "reason": self.reason,
                   "startedAt": rfc3339(self.started_at), "finishedAt": rfc3339(self.finished_at)}
        if self.message:
            d["message"] = self.message
        if self.signal:
            d["signal"] = self.signal
        if self.container_id:
            d["containerID"] = f"skiff://{self.container_id}"
        return d

    def to_status(self) -> dict:
        if self.state == RUNNING:
            state: dict = {"running": {"startedAt": rfc3339(self.started_at)}}
        elif self.state == TERMINATED:
            state = {"terminated": self.terminated_dict()}
        else:
            w: dict = {"reason": self.reason or "ContainerCreating"}
            if self.message:
                w["message"] = self.message
            state = {"waiting": w}
        st: dict = {
            "name": self.name, "state": state, "lastState": {"terminated": copy.deepcopy(self.last_terminated)}
            if self.last_terminated else {},
            "ready": self.ready, "restartCount": self.restart_count, "image": self.image,
            "imageID": self.image_id, "started": self.started,
        }
        if self.container_id:
            st["containerID"] = f"skiff://{self.container_id}"
        return st


@dataclass
class PodView:
    """Everything besides the containers that status depends on."""

    host_ip: str
    pod_ip: str | None = None
    sandbox_ready: bool = False  # network namespace up with its IP (PodReadyToStartContainers)
    start_time: float | None = None
    terminating: bool = False
    # Set when the pod failed as a whole (e.g. a failed init container with restartPolicy Never).
    reason: str | None = None
    message: str | None = None
    readiness_gates_ok: bool = True
    extra: dict = field(default_factory=dict)


def init_done(c: ContainerRecord) -> bool:
    """An init container lets the next ones start: it completed, or (a sidecar) it has started."""
    return c.started if c.sidecar else (c.state == TERMINATED and c.exit_code == 0)


def pod_phase(spec: dict, inits: list[ContainerRecord], containers: list[ContainerRecord]) -> str:
    policy = spec.get("restartPolicy") or "Always"
    for c in inits:
        if c.sidecar:
            continue
        if c.state == TERMINATED and c.exit_code == 0:
            continue
        if c.state == TERMINATED and policy == "Never":
            return "Failed"
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for c in containers:
        if c.state == RUNNING:
            running += 1
        elif c.state == TERMINATED:
            stopped += 1
            if c.exit_code == 0:
                succeeded += 1
        elif c.last_terminated is not None:
            # Waiting to restart (CrashLoopBackOff): it has run, so it counts as stopped.
            stopped += 1
            if c.last_terminated.get("exitCode") == 0:
                succeeded += 1
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict:
    c: dict = {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def pod_conditions(phase: str, view: PodView, inits: list[ContainerRecord], containers: list[ContainerRecord]
                   ) -> list[dict]:
    terminal = phase in ("Succeeded", "Failed")
    conds = [_condition("PodReadyToStartContainers", view.sandbox_ready)]

    pending_inits = [c.name for c in inits if not init_done(c)]
    if terminal and phase == "Succeeded":
        conds.append(_condition("Initialized", True, "PodCompleted"))
    elif pending_inits:
        conds.append(_condition("Initialized", False, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(pending_inits)}]"))
    else:
        conds.append(_condition("Initialized", True))

    if terminal:
        reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        ready = _condition("Ready", False, reason)
        containers_ready = _condition("ContainersReady", False, reason)
    else:
        unready = [c.name for c in inits if c.sidecar and not c.ready]
        unready += [c.name for c in containers if not c.ready]
        if unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            containers_ready = _condition("ContainersReady", False, "ContainersNotReady", msg)
            ready = _condition("Ready", False, "ContainersNotReady", msg)
        elif not view.readiness_gates_ok:
            containers_ready = _condition("ContainersReady", True)
            ready = _condition("Ready", False, "ReadinessGatesNotReady", "corresponding condition of pod readiness "
                               "gate is not ready")
        else:
            containers_ready = _condition("ContainersReady", True)
            ready = _condition("Ready", True)
    conds += [ready, containers_ready]
    return conds


def pod_status(pod: dict, view: PodView, inits: list[ContainerRecord], containers: list[ContainerRecord],
               now: float) -> dict:
    """The pod's whole status. lastTransitionTime is kept from the pod's current status for
    conditions whose status did not change; the scheduler's PodScheduled condition is kept as is."""
    spec = pod.get("spec", {})
    old = pod.get("status", {}) or {}
    phase = pod_phase(spec, inits, containers)
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    conds = pod_conditions(phase, view, inits, containers)
    stamp = rfc3339(now)
    for c in conds:
        prev = old_conds.get(c["type"])
        c["lastTransitionTime"] = prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"] \
            and prev.get("lastTransitionTime") else stamp
    # Readiness gates and PodScheduled belong to others: carry them over.
    own = {c["type"] for c in conds}
    conds += [copy.deepcopy(c) for t, c in old_conds.items() if t not in own]

    status: dict = {"phase": phase, "conditions": conds, "hostIP": view.host_ip,
                    "hostIPs": [{"ip": view.host_ip}]}
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.start_time is not None:
        status["startTime"] = rfc3339(view.start_time)
    if old.get("qosClass"):
        status["qosClass"] = old["qosClass"]
    if view.reason:
        status["reason"] = view.reason
    if view.message:
        status["message"] = view.message
    if inits:
        status["initContainerStatuses"] = [c.to_status() for c in inits]
    status["containerStatuses"] = [c.to_status() for c in containers]
    return status


def status_patch(old: dict, new: dict) -> dict:
    """A JSON merge patch turning status `old` into `new` (keys gone from `new` become null)."""
    patch: dict = {k: v for k, v in new.items() if old.get(k) != v}
    for k in old:
        if k not in new:
            patch[k] = None
    return patch
