"""The kubelet part of the node agent: runs the pods bound to this node.

One `PodWorker` per pod UID (never two for the same pod) drives its pod to the desired state:
sandbox (network namespace + IP) → init containers one by one → all containers, each supervised
by its own task that applies the restart policy with CrashLoopBackOff back-off and runs the
container's probes. Status goes back to the API through `pods/<name>/status`, only when it
changed and debounced so that a burst of changes costs one write. When the pod is deleted the
worker stops the containers gracefully, removes the sandbox, releases the IP and finally deletes
the object with gracePeriodSeconds=0 and a UID precondition, as the kubelet does.

`PodResolver` answers the streaming server's questions (logs, exec, port-forward) about pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from skiff.api.resources import lookup
from skiff.client.informer import Informer
from skiff.client.rest import Client, ClientError
from skiff.config import ClusterConfig
from skiff.controllers.base import PODS, SERVICES, BackgroundEvents, EventRecorder
from skiff.dns.resolvconf import hosts_file, kernel_hostname, resolv_conf
from skiff.images.registry import (
    ImageNotFound,
    InvalidImageName,
    NoCommandSpecified,
    canonical_reference,
    resolve,
)
from skiff.net import names
from skiff.net.ipam import PodIPAM
from skiff.net.ns import (
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    detach_mounts_under,
    ensure_pin_dir,
    mount,
    remove_pin_dir,
)
from skiff.net.plan import pod_gateway
from skiff.node import envvars, lifecycle, pidns, probes, runtime, securitycontext, volumes
from skiff.node.atomicwriter import write_payload
from skiff.node.podstatus import (
    RUNNING,
    TERMINATED,
    WAITING,
    ContainerRecord,
    PodView,
    init_done,
    pod_phase,
    pod_status,
    rfc3339,
    status_patch,
)
from skiff.node.runtime import ContainerProcess, ContainerStartError, exec_in_container, start_container
from skiff.node.sandbox import (
    Sandbox,
    SandboxError,
    VolumeMount,
    can_pin_sandboxes,
    create_host_network_sandbox,
    create_sandbox,
    destroy_sandbox,
    destroy_sandbox_netns,
    list_sandbox_netns,
)
from skiff.node.volumeownership import set_volume_ownership

log = logging.getLogger("skiff.kubelet")

CONFIGMAPS = lookup("", "v1", "configmaps")
SECRETS = lookup("", "v1", "secrets")
_VOLUME_OBJECTS = {"configmaps": CONFIGMAPS, "secrets": SECRETS}  # what volumes show, by plural

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
# A back-off entry untouched for this long is forgotten: a container that ran for 10 minutes
# restarts right away again.
BACKOFF_RESET = 600.0
# Status writes are delayed this long so that a burst of changes costs one write.
STATUS_DEBOUNCE = 0.01
# A starting pod goes Pending -> sandbox -> Running -> Ready in a few ms when the node is idle, but
# each step is a status write when it is busy (a burst of new pods), and every write is paid again
# by each watcher of pods. So the first write waits, for this long at most, until the pod has
# settled: every container running and its first readiness known, or something to report (an
# error, a back-off, an exit).
FIRST_STATUS_HOLD = 1.0


class Backoff:
    """The kubelet's per-container back-off: the first restart is immediate, then 10 s doubling
    to 300 s, counted from the moment the container exited (so a container that runs for a while
    before it fails still waits its whole back-off), and forgotten after it ran 10 minutes."""

    def __init__(self) -> None:
        self.delay: float | None = None
        self.last: float = 0.0  # when the container was last restarted

    def _expired(self, finished: float) -> bool:
        return self.delay is None or finished - self.last > BACKOFF_RESET

    def wait_time(self, now: float, finished: float) -> float:
        if self._expired(finished):
            return 0.0
        return max(0.0, finished + self.delay - now)

    def record_restart(self, now: float, finished: float) -> None:
        self.delay = BACKOFF_INITIAL if self._expired(finished) else min(self.delay * 2, BACKOFF_MAX)
        self.last = now


def go_duration(seconds: float) -> str:
    """Seconds as Go prints a time.Duration of whole seconds: 40s, 1m20s, 5m0s."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def fake_image_id(canonical: str) -> str:
    """There is no registry, so no real digest: a stable one derived from the reference."""
    repo = canonical.split("@")[0].rsplit(":", 1)[0] if "/" in canonical else canonical
    return f"{repo}@sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _canonical(image: str) -> str:
    try:
        return canonical_reference(image)
    except InvalidImageName:
        return image


def _pod_label(pod: dict) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace', '')}({md.get('uid', '')})"


DRAIN_SECONDS = 0.5
# At most this long for the node's proxy to take a terminating pod out of rotation, before the drain.
ROTATION_WAIT_SECONDS = 5.0
# The sandbox image a runtime runs as the PID 1 of a pod that shares its PID namespace (containerd
# 2.x's default).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
EXIT_SHOWN_SECONDS = 1.0  # a crashed container's exit stays in its status this long before its back-off
POST_START_TIMEOUT = 3600.0  # the kubelet sets none; a hook that never returns holds its container back


def _grace(pod: dict) -> float:
    md = pod["metadata"]
    if md.get("deletionGracePeriodSeconds") is not None:
        return float(md["deletionGracePeriodSeconds"])
    g = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return float(30 if g is None else g)


# How long a mount that failed waits before the next try, as the kubelet's volume manager backs off
# (500 ms doubling to about 2 minutes); a change to a referenced object wakes it at once.
MOUNT_RETRY_INITIAL = 0.5
MOUNT_RETRY_MAX = 122.0
# The kubelet refreshes a projected token after 80% of its lifetime, or once it is 24 h old.
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE = 24 * 3600.0
EMPTY_DIR_MODE = 0o777  # as the kubelet makes them: any container user may write
# Volume payloads smaller than this are written on the event loop: a thread hop costs more.
INLINE_WRITE_BYTES = 64 * 1024


def check_host_path(path: str, path_type: str) -> None:
    """The kubelet's hostPath checks, and the creation DirectoryOrCreate/FileOrCreate ask for;
    raises VolumeError with its messages. Blocking (file system)."""
    if ".." in path.split("/"):
        raise volumes.VolumeError(f"invalid HostPath `{path}`: must not contain '..'")
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise volumes.VolumeError(f"hostPath type check failed: {path}: {e.strerror}") from None
    if not path_type:
        if st is None:
            # No type asked: the container runtime makes a missing source a directory.
            os.makedirs(path, 0o755, exist_ok=True)
        return
    if path_type == "DirectoryOrCreate" and st is None:
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        except OSError as e:
            raise volumes.VolumeError(f"mkdir {path}: {e.strerror.lower()}") from None
        return
    if path_type == "FileOrCreate" and st is None:
        try:  # like the kubelet, the file only: its directory must exist
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        except OSError as e:
            raise volumes.VolumeError(f"open {path}: {e.strerror.lower()}") from None
        return
    tests = {"Directory": (stat.S_ISDIR, "a directory"), "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
             "File": (stat.S_ISREG, "a file"), "FileOrCreate": (stat.S_ISREG, "a file"),
             "Socket": (stat.S_ISSOCK, "a socket file"), "CharDevice": (stat.S_ISCHR, "a character device"),
             "BlockDevice": (stat.S_ISBLK, "a block device")}
    if path_type not in tests:
        raise volumes.VolumeError(f"{path_type} is an invalid volume type")
    test, what = tests[path_type]
    if st is None or not test(st.st_mode):
        raise volumes.VolumeError(f"hostPath type check failed: {path} is not {what}")


