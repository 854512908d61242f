"""Cluster lifecycle: `skiff up` and `skiff down`, and finding what a cluster left behind."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from skiff.config import NAME_RE, ClusterConfig, skiff_home

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def list_clusters() -> list[str]:
    home = skiff_home()
    if not home.exists():
        return []
    return sorted(p.name for p in home.iterdir() if (p / "cluster.json").exists())


def is_running(cfg: ClusterConfig) -> bool:
    pid = _read_pid(cfg.state_dir / "controlplane.pid")
    return bool(pid and _pid_alive(pid) and _healthy(cfg))


def _healthy(cfg: ClusterConfig) -> bool:
    return _api(cfg, "GET", "/readyz", timeout=1.0)[0] == 200


def _spawn(argv: list[str], log_path: Path, pid_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    pid_path.write_text(str(proc.pid))
    return proc


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
              log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and log_path.exists():
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise ClusterError(f"{what}: the process exited with code {proc.returncode}\n{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


def up(cfg: ClusterConfig, progress: Progress, wait: bool = False, given: dict[str, str] | None = None
       ) -> ClusterConfig:
    """Start cluster `cfg.name`, or restart it on its own database. `given` maps the flags the user
    passed to ClusterConfig fields: an existing cluster keeps its settings, and says which flags
    that overrode."""
    if not NAME_RE.match(cfg.name):
        raise ClusterError(f'invalid cluster name "{cfg.name}": use 1-12 lower case letters, digits or "-", '
                           f"starting and ending with a letter or digit")
    if os.geteuid() != 0:
        raise ClusterError("skiff up needs root: it creates network namespaces, links and nftables rules")
    state = cfg.state_dir
    if (state / "cluster.json").exists():
        existing = ClusterConfig.load(cfg.name)
        ignored = [f"{flag} {_flag_value(getattr(cfg, attr))}" for flag, attr in (given or {}).items()
                   if getattr(cfg, attr) != getattr(existing, attr)]
        if ignored:
            progress(f'Cluster "{cfg.name}" already exists with {existing.nodes} node(s), node network '
                     f"{existing.node_cidr}, pod network {existing.pod_cidr}; ignoring {', '.join(ignored)} "
                     f"(skiff down --name {cfg.name} first to change them)")
        if is_running(existing):
            restarted = _restart_dead_agents(existing)
            if restarted:
                progress(f"Restarted the node agent of {', '.join(restarted)}.")
            progress(f'Cluster "{cfg.name}" is already running.')
            return existing
        progress(f'Cluster "{cfg.name}" exists but is not running: cleaning up and restarting it')
        _stop_processes(existing)
        cfg = existing  # keep its database, certificates, token and port
    else:
        cfg.api_port = cfg.api_port or _free_port()
        cfg.token = secrets.token_urlsafe(32)
    progress(f'Creating cluster "{cfg.name}" ...')
    fresh = not (state / "cluster.json").exists()
    try:
        return _bring_up(cfg, progress, wait)
    except BaseException as e:
        # Leave nothing half-made behind: processes, namespaces, links, routes (and the state of a
        # cluster that never came up).
        _stop_processes(cfg, grace=1.0)
        from skiff.net.cleanup import destroy_cluster_network_sync

        try:
            destroy_cluster_network_sync(cfg.name)
        except Exception:  # the original error is the one worth reporting
            pass
        if fresh:
            _remove_state(state)
        from skiff.net.nodes import NetworkConflict

        if isinstance(e, NetworkConflict):
            raise ClusterError(f"{e} Use --node-cidr, --pod-cidr, --service-cidr and --lb-pool to choose other "
                               f"ranges, or stop the cluster that uses them (skiff list).") from None
        raise


def _bring_up(cfg: ClusterConfig, progress: Progress, wait: bool) -> ClusterConfig:
    state = cfg.state_dir
    t0 = time.monotonic()
    cfg.save()
    (state / "logs").mkdir(exist_ok=True)

    from skiff.net.nodes import create_cluster_network

    asyncio.run(create_cluster_network(cfg))
    progress(f" ✓ Node network {cfg.node_cidr}, {cfg.nodes} node namespaces, pod network {cfg.pod_cidr}")

    from skiff.apiserver.certs import ensure_certificates

    ensure_certificates(state / "pki", cfg.name, ["127.0.0.1", cfg.host_ip, cfg.kubernetes_service_ip],
                        ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         f"kubernetes.default.svc.{cfg.cluster_domain}"])
    ready_file = state / "controlplane.ready"
    ready_file.unlink(missing_ok=True)
    (state / "controller-manager.ready").unlink(missing_ok=True)
    cp_log = state / "logs" / "controlplane.log"
    cp = _spawn([sys.executable, "-m", "skiff", "controlplane", "--state-dir", str(state)], cp_log,
                state / "controlplane.pid")
    # The node agents start alongside the control plane: their start-up (mostly Python imports)
    # then overlaps its own on the other core, and they retry registering until the API answers.
    for i in range(cfg.nodes):
        _start_agent(cfg, i)
    _wait_for(ready_file.exists, 30, "the control plane to start", cp, cp_log)
    progress(f" ✓ Control plane ready at {cfg.server_url}")

    _wait_for(lambda: _ready_nodes(cfg) >= cfg.nodes, 30, f"{cfg.nodes} nodes to be Ready")
    _wait_for((state / "controller-manager.ready").exists, 30, "the controller manager to start", cp, cp_log)
    progress(f" ✓ {cfg.nodes} nodes Ready ({', '.join(cfg.node_name(i) for i in range(cfg.nodes))})")
    installed = _install_system_objects(cfg)
    if installed:
        if wait:
            # Like kind's --wait: for scripts that use Service names or the Ingress right away.
            for ns, svc, what in (("kube-system", "kube-dns", "cluster DNS"),
                                  ("skiff-system", "skiff-ingress", "the Ingress controller")):
                _wait_for(lambda ns=ns, svc=svc: _has_ready_endpoints(cfg, ns, svc), 60, f"{what} to be ready")
            progress(f" ✓ System components ready: {', '.join(installed)}")
        else:
            progress(f" ✓ System components starting: {', '.join(installed)} (`skiff up --wait` waits for them)")

    from skiff.cli import kubeconfig

    path = kubeconfig.merge_into_user(cfg)
    progress(f' ✓ kubectl context "skiff-{cfg.name}" set in {path}')
    progress(f"Cluster ready in {time.monotonic() - t0:.2f}s. Try: kubectl get nodes -o wide")
    return cfg


def _start_agent(cfg: ClusterConfig, index: int) -> None:
    from skiff.net.nodes import node_netns
    from skiff.net.ns import run_in_netns_argv

    state = cfg.state_dir
    name = cfg.node_name(index)
    argv = run_in_netns_argv(node_netns(cfg, index), [sys.executable, "-m", "skiff", "node-agent",
                                                      "--state-dir", str(state), "--node", str(index)])
    _spawn(argv, state / "logs" / f"{name}.log", state / f"{name}.pid")


def _flag_value(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _restart_dead_agents(cfg: ClusterConfig) -> list[str]:
    """A node agent that died (a node whose kubelet crashed) is started again by `skiff up`."""
    restarted = []
    for i in range(cfg.nodes):
        name = cfg.node_name(i)
        pid = _read_pid(cfg.state_dir / f"{name}.pid")
        if pid is None or not _pid_alive(pid):
            _start_agent(cfg, i)
            restarted.append(name)
    if restarted:
        _wait_for(lambda: _ready_nodes(cfg) >= cfg.nodes, 30, f"{cfg.nodes} nodes to be Ready")
    return restarted


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    # Built once per cluster: `skiff up` polls the API every few milliseconds while it starts.
    return ssl.create_default_context(cafile=ca_file)


def _api(cfg: ClusterConfig, method: str, path: str, body: dict | None = None, timeout: float = 10.0
         ) -> tuple[int, dict]:
    """A blocking API call for the CLI. (0, {}) when the API server cannot be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(cfg.server_url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {cfg.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=_tls_context(str(cfg.state_dir / "pki" / "ca.crt")),
                                    timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw.startswith(b"{") else {})
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return 0, {}


def _install_system_objects(cfg: ClusterConfig) -> list[str]:
    """Create the cluster's system components through the API, as kubeadm installs CoreDNS."""
    from skiff.api.resources import lookup_kind
    from skiff.client.rest import Client, Credentials

    client = Client(Credentials(cfg.server_url, cfg.token))
    installed = []
    for label, module in (("cluster DNS (kube-dns " + cfg.dns_service_ip + ")", "skiff.dns.manifests"),
                          ("Ingress controller (IngressClass skiff)", "skiff.ingress.manifests")):
        try:
            mod = __import__(module, fromlist=["system_objects"])
        except ImportError:
            continue
        for obj in mod.system_objects(cfg):
            info = lookup_kind(obj["apiVersion"], obj["kind"])
            if info is None:
                continue
            path = client.path(info, obj["metadata"].get("namespace"))
            code, resp = _api(cfg, "POST", path, obj)
            if code not in (201, 409):
                raise ClusterError(f"installing {obj['kind']} {obj['metadata']['name']}: {resp.get('message')}")
        installed.append(label)
    return installed


def _has_ready_endpoints(cfg: ClusterConfig, namespace: str, name: str) -> bool:
    code, ep = _api(cfg, "GET", f"/api/v1/namespaces/{namespace}/endpoints/{name}")
    return code == 200 and any(s.get("addresses") for s in ep.get("subsets") or [])


def _ready_nodes(cfg: ClusterConfig) -> int:
    from skiff.api.meta import get_condition

    _code, nodes = _api(cfg, "GET", "/api/v1/nodes", timeout=2.0)
    return sum(1 for n in nodes.get("items") or [] if (get_condition(n, "Ready") or {}).get("status") == "True")


def _stop_processes(cfg: ClusterConfig, grace: float = 3.0) -> None:
    """SIGTERM the node agents (they stop their pods) and the control plane together, then SIGKILL
    whatever is still running after `grace` seconds. Any other process still running for this
    cluster's state directory (say a controller manager that a crash left behind) goes too."""
    state = cfg.state_dir
    pid_files = [state / f"{cfg.node_name(i)}.pid" for i in range(cfg.nodes)] + [state / "controlplane.pid"]
    groups = [p for p in (_read_pid(f) for f in pid_files) if p and _pid_alive(p)]
    for pid in groups:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    strays = [p for p in _processes_of(state) if p not in groups]
    for pid in strays:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    pids = groups + strays
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in groups:
        if _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for pid in strays:
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for f in pid_files:
        f.unlink(missing_ok=True)


def _processes_of(state: Path) -> list[int]:
    """Live processes started with `--state-dir <state>`: every Skiff daemon of that cluster."""
    want = b"\0--state-dir\0" + os.fsencode(state) + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = b"\0" + f.read()
        except OSError:
            continue
        if want in cmdline and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _remove_state(state: Path) -> None:
    """Remove a cluster's state directory, detaching first what node agents mounted in it (their
    volume tmpfs, left mounted if an agent was killed)."""
    from skiff.net.ns import detach_mounts_under

    detach_mounts_under(state)
    shutil.rmtree(state, ignore_errors=True)


def down(name: str, progress: Progress) -> bool:
    """Remove everything the cluster created. Works after a crash and when nothing is left."""
    state = skiff_home() / name
    found = (state / "cluster.json").exists()
    if found:
        cfg = ClusterConfig.load(name)
        progress(f'Deleting cluster "{name}" ...')
        _stop_processes(cfg)
    from skiff.net.cleanup import destroy_cluster_network_sync

    destroy_cluster_network_sync(name)
    from skiff.cli import kubeconfig

    kubeconfig.remove_from_user(name)
    if state.exists():
        _remove_state(state)
    if found:
        progress(f'Deleted cluster "{name}".')
    return found