def _make_volume_dir(path: str, kind: str, fs_group: int | None = None) -> None:
    """A volume's directory, if missing (an emptyDir writable by any container user, as the kubelet
    makes them, and owned by the pod's fsGroup if it has one; the atomic writer fills the others)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        if kind == volumes.EMPTY_DIR:
            os.chmod(path, EMPTY_DIR_MODE)
            if fs_group is not None:
                set_volume_ownership(path, fs_group, read_only=False)


class PodVolumes:
    """The host side of one pod's volumes: a directory per volume under the node's state, their
    files written and kept current (referenced objects changing, the pod's labels changing, tokens
    coming up for refresh), and the mounts handed to the sandbox."""

    def __init__(self, worker: PodWorker):
        self.w = worker
        self.k = worker.k
        self.root = self.k.volume_root / worker.uid
        self.disk_root = self.k.empty_dir_root / worker.uid
        self.tokens: dict[str, tuple[str, float, float]] = {}  # key -> (token, refresh at, expires at)
        self.dirty = asyncio.Event()  # something a volume shows may have changed
        cms, secs = volumes.referenced_objects(worker.pod)
        ns = worker.namespace
        self.refs = {("configmaps", ns, n) for n in cms} | {("secrets", ns, n) for n in secs}
        self.shows_metadata = volumes.uses_pod_metadata(worker.pod)
        self._task: asyncio.Task | None = None

    def path_of(self, volume: dict) -> str:
        kind = volumes.volume_kind(volume)
        if kind == volumes.HOST_PATH:
            return volume["hostPath"].get("path", "")
        root = self.disk_root if kind == volumes.EMPTY_DIR else self.root
        return str(root / volumes.PLUGIN_DIRS[kind] / volume.get("name", ""))

    async def sync(self) -> dict[str, str]:
        """Bring every volume up to date; what failed, by volume name (the kubelet's error text)."""
        errors: dict[str, str] = {}
        fetched: dict[tuple[str, str], dict | None] = {}
        for v in volumes.pod_volumes(self.w.pod):
            name = v.get("name", "")
            try:
                await self._sync_one(v, fetched)
            except (volumes.VolumeError, OSError, ValueError) as e:
                errors[name] = str(e)
        return errors

    async def sync_and_report(self) -> bool:
        """sync(), with a FailedMount event per volume that failed; whether all of them worked."""
        errors = await self.sync()
        for name, message in errors.items():
            self.k.event(self.w.pod, "Warning", "FailedMount",
                         f'MountVolume.SetUp failed for volume "{name}" : {message}')
        return not errors

    async def _sync_one(self, v: dict, fetched: dict[tuple[str, str], dict | None]) -> None:
        kind = volumes.volume_kind(v)
        path = self.path_of(v)
        if kind == volumes.EMPTY_DIR:
            # medium: Memory is a plain directory too: the node's state is all Skiff has to give.
            _make_volume_dir(path, kind, securitycontext.fs_group(self.w.pod))
            return
        if kind == volumes.HOST_PATH:
            await asyncio.to_thread(check_host_path, path, v["hostPath"].get("type") or "")
            return
        cms, secs = volumes.referenced_objects({"spec": {"volumes": [v]}})
        for plural, names_ in (("configmaps", cms), ("secrets", secs)):
            for n in names_:
                if (plural, n) not in fetched:
                    fetched[(plural, n)] = await self.k.volume_object(plural, self.w.namespace, n)
        tokens: dict[str, str] = {}
        token_errors: dict[str, str] = {}
        for src in volumes.token_sources({"spec": {"volumes": [v]}}):
            try:
                tokens[src.key] = await self._token(src)
            except volumes.VolumeError as e:
                token_errors[src.key] = str(e)
        payload = volumes.render(self.w.pod_with_ips(), v,
                                 {n: o for (p, n), o in fetched.items() if p == "configmaps"},
                                 {n: o for (p, n), o in fetched.items() if p == "secrets"},
                                 tokens, self.k.allocatable, token_errors)
        fs_group = securitycontext.fs_group(self.w.pod)
        if sum(len(f.data) for f in payload.values()) < INLINE_WRITE_BYTES:
            changed = write_payload(path, payload)  # a few small files: cheaper than a hop to a thread
        else:
            changed = await asyncio.to_thread(write_payload, path, payload)
        if changed and fs_group is not None:
            # Each write is a new version directory: its files get the group again.
            await asyncio.to_thread(set_volume_ownership, path, fs_group, True)

    async def _token(self, src: volumes.TokenSource) -> str:
        """A token for a serviceAccountToken source, from the TokenRequest API, reused until it is
        due for refresh; a refresh that fails keeps the old token while it is valid, as the kubelet's
        token manager does."""
        now = time.time()
        held = self.tokens.get(src.key)
        if held is not None and now < held[1]:
            return held[0]
        pod = self.w.pod
        spec: dict = {"expirationSeconds": src.expiration_seconds,
                      "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.w.name, "uid": self.w.uid}}
        if src.audience:
            spec["audiences"] = [src.audience]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        path = f"/api/v1/namespaces/{quote(self.w.namespace)}/serviceaccounts/{quote(account)}/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            answer = await self.k.client.request("POST", path, body=body)
            token = answer["status"]["token"]
            expires = _parse_ts(answer["status"]["expirationTimestamp"])
        except (ClientError, KeyError, TypeError) as e:
            if held is not None and now < held[2]:
                return held[0]
            why = (e.status.get("message") or str(e)) if isinstance(e, ClientError) else "no token in the answer"
            raise volumes.VolumeError(f"failed to fetch token: {why}") from None
        ttl = float((answer.get("spec") or {}).get("expirationSeconds") or src.expiration_seconds)
        issued = expires - ttl
        refresh = min(issued + TOKEN_REFRESH_FRACTION * ttl, issued + TOKEN_MAX_AGE)
        self.tokens[src.key] = (token, refresh, expires)
        return token

    def next_refresh(self) -> float | None:
        return min((t[1] for t in self.tokens.values()), default=None)

    def early_mounts(self) -> list[VolumeMount] | None:
        """The sandbox's mounts before any volume has contents, with each volume's directory made;
        None when a mount depends on contents (a subPath, a hostPath whose type is checked first)
        or the plan is refused (sync reports why)."""
        try:
            kinds = [(v, volumes.volume_kind(v)) for v in volumes.pod_volumes(self.w.pod)]
            plans = volumes.plan_mounts(self.w.pod, {})
        except (volumes.VolumeError, volumes.MountError):
            return None
        if any(p.sub_path for p in plans) or any(kind == volumes.HOST_PATH for _, kind in kinds):
            return None
        for v, kind in kinds:
            _make_volume_dir(self.path_of(v), kind, securitycontext.fs_group(self.w.pod))
        return self.mounts({})

    def mounts(self, envs: dict[str, dict[str, str]]) -> list[VolumeMount]:
        """The sandbox's mounts: each plan's host path (a subPath resolved to what it is now, so
        that, as in Kubernetes, it never follows updates)."""
        by_name = {v.get("name", ""): v for v in volumes.pod_volumes(self.w.pod)}
        out: list[VolumeMount] = []
        for plan in volumes.plan_mounts(self.w.pod, envs):
            base = self.path_of(by_name[plan.volume])
            source = base
            if plan.sub_path:
                real_base = os.path.realpath(base)
                source = os.path.realpath(os.path.join(base, plan.sub_path))
                if source != real_base and not source.startswith(real_base.rstrip("/") + "/"):
                    raise volumes.MountError(f'subPath "{plan.sub_path}" of volume "{plan.volume}" is outside '
                                             "the volume (a symlink leads out of it)")
                if not os.path.lexists(source):
                    # The kubelet makes a missing subPath a directory, with the volume's permissions.
                    os.makedirs(source, exist_ok=True)
                    os.chmod(source, os.stat(real_base).st_mode & 0o7777)
            out.append(VolumeMount(source=source, target=plan.target, read_only=plan.read_only))
        return out

    def start_keeping(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"volumes-{self.w.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _keep(self) -> None:
        """Rewrite the files when what they show changes; subPath mounts keep what they had."""
        retry = MOUNT_RETRY_INITIAL
        while True:
            refresh = self.next_refresh()
            timeout = None if refresh is None else max(0.0, refresh - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), timeout)
            self.dirty.clear()
            if not await self.sync_and_report():
                await asyncio.sleep(retry)
                retry = min(retry * 2, MOUNT_RETRY_MAX)
                self.dirty.set()
            else:
                retry = MOUNT_RETRY_INITIAL

    def remove(self) -> None:
        """The pod's volume directories (never a hostPath: those are the host's). Blocking."""
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.disk_root, ignore_errors=True)


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict):
        self.k = kubelet
        self.pod = pod
        md = pod["metadata"]
        self.uid: str = md["uid"]
        self.namespace: str = md.get("namespace", "default")
        self.name: str = md["name"]
        spec = pod.get("spec", {})
        has_inits = bool(spec.get("initContainers"))
        default_reason = "PodInitializing" if has_inits else "ContainerCreating"
        previous = {c.get("name"): c for c in (pod.get("status", {}).get("containerStatuses") or [])
                    + (pod.get("status", {}).get("initContainerStatuses") or [])}

        def record(c: dict, init: bool) -> ContainerRecord:
            rec = ContainerRecord(name=c["name"], image=_canonical(c.get("image", "")), reason=default_reason,
                                  sidecar=init and c.get("restartPolicy") == "Always")
            prev = previous.get(c["name"])
            if prev and ("running" in (prev.get("state") or {}) or "terminated" in (prev.get("state") or {})):
                # The agent restarted and its containers died with it: the next instance is a restart.
                rec.restart_count = int(prev.get("restartCount") or 0) + 1
                st = prev.get("state") or {}
                started = (st.get("running") or st.get("terminated") or {}).get("startedAt")
                rec.last_terminated = st.get("terminated") or {
                    "exitCode": 255, "reason": "Unknown", "startedAt": started,
                    "finishedAt": rfc3339(time.time())}
            return rec

        self.inits = [record(c, True) for c in spec.get("initContainers") or []]
        self.containers = [record(c, False) for c in spec.get("containers") or []]
        self.view = PodView(host_ip=kubelet.node_ip)
        self.sandbox: Sandbox | None = None
        self.pid_holder: ContainerProcess | None = None  # the pause process of a shared PID namespace
        self.procs: dict[str, ContainerProcess] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.creds: dict[str, securitycontext.Credentials | None] = {}  # who each container runs as
        self.images: dict[str, str] = {}  # the image each container's current run was started from
        self.instances: dict[str, int] = {}  # container -> restart count of its newest log file
        self.probe_workers: dict[str, list[probes.ProbeWorker]] = {}
        self.backoffs: dict[str, Backoff] = {}
        self.runners: dict[str, asyncio.Task] = {}
        self.terminal = False
        self.removed = False  # gone from the API
        self._stop = asyncio.Event()
        # While the pod terminates: when its grace period ends (monotonic), and a signal that it now
        # ends sooner (a second delete with a shorter grace period, or the object removed).
        self._kill_deadline: float | None = None
        self._grace_shrunk = asyncio.Event()
        self._dirty = asyncio.Event()
        self._last_written: dict = dict(pod.get("status") or {})
        self._written_rv = 0
        self._task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._hold_until = 0.0  # loop time until which the first status write may wait (see _settling)
        self.volumes: PodVolumes | None = PodVolumes(self) if volumes.pod_volumes(pod) else None

    # ---- lookups ------------------------------------------------------------------------------------
    def spec_of(self, name: str) -> tuple[dict, bool]:
        spec = self.pod.get("spec", {})
        for c in spec.get("initContainers") or []:
            if c["name"] == name:
                return c, True
        for c in spec.get("containers") or []:
            if c["name"] == name:
                return c, False
        raise KeyError(name)

    def record_of(self, name: str) -> ContainerRecord | None:
        for rec in self.inits + self.containers:
            if rec.name == name:
                return rec
        return None

    @property
    def log_dir(self) -> str:
        return str(self.k.log_root / f"{self.namespace}_{self.name}_{self.uid}")

    def log_path(self, container: str, instance: int) -> str:
        return os.path.join(self.log_dir, container, f"{instance}.log")

    # ---- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.inits and not self.pod.get("status", {}).get("containerStatuses"):
            self._hold_until = loop.time() + FIRST_STATUS_HOLD
            self.k.starting.add(self.uid)
        self._task = loop.create_task(self._run(), name=f"pod-{self.namespace}/{self.name}")
        self._status_task = loop.create_task(self._status_loop(), name=f"status-{self.namespace}/{self.name}")

    def update(self, pod: dict) -> None:
        old_md, self.pod = self.pod.get("metadata") or {}, pod
        md = pod.get("metadata") or {}
        if self.volumes is not None and self.volumes.shows_metadata and (
                old_md.get("labels") != md.get("labels") or old_md.get("annotations") != md.get("annotations")):
            self.volumes.dirty.set()
        rv = _rv(pod)
        if rv > self._written_rv and _cond_status(pod, "Ready") != _cond_status({"status": self._last_written},
                                                                                  "Ready"):
            # Someone else (the node lifecycle controller) rewrote our status: assert ours again.
            self._last_written = dict(pod.get("status") or {})
            self.mark_dirty()
        if pod["metadata"].get("deletionTimestamp"):
            self._stop.set()
            self._shorten_grace(_grace(pod))

    def gone(self) -> None:
        self.removed = True
        self._stop.set()
        self._shorten_grace(0)

    def _shorten_grace(self, grace: float) -> None:
        """A termination under way ends by now + `grace` if that is sooner, as the kubelet honours a
        shorter grace period given while a pod is already terminating."""
        if self._kill_deadline is not None and time.monotonic() + grace < self._kill_deadline:
            self._kill_deadline = time.monotonic() + grace
            self._grace_shrunk.set()

    async def _until_deadline(self, fut: asyncio.Future, deadline: Callable[[], float], floor: float = 0.0) -> bool:
        """Wait for `fut` until `deadline()` (or `floor`, if later), which a shorter grace period may move
        earlier meanwhile: whether `fut` finished."""
        while not fut.done():
            self._grace_shrunk.clear()
            remaining = max(deadline(), floor) - time.monotonic()
            if remaining <= 0:
                break
            shrunk = asyncio.ensure_future(self._grace_shrunk.wait())
            await asyncio.wait({fut, shrunk}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            shrunk.cancel()
        return fut.done()

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        status = self.pod.get("status", {})
        if status.get("phase") in ("Succeeded", "Failed"):
            # Finished before this agent started: nothing runs; wait for the object to go.
            self.terminal = True
            await self._stop.wait()
            await self._finish(delete_object=not self.removed)
            return
        life = asyncio.get_running_loop().create_task(self._live())
        stop = asyncio.get_running_loop().create_task(self._stop.wait())
        try:
            await asyncio.wait({life, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not life.done():
            life.cancel()
            with contextlib.suppress(BaseException):
                await life
        elif life.exception() is not None:
            log.error("pod %s/%s failed: %r", self.namespace, self.name, life.exception())
        if not self._stop.is_set():
            # Terminal (Succeeded/Failed): tear the sandbox down, keep the object and its logs.
            await self._teardown(grace=_grace(self.pod))
            await self._stop.wait()
        await self._finish(delete_object=not self.removed and not self.k.shutting_down)

    async def _finish(self, delete_object: bool) -> None:
        if not self.terminal or self.sandbox is not None or self.procs:
            await self._teardown(grace=min(_grace(self.pod), self.k.shutdown_grace) if self.k.shutting_down
                                 else _grace(self.pod))
        if self._status_task is not None and not self.removed and not self.k.shutting_down:
            await self._flush_status()
        if self._status_task is not None:
            self._status_task.cancel()
        if delete_object:
            try:
                await self.k.client.delete(PODS, self.namespace, self.name, grace_period=0,
                                           preconditions={"uid": self.uid})
            except ClientError as e:
                if e.code not in (404, 409):
                    log.warning("deleting pod %s/%s: %s", self.namespace, self.name, e)
        if not self.k.shutting_down:
            # The pod is gone for good: so are its logs, as kubelet removes /var/log/pods/<pod>.
            # (An agent that stops keeps them, for `kubectl logs --previous` after its restart, and
            # its volumes, so that an emptyDir outlives the restart as it outlives a kubelet's.)
            await asyncio.to_thread(shutil.rmtree, self.log_dir, True)
            if self.volumes is not None:
                await asyncio.to_thread(self.volumes.remove)
        self.k.forget(self)

    async def _teardown(self, grace: float) -> None:
        """Stop every container (regular ones first, then init/sidecars), then the sandbox."""
        self._kill_deadline = time.monotonic() + grace
        for task in self.runners.values():
            task.cancel()
        for ws in self.probe_workers.values():
            for w in ws:
                w.stop()
        was_serving = any(rec.ready for rec in self.containers)
        if was_serving and grace > 0 and not self.k.shutting_down:
            # The pod stays Ready while it terminates, as on a real cluster: its endpoint turns
            # ready=false, terminating=true (out of rotation) and serving=true (still a fallback when
            # no endpoint is ready). Waiting a moment before stopping the processes lets that reach
            # every node's proxy first, so that deleting a pod takes it out of rotation before it stops
            # answering (what a preStop sleep does on a real cluster). On a loaded machine that can
            # take longer than DRAIN_SECONDS, so the wait starts once this node's own proxy has done it
            # (every proxy gets the same watch events at about the same time), within the grace period.
            deadline = time.monotonic() + grace
            ip = self.view.pod_ip
            if self.k.out_of_rotation is not None and ip and self.sandbox is not None and not self.sandbox.host_network:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.k.out_of_rotation(ip), min(ROTATION_WAIT_SECONDS, grace))
            await asyncio.sleep(max(0.0, min(DRAIN_SECONDS, deadline - time.monotonic())))
        regular = [r.name for r in self.containers if r.name in self.procs]
        others = [r.name for r in self.inits if r.name in self.procs]
        for group in (regular, others):
            await asyncio.gather(*(self._kill(name, grace, "Stopping container " + name) for name in group))
        for task in self.runners.values():
            with contextlib.suppress(BaseException):
                await task
        self.runners.clear()
        if self.volumes is not None:
            await self.volumes.stop()
        await self._destroy_sandbox()
        self.terminal = True
        self.mark_dirty()

    def _exec_fn(self, name: str):
        """How hooks and probes run a command in container `name`."""
        sb, env, creds = self.sandbox, self.envs.get(name, {}), self.creds.get(name)
        image = self.images.get(name)

        async def run_exec(argv, timeout: float):
            assert sb is not None
            proc = self.procs.get(name)
            return await exec_in_container(sb, list(argv), env, timeout=timeout, creds=creds, image=image,
                                           namespaces=proc.namespaces if proc is not None else None)
        return run_exec

    async def _kill(self, name: str, grace: float, message: str) -> None:
        proc = self.procs.get(name)
        if proc is None or not proc.running:
            return
        c, init = self.spec_of(name)
        fp = self._field_path(name, init)
        self.k.event(self.pod, "Normal", "Killing", message, fp)
        # The pod's termination has one deadline for all its containers (and a shorter grace period
        # given meanwhile moves it); a container killed on its own (liveness) has its own.
        own = time.monotonic() + grace
        terminating = self._kill_deadline is not None

        def deadline() -> float:
            return self._kill_deadline if terminating and self._kill_deadline is not None else own
        hook = (c.get("lifecycle") or {}).get("preStop")
        if hook and deadline() > time.monotonic() and self.sandbox is not None:
            # The hook spends the grace period; one still running when it is over is abandoned.
            run = asyncio.ensure_future(lifecycle.run_handler(hook, self.sandbox.ip, c, self._exec_fn(name),
                                                              deadline() - time.monotonic()))
            if not await self._until_deadline(run, deadline):
                run.cancel()
            elif not run.result()[0]:  # the hook's output stays out of the Event: it may hold secrets
                self.k.event(self.pod, "Warning", "FailedPreStopHook", "PreStopHook failed", fp)
        proc.signal(signal.SIGTERM)
        exited = asyncio.ensure_future(proc.wait())
        floor = 0.0 if self.k.shutting_down else time.monotonic() + lifecycle.MIN_STOP_GRACE
        if not await self._until_deadline(exited, deadline, floor=floor):
            proc.signal(signal.SIGKILL)
        code = await exited
        rec = self.record_of(name)
        if rec is not None and rec.state == RUNNING:
            rec.terminate(code, proc.started_at, proc.finished_at or time.time())
        self.procs.pop(name, None)
        self.mark_dirty()

    async def _destroy_sandbox(self) -> None:
        sb, self.sandbox = self.sandbox, None
        self.view.sandbox_ready = False
        holder, self.pid_holder = self.pid_holder, None
        if holder is not None:
            # Its namespace's processes go with it. Needed even where destroy_sandbox kills nothing:
            # a hostNetwork pod without a fork server runs in the agent's own namespaces.
            holder.signal(signal.SIGKILL)
            await holder.wait()
        if sb is not None:
            await destroy_sandbox(sb)  # a hostNetwork one: its own namespaces only, never the node's
        if not self.pod.get("spec", {}).get("hostNetwork"):
            self.k.ipam.release(self.uid)

    # ---- running ------------------------------------------------------------------------------------
    async def _live(self) -> None:
        self.view.start_time = time.time() if not self.pod.get("status", {}).get("startTime") else \
            _parse_ts(self.pod["status"]["startTime"])
        self.mark_dirty()
        await self._create_sandbox()
        if pidns.mode_of(self.pod) == pidns.POD:
            await self._share_process_namespace()
        self.mark_dirty()
        for rec in self.inits:
            c, _ = self.spec_of(rec.name)
            task = asyncio.get_running_loop().create_task(self._supervise(rec, c, init=True))
            self.runners[rec.name] = task
            if rec.sidecar:
                while not rec.started and not task.done():
                    await asyncio.wait({task}, timeout=0.05)
                if task.done() and not init_done(rec):
                    return
                continue
            await task
            if not init_done(rec):
                return  # failed with restartPolicy Never: the pod is Failed
        # The containers keep waiting as PodInitializing until they start (the kubelet's default
        # reason for a pod with init containers), so `kubectl get pods` shows Init:N/M, PodInitializing,
        # Running.
        self.mark_dirty()
        for rec in self.containers:
            c, _ = self.spec_of(rec.name)
            self.runners[rec.name] = asyncio.get_running_loop().create_task(self._supervise(rec, c, init=False))
        await asyncio.gather(*(self.runners[r.name] for r in self.containers), return_exceptions=True)

    async def _create_sandbox(self) -> None:
        spec = self.pod.get("spec", {})
        cfg = self.k.cfg
        if spec.get("hostNetwork"):
            await self._create_host_network_sandbox()
            return
        delay = 0.2
        while True:
            try:
                hostname = kernel_hostname(self.pod, cfg.cluster_domain)
                break
            except ValueError as e:
                self.k.event(self.pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        ip = self.k.ipam.allocate(self.uid)
        resolv = resolv_conf(self.pod, cfg.dns_service_ip, cfg.cluster_domain, self.k.host_resolv)
        hosts = hosts_file(self.pod, ip, cfg.cluster_domain)
        self.sandbox = await self._sandbox_with_volumes(ip, lambda mounts: create_sandbox(
            self.k.node_netns, self.uid, self.name, self.namespace, ip, self.k.gateway, resolv, hosts, hostname,
            fork_server=runtime.fork_server(), mounts=mounts))
        self.view.pod_ip = ip
        if self.k.admit_pod_network is not None:
            await self.k.admit_pod_network(self.pod, ip)
        self.view.sandbox_ready = True
        if self.volumes is not None:
            self.volumes.start_keeping()

    async def _share_process_namespace(self) -> None:
        """shareProcessNamespace: start the pod's pause process, PID 1 of the PID namespace all its
        containers are born in (it reaps the orphans there), as a CRI runtime's sandbox does."""
        sb = self.sandbox
        assert sb is not None
        pause = resolve(PAUSE_IMAGE, None, None)
        delay = 0.2
        while True:
            try:
                self.pid_holder = await start_container(sb, pause.argv, pause.env, None, os.devnull)
                break
            except ContainerStartError as e:
                self.k.event(self.pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        sb.pid_holder = self.pid_holder.pid

    async def _create_host_network_sandbox(self) -> None:
        """The node's network namespace, with a UTS namespace of the pod's own (the node's name, the
        hostname a hostNetwork pod sees on Kubernetes) and a mount namespace with its /etc files
        and volumes. Without a fork server to pin those, the pod shares the agent's namespaces
        (the machine's hostname, its /etc) and gets no volumes; an event says so."""
        cfg = self.k.cfg
        ip = self.k.node_ip
        server = runtime.fork_server()
        if can_pin_sandboxes(server, self.k.node_netns):
            resolv = resolv_conf(self.pod, cfg.dns_service_ip, cfg.cluster_domain, self.k.host_resolv)
            hosts = hosts_file(self.pod, ip, cfg.cluster_domain, self.k.host_hosts)
            self.sandbox = await self._sandbox_with_volumes(ip, lambda mounts: create_host_network_sandbox(
                server, self.k.node_netns, self.uid, self.name, self.namespace, ip, resolv, hosts,
                self.k.node_name, mounts))
        else:
            self.sandbox = Sandbox(netns=self.k.node_netns, node_netns=self.k.node_netns, pod_uid=self.uid,
                                   pod_name=self.name, namespace=self.namespace, ip=ip, gateway="",
                                   hostname=os.uname().nodename, host_veth="", pause_pid=os.getpid())
            unmounted = volumes.unmounted_on_host_network(self.pod)
            if unmounted:
                self.k.event(self.pod, "Warning", "VolumesNotMounted",
                             f"volumes [{' '.join(unmounted)}] are not mounted: without its fork server Skiff runs "
                             "a hostNetwork pod in the node agent's own mount namespace, where it mounts nothing")
            self.volumes = None
        self.view.pod_ip = ip
        self.view.sandbox_ready = True
        if self.volumes is not None:
            self.volumes.start_keeping()

    async def _sandbox_with_volumes(self, ip: str,
                                    make: Callable[[list[VolumeMount]], Awaitable[Sandbox]]) -> Sandbox:
        """make(mounts), retried with FailedCreatePodSandBox events until it works, with the volumes
        set up as the kubelet does: containers start only once every volume is set up. When no
        mount needs a volume's contents (no subPath, no hostPath to check first), the sandbox is
        made meanwhile: its bind mounts show the directories' contents whenever they arrive, and
        a burst of new pods does not wait for each token request before making each sandbox."""
        mounts: list[VolumeMount] = []
        filling: asyncio.Task | None = None
        if self.volumes is not None:
            early = self.volumes.early_mounts()
            if early is None:
                mounts = await self._mount_volumes(ip)
            else:
                mounts = early
                filling = asyncio.get_running_loop().create_task(self._mount_volumes(ip))
        delay = 0.2
        try:
            while True:
                try:
                    sandbox = await make(mounts)
                    break
                except SandboxError as e:
                    self.k.event(self.pod, "Warning", "FailedCreatePodSandBox",
                                 f"Failed to create pod sandbox: {e}")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10)
            if filling is not None:
                await filling
        finally:
            if filling is not None and not filling.done():
                filling.cancel()
        return sandbox

    async def _mount_volumes(self, ip: str) -> list[VolumeMount]:
        """Set up every volume and work out the mounts, retrying (with the kubelet's back-off, or at
        once when a referenced object changes) until it all works; the pod waits in ContainerCreating
        meanwhile, with FailedMount events saying why."""
        assert self.volumes is not None
        retry = MOUNT_RETRY_INITIAL
        while True:
            self.volumes.dirty.clear()
            if await self.volumes.sync_and_report():
                try:
                    return self.volumes.mounts(await self._subpath_envs(ip))
                except (volumes.MountError, envvars.EnvError, OSError) as e:
                    self.k.event(self.pod, "Warning", "FailedMount", f"Unable to mount volumes: {e}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.volumes.dirty.wait(), retry)
            retry = min(retry * 2, MOUNT_RETRY_MAX)

    async def _subpath_envs(self, ip: str) -> dict[str, dict[str, str]]:
        """The environments subPathExpr expands against, for the containers that have one."""
        pod = self.pod_with_ips()
        pod["status"] = {**pod["status"], "podIP": ip, "podIPs": [{"ip": ip}]}
        envs: dict[str, dict[str, str]] = {}
        spec = self.pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if any(m.get("subPathExpr") for m in c.get("volumeMounts") or []):
                envs[c["name"]] = await self.k.container_env(pod, c)
        return envs

    def _field_path(self, name: str, init: bool) -> str:
        return f"spec.{'initContainers' if init else 'containers'}{{{name}}}"

    async def _supervise(self, rec: ContainerRecord, c: dict, init: bool) -> None:
        """Run one container until the restart policy says it is done."""
        policy = "Always" if rec.sidecar else (self.pod.get("spec", {}).get("restartPolicy") or "Always")
        backoff = self.backoffs.setdefault(rec.name, Backoff())
        fp = self._field_path(rec.name, init)
        while True:
            c, _ = self.spec_of(rec.name)
            code = await self._run_instance(rec, c, init, fp)
            self.mark_dirty()
            if init and not rec.sidecar and code == 0:
                return
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            finished = time.time()
            wait = backoff.wait_time(finished, finished)
            if wait > 0:
                # As the kubelet's next sync does: the exit (Error, Completed) shows first, a moment
                # later the back-off, so `kubectl get pods -w` alternates Error and CrashLoopBackOff.
                self.mark_dirty()
                shown = min(EXIT_SHOWN_SECONDS, wait)
                await asyncio.sleep(shown)
                wait -= shown
                rec.last_terminated = rec.terminated_dict()
                rec.state, rec.reason = WAITING, "CrashLoopBackOff"
                rec.message = (f"back-off {go_duration(backoff.delay or 0)} restarting failed container={rec.name} "
                               f"pod={_pod_label(self.pod)}")
                self.mark_dirty()
                self.k.event(self.pod, "Warning", "BackOff",
                             f"Back-off restarting failed container {rec.name} in pod {_pod_label(self.pod)}", fp)
                await asyncio.sleep(wait)
            backoff.record_restart(time.time(), finished)
            if rec.state == TERMINATED:
                rec.last_terminated = rec.terminated_dict()
            rec.restart_count += 1

    async def _pull(self, rec: ContainerRecord, c: dict, fp: str) -> bool:
        """Resolve the image, reporting ErrImagePull/ImagePullBackOff with back-off until it works."""
        image = c.get("image", "")
        pull_backoff = BACKOFF_INITIAL
        while True:
            try:
                resolve(image, None, ["true"])
                self.k.event(self.pod, "Normal", "Pulled", f'Container image "{image}" already present on machine',
                             fp)
                return True
            except InvalidImageName as e:
                msg = f'Failed to apply default image tag "{image}": {e}'
                rec.state, rec.reason, rec.message = WAITING, "InvalidImageName", msg
                self.mark_dirty()
                self.k.event(self.pod, "Warning", "InspectFailed", msg, fp)
                self.k.event(self.pod, "Warning", "Failed", "Error: InvalidImageName", fp)
            except ImageNotFound as e:
                self.k.event(self.pod, "Normal", "Pulling", f'Pulling image "{image}"', fp)
                msg = f'Failed to pull image "{image}": {e}'
                rec.state, rec.reason, rec.message = WAITING, "ErrImagePull", msg
                self.mark_dirty()
                self.k.event(self.pod, "Warning", "Failed", msg, fp)
                self.k.event(self.pod, "Warning", "Failed", "Error: ErrImagePull", fp)
                await asyncio.sleep(1.0)
                rec.reason, rec.message = "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {e}'
                self.mark_dirty()
                self.k.event(self.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', fp)
                self.k.event(self.pod, "Warning", "Failed", "Error: ImagePullBackOff", fp)
            except NoCommandSpecified:
                return True  # the image exists; the command error comes at create time
            await asyncio.sleep(pull_backoff)
            pull_backoff = min(pull_backoff * 2, BACKOFF_MAX)
            c, _ = self.spec_of(rec.name)
            image = c.get("image", "")
            rec.image = _canonical(image)

    async def _run_instance(self, rec: ContainerRecord, c: dict, init: bool, fp: str) -> int:
        """Start one instance of the container, wait for it to end, record how; returns its exit code."""
        await self._pull(rec, c, fp)
        sb = self.sandbox
        assert sb is not None
        # Container config: env (may need ConfigMaps/Secrets), then the command.
        while True:
            try:
                creds = securitycontext.credentials(self.pod, c)
                env = await self.k.container_env(self.pod_with_ips(), c)
                cmd, args = envvars.expand_command(c, env)
                resolved = resolve(c.get("image", ""), cmd, args)
                break
            except (envvars.EnvError, securitycontext.NonRootError, NoCommandSpecified) as e:
                reason = "CreateContainerError" if isinstance(e, NoCommandSpecified) else "CreateContainerConfigError"
                rec.state, rec.reason, rec.message = WAITING, reason, str(e)
                self.mark_dirty()
                self.k.event(self.pod, "Warning", "Failed", f"Error: {e}", fp)
                await asyncio.sleep(2.0)
                c, _ = self.spec_of(rec.name)
        full_env = {"PATH": resolved.env.get("PATH", ""), "HOSTNAME": sb.hostname, **resolved.env, **env}
        if c.get("image", "").startswith("skiff/"):
            full_env["SKIFF_STATE_DIR"] = str(self.k.state_dir)
        self.envs[rec.name] = full_env
        self.creds[rec.name] = creds
        self.images[rec.name] = c.get("image", "")
        instance = rec.restart_count
        path = self.log_path(rec.name, instance)
        rec.container_id = secrets.token_hex(32)
        rec.image = _canonical(c.get("image", ""))
        rec.image_id = fake_image_id(rec.image)
        self.k.event(self.pod, "Normal", "Created", f"Created container: {rec.name}", fp)
        try:
            proc = await start_container(sb, resolved.argv, full_env, c.get("workingDir") or None, path, creds,
                                         pidns.mode_of(self.pod))
        except ContainerStartError as e:
            now = time.time()
            self.instances[rec.name] = instance
            msg = f"failed to create containerd task: failed to create shim task: OCI runtime create failed: {e}"
            rec.terminate(128, now, now, "StartError", msg)
            self.k.event(self.pod, "Warning", "Failed", f"Error: {msg}", fp)
            return 128
        self.instances[rec.name] = instance
        self.procs[rec.name] = proc
        hook = (c.get("lifecycle") or {}).get("postStart")
        if hook:
            # The container counts as running only once its postStart hook has completed.
            ok, why = await lifecycle.run_handler(hook, sb.ip, c, self._exec_fn(rec.name), POST_START_TIMEOUT)
            if not ok:
                log.info("pod %s container %s: postStart hook failed: %s", self.name, rec.name, why)
                # As the kubelet: the Event says only that it failed, since the hook's output may hold secrets.
                self.k.event(self.pod, "Warning", "FailedPostStartHook", "PostStartHook failed", fp)
                self.k.event(self.pod, "Normal", "Killing", "FailedPostStartHook", fp)
                await proc.stop(_grace(self.pod))
        rec.state, rec.reason, rec.message = RUNNING, None, None
        rec.started_at, rec.exit_code, rec.finished_at = proc.started_at, None, None
        self.k.event(self.pod, "Normal", "Started", f"Started container {rec.name}", fp)
        self._start_probes(rec, c, proc, init, fp)
        self.mark_dirty()
        code = await proc.wait()
        for w in self.probe_workers.pop(rec.name, []):
            w.stop()
        self.procs.pop(rec.name, None)
        if rec.state == RUNNING:
            rec.terminate(code, proc.started_at, proc.finished_at or time.time())
        return code

    def pod_with_ips(self) -> dict:
        pod = dict(self.pod)
        status = dict(pod.get("status") or {})
        status["hostIP"] = self.k.node_ip
        status["hostIPs"] = [{"ip": self.k.node_ip}]
        if self.view.pod_ip:
            status["podIP"] = self.view.pod_ip
            status["podIPs"] = [{"ip": self.view.pod_ip}]
        pod["status"] = status
        return pod

    def _start_probes(self, rec: ContainerRecord, c: dict, proc: ContainerProcess, init: bool, fp: str) -> None:
        if init and not rec.sidecar:
            rec.started = True  # init containers have no probes; ready stays false, as upstream
            return
        sb = self.sandbox
        assert sb is not None
        run_exec = self._exec_fn(rec.name)
        workers: list[probes.ProbeWorker] = []
        self.probe_workers[rec.name] = workers

        def make(kind: str, key: str, on_result) -> probes.ProbeWorker | None:
            spec = c.get(key)
            if not spec:
                return None
            try:
                check = probes.make_check(spec, sb.ip, c, run_exec)
            except ValueError as e:
                self.k.event(self.pod, "Warning", "Unhealthy", f"{kind} probe errored: {e}", fp)
                return None

            def on_failure(msg: str) -> None:
                if proc.running:
                    self.k.event(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {msg}", fp)

            w = probes.ProbeWorker(kind, spec, check, on_result, on_failure, started_at=proc.started_at)
            workers.append(w)
            w.start()
            return w

        def liveness_failed(what: str) -> None:
            msg = f"Container {rec.name} failed {what} probe, will be restarted"
            grace = float(c.get(f"{what}Probe", {}).get("terminationGracePeriodSeconds")
                          or _grace(self.pod))
            asyncio.get_running_loop().create_task(self._kill(rec.name, grace, msg))

        def on_readiness(ok: bool) -> None:
            if proc.running:
                rec.ready = ok
                self.mark_dirty()

        def on_liveness(ok: bool) -> None:
            if not ok and proc.running:
                liveness_failed("liveness")

        ports = [p["containerPort"] for p in c.get("ports") or []
                 if p.get("protocol", "TCP") == "TCP" and p.get("containerPort")]

        async def wait_listening() -> None:
            # A process starts in milliseconds here but needs a moment to bind its ports. Waiting for
            # the declared TCP ports (2 s at most) before calling the container ready, or before its
            # first readiness probe, means traffic never reaches a pod that would refuse it and a
            # probe does not fail just because it ran a few milliseconds too early.
            # The pause between tries doubles from 2 ms to 100 ms: on a node starting many pods at
            # once, where a container takes long to listen, frequent tries (each a handshake the
            # container accepts and closes) were a good part of both sides' CPU.
            # A built-in image started by the fork server also says when it has bound its
            # listeners (proc.listened): then the next try comes at once.
            deadline = time.monotonic() + 2.0
            pending = list(ports)
            pause = 0.002
            while pending and time.monotonic() < deadline and proc.running:
                if proc.listened is not None:
                    proc.listened.clear()
                try:
                    _r, w = await asyncio.wait_for(asyncio.open_connection(sb.ip, pending[0]), 0.5)
                    w.close()
                    pending.pop(0)
                except (OSError, TimeoutError):
                    if proc.listened is None:
                        await asyncio.sleep(pause)
                    else:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(proc.listened.wait(), pause)
                    pause = min(pause * 2, 0.1)

        async def ready_when_listening() -> None:
            await wait_listening()
            if proc.running:
                rec.ready = True
                self.mark_dirty()

        async def readiness_when_listening() -> None:
            await wait_listening()
            if proc.running:
                make(probes.READINESS, "readinessProbe", on_readiness)

        def after_start() -> None:
            rec.started = True
            loop = asyncio.get_running_loop()
            if not c.get("readinessProbe"):
                if ports:
                    loop.create_task(ready_when_listening())
                else:
                    rec.ready = True
            self.mark_dirty()
            make(probes.LIVENESS, "livenessProbe", on_liveness)
            if c.get("readinessProbe"):
                if ports:
                    loop.create_task(readiness_when_listening())
                else:
                    make(probes.READINESS, "readinessProbe", on_readiness)

        def on_startup(ok: bool) -> None:
            if not proc.running:
                return
            if ok:
                after_start()
            else:
                liveness_failed("startup")

        if c.get("startupProbe"):
            rec.started = False
            make(probes.STARTUP, "startupProbe", on_startup)
        else:
            after_start()

    # ---- status -------------------------------------------------------------------------------------
    def desired_status(self) -> dict:
        return pod_status(self.pod, self.view, self.inits, self.containers, time.time())

    def _settling(self) -> bool:
        """A first start still under way with nothing worth a write yet (see FIRST_STATUS_HOLD)."""
        if self._stop.is_set() or self.terminal:
            return False
        for rec in self.containers:
            if rec.state == TERMINATED or (rec.state == WAITING and rec.reason not in ("ContainerCreating",
                                                                                      "PodInitializing")):
                return False  # an exit or an error: the user should see it now
        spec_of = {c.get("name"): c for c in self.pod.get("spec", {}).get("containers") or []}
        return not all(rec.state == RUNNING and rec.started
                       and (rec.ready or bool((spec_of.get(rec.name) or {}).get("readinessProbe")))
                       for rec in self.containers)

    async def _status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_DEBOUNCE)
            while loop.time() < self._hold_until and self._settling():
                self._dirty.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), self._hold_until - loop.time())
            self._hold_until = 0.0
            self.k.starting.discard(self.uid)
            self._dirty.clear()
            try:
                await self._write_status()
            except asyncio.CancelledError:
                raise
            except ClientError as e:
                if e.code == 404:
                    return
                log.warning("status of %s/%s: %s", self.namespace, self.name, e)
                await asyncio.sleep(0.5)
                self._dirty.set()
            except Exception as e:
                log.warning("status of %s/%s: %r", self.namespace, self.name, e)
                await asyncio.sleep(0.5)
                self._dirty.set()

    async def _write_status(self) -> None:
        desired = self.desired_status()
        patch = status_patch(self._last_written, desired)
        if not patch:
            return
        result = await self.k.client.patch(PODS, self.namespace, self.name, {"status": patch}, "merge",
                                           sub="status")
        self._last_written = desired
        self._written_rv = _rv(result)

    async def _flush_status(self) -> None:
        with contextlib.suppress(Exception):
            await self._write_status()

    @property
    def phase(self) -> str:
        return pod_phase(self.pod.get("spec", {}), self.inits, self.containers)


def _rv(pod: dict | None) -> int:
    try:
        return int((pod or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _cond_status(pod: dict, ctype: str) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c.get("status")
    return None


def _parse_ts(text: str) -> float:
    from skiff.api.meta import parse_time

    t = parse_time(text)
    return t.timestamp() if t else time.time()


class Kubelet:
    """All pods of one node."""

    def __init__(self, client: Client, cfg: ClusterConfig, node_index: int, state_dir: str | Path):
        self.client = client
        self.cfg = cfg
        self.node_index = node_index
        self.node_name = cfg.node_name(node_index)
        self.node_ip = cfg.node_ip(node_index)
        self.node_netns = names.node_netns_name(self.node_name)
        self.state_dir = Path(state_dir)
        node_dir = self.state_dir / "nodes" / self.node_name
        self.log_root = node_dir / "pods"
        # <pod uid>/<plugin>/<volume>, as the kubelet's pods/ dir. The files of configMap, secret,
        # downwardAPI and projected volumes live on a tmpfs of the node's (as the kubelet keeps secrets
        # in memory): every pod has a token volume, and on a disk each small write costs a journal
        # entry (measured here: 1.4 ms per token volume on disk, 0.09 ms on tmpfs). emptyDirs stay on
        # disk, as the kubelet's default medium does.
        self.volume_root = node_dir / "volumes"
        self.empty_dir_root = node_dir / "emptydirs"
        # ConfigMaps and Secrets that volumes show, watched from the first pod that needs them.
        self.volume_informers: dict[str, Informer] = {}
        cidr = cfg.node_pod_cidr(node_index)
        self.ipam = PodIPAM(cidr, node_dir / "ipam.json")
        self.gateway = pod_gateway(cidr)
        self.recorder = EventRecorder(client, "kubelet", host=self.node_name)
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={self.node_name}")
        self.services = Informer(client, SERVICES)
        self.workers: dict[str, PodWorker] = {}  # by pod UID
        self.by_name: dict[tuple[str, str], PodWorker] = {}
        self.shutting_down = False
        # The node's NetworkPolicy enforcer (set by the agent): awaited with each new pod's IP
        # before its containers start, so that a policy selecting it holds from the first packet.
        self.admit_pod_network: Callable[[dict, str], Awaitable[None]] | None = None
        # The node's Service proxy (set by the agent): awaited with a terminating pod's IP until that
        # proxy has taken it out of rotation.
        self.out_of_rotation: Callable[[str], Awaitable[None]] | None = None
        self.shutdown_grace = 0.5  # the agent stops only for `skiff down`: the whole cluster is going away
        try:
            self.host_resolv: str | None = Path("/etc/resolv.conf").read_text()
        except OSError:
            self.host_resolv = None
        try:  # a hostNetwork pod's /etc/hosts is the node's (plus its hostAliases)
            self.host_hosts: str | None = Path("/etc/hosts").read_text()
        except OSError:
            self.host_hosts = None
        self.allocatable = {"cpu": str(os.cpu_count() or 1), "memory": str(_mem_bytes()),
                            "ephemeral-storage": "0"}
        self.starting: set[str] = set()  # UIDs of pods whose first start has not settled yet
        self.events = BackgroundEvents(self.recorder, busy=lambda: bool(self.starting))

    # ---- start / stop -------------------------------------------------------------------------------
    async def start(self) -> None:
        # Containers of a previous agent died with it (or are orphans now): start from clean sandboxes.
        for netns in list_sandbox_netns(self.node_netns):
            await destroy_sandbox_netns(self.node_netns, netns)
        # A fresh pin directory (a crashed agent's pins went with its sandboxes above).
        try:
            remove_pin_dir(self.node_netns)
            ensure_pin_dir(self.node_netns)
        except OSError as e:
            log.warning("no pin directory for pod namespaces (%s): sandboxes get a holder process", e)
        await asyncio.to_thread(self._mount_volume_tmpfs)
        # Every pod's token volume shows kube-root-ca.crt: watch ConfigMaps from the start, so that the
        # first pods of a burst do not all wait for the first list.
        self._volume_informer("configmaps")
        self.services.start()
        self.pods.add_handler(self._on_pod)
        self.pods.start()
        await asyncio.gather(self.pods.synced.wait(), self.services.synced.wait())
        active = [p["metadata"]["uid"] for p in self.pods.list()
                  if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        self.ipam.retain_only(active)
        await asyncio.to_thread(self._remove_orphan_volumes, {p["metadata"]["uid"] for p in self.pods.list()})

    def _mount_volume_tmpfs(self) -> None:
        """A fresh tmpfs for volume files (a previous agent's, if it crashed, goes: its pods' sandboxes
        went above, and each pod rewrites its files). It is mounted in the host's mount namespace,
        which the agent shares, so `shutdown` and `skiff down` detach it."""
        detach_mounts_under(self.volume_root)
        shutil.rmtree(self.volume_root, ignore_errors=True)
        self.volume_root.mkdir(parents=True, exist_ok=True)
        try:
            mount("skiff-volumes", str(self.volume_root), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
            mount(None, str(self.volume_root), None, MS_PRIVATE)
        except OSError as e:
            log.warning("volume files stay on disk (no tmpfs: %s)", e)

    def _remove_orphan_volumes(self, known: set[str]) -> None:
        """Volume directories of pods that are gone (removed while no agent ran)."""
        for root in (self.volume_root, self.empty_dir_root):
            try:
                entries = list(root.iterdir())
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name not in known and entry.name not in self.workers:
                    shutil.rmtree(entry, ignore_errors=True)

    async def shutdown(self) -> None:
        """Agent stopping: stop every pod (gracefully, but quickly) and remove its sandbox."""
        self.shutting_down = True
        await self.pods.stop()
        workers = list(self.workers.values())
        for w in workers:
            w._stop.set()
        tasks = [w._task for w in workers if w._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_grace + 1)
        for netns in list_sandbox_netns(self.node_netns):
            await destroy_sandbox_netns(self.node_netns, netns)
        remove_pin_dir(self.node_netns)
        await asyncio.to_thread(detach_mounts_under, self.volume_root)
        self.ipam.flush()
        await self.services.stop()
        for informer in self.volume_informers.values():
            await informer.stop()
        # Let queued events go out, briefly.
        await self.events.drain(0.5)

    # ---- pods -----------------------------------------------------------------------------------------
    async def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        uid = pod["metadata"].get("uid")
        if not uid:
            return
        worker = self.workers.get(uid)
        if etype == "DELETED":
            if worker is not None:
                worker.pod = pod
                worker.gone()
            return
        if worker is None:
            if self.shutting_down:
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            self.by_name[(worker.namespace, worker.name)] = worker
            if pod["metadata"].get("deletionTimestamp"):
                worker._stop.set()
            worker.start()
        else:
            worker.update(pod)

    def forget(self, worker: PodWorker) -> None:
        self.starting.discard(worker.uid)
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        if self.by_name.get((worker.namespace, worker.name)) is worker:
            del self.by_name[(worker.namespace, worker.name)]

    # ---- container configuration -----------------------------------------------------------------
    async def container_env(self, pod: dict, container: dict) -> dict[str, str]:
        ns = pod["metadata"].get("namespace", "default")
        cm_names, secret_names = envvars.referenced_objects(container)
        cms = {n: await self._get(CONFIGMAPS, ns, n) for n in cm_names}
        secs = {n: await self._get(SECRETS, ns, n) for n in secret_names}
        return envvars.container_env(pod, container, self.services.list(), cms, secs, self.allocatable)

    def _volume_informer(self, plural: str) -> Informer:
        informer = self.volume_informers.get(plural)
        if informer is None:
            informer = Informer(self.client, _VOLUME_OBJECTS[plural])
            informer.add_handler(lambda etype, obj, old: self._on_volume_object(plural, obj))
            self.volume_informers[plural] = informer
            informer.start()
        return informer

    async def volume_object(self, plural: str, ns: str, name: str) -> dict | None:
        """A ConfigMap or Secret a volume shows (None if it does not exist), from a watch of them all
        that also tells pods when one changes. One the watch has not seen yet (just created) is read
        directly before it counts as missing."""
        informer = self._volume_informer(plural)
        await informer.synced.wait()
        obj = informer.get(f"{ns}/{name}")
        if obj is not None:
            return obj
        try:
            return await self.client.get(_VOLUME_OBJECTS[plural], ns, name)
        except ClientError as e:
            if e.code == 404:
                return None
            raise volumes.VolumeError(f"failed to get {plural[:-1]} \"{name}\": {e.status.get('message') or e}") from e

    def _on_volume_object(self, plural: str, obj: dict) -> None:
        ref = (plural, obj["metadata"].get("namespace", ""), obj["metadata"].get("name", ""))
        for w in self.workers.values():
            if w.volumes is not None and ref in w.volumes.refs:
                w.volumes.dirty.set()

    async def _get(self, info, ns: str, name: str) -> dict | None:
        try:
            return await self.client.get(info, ns, name)
        except ClientError as e:
            if e.code == 404:
                return None
            raise envvars.EnvError(f"failed to get {info.kind} {ns}/{name}: {e}") from e

    # ---- events ----------------------------------------------------------------------------------------
    def event(self, pod: dict, etype: str, reason: str, message: str, field_path: str | None = None) -> None:
        """Queue an Event; one task writes them in order so pod workers never wait on it."""
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": dict(pod["metadata"])}
        self.events.record(obj, etype, reason, message, field_path)


def _mem_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 30


class PodResolver:
    """What the streaming server (logs, exec, port-forward) needs to know about this node's pods."""

    def __init__(self, kubelet: Kubelet):
        self.k = kubelet

    def _worker(self, namespace: str, pod: str) -> PodWorker | None:
        return self.k.by_name.get((namespace, pod))

    def container_log_path(self, namespace: str, pod: str, container: str, previous: bool) -> str | None:
        w = self._worker(namespace, pod)
        if w is None or container not in w.instances:
            return None
        instance = w.instances[container] - (1 if previous else 0)
        if instance < 0:
            return None
        path = w.log_path(container, instance)
        return path if os.path.exists(path) else None

    def sandbox(self, namespace: str, pod: str) -> Sandbox | None:
        w = self._worker(namespace, pod)
        return w.sandbox if w is not None else None

    def container_env(self, namespace: str, pod: str, container: str) -> dict[str, str]:
        w = self._worker(namespace, pod)
        return dict(w.envs.get(container, {})) if w is not None else {}

    def container_credentials(self, namespace: str, pod: str, container: str) -> securitycontext.Credentials | None:
        """Who `kubectl exec` runs as in the container: its own user and groups."""
        w = self._worker(namespace, pod)
        return w.creds.get(container) if w is not None else None

    def container_image(self, namespace: str, pod: str, container: str) -> str | None:
        """The image `kubectl exec` finds the container's own programs in (`/agnhost`)."""
        w = self._worker(namespace, pod)
        return w.images.get(container) if w is not None else None

    def container_namespaces(self, namespace: str, pod: str, container: str) -> dict[str, str]:
        """The container's own namespaces `kubectl exec` joins (its PID and mount namespaces)."""
        w = self._worker(namespace, pod)
        proc = w.procs.get(container) if w is not None else None
        return dict(proc.namespaces) if proc is not None else {}

    def pod_ip(self, namespace: str, pod: str) -> str | None:
        w = self._worker(namespace, pod)
        return w.view.pod_ip if w is not None else None

    def is_running(self, namespace: str, pod: str, container: str) -> bool:
        w = self._worker(namespace, pod)
        if w is None:
            return False
        proc = w.procs.get(container)
        return proc is not None and proc.running

    def started_at(self, namespace: str, pod: str, container: str) -> float | None:
        """When the container's current run started (Unix time), if it is running."""
        w = self._worker(namespace, pod)
        proc = w.procs.get(container) if w is not None else None
        return proc.started_at if proc is not None and proc.running else None

    def waiting_reason(self, namespace: str, pod: str, container: str) -> str:
        """Why the container has not started: its waiting reason as the pod status shows it."""
        w = self._worker(namespace, pod)
        rec = next((r for r in (w.inits + w.containers) if r.name == container), None) if w else None
        return (rec.reason if rec is not None and rec.state == WAITING and rec.reason else "ContainerCreating")


__all__ = ["Backoff", "Kubelet", "PodResolver", "PodWorker"]
