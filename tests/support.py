"""Test support: start real control planes and clusters, and run the real kubectl against them."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEED = REPO.parent / "shared" / "examples" / "seed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@dataclass
class Kubectl:
    kubeconfig: Path
    home: Path

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def __call__(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout

    def popen(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)


class ControlPlane:
    """Only the control plane process (API server + controllers) on 127.0.0.1: no root, no network."""

    def __init__(self, **settings) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="skiff-test-"))
        self.name = unique_name("cp")
        from skiff.config import ClusterConfig

        self.cfg = ClusterConfig(name=self.name, api_port=free_port(), token=secrets.token_urlsafe(24), **settings)
        self.state_dir = self.home / self.name
        self.proc: subprocess.Popen | None = None
        self.kubectl: Kubectl | None = None

    def env(self) -> dict:
        return {**os.environ, "SKIFF_HOME": str(self.home)}

    def start(self) -> ControlPlane:
        old = os.environ.get("SKIFF_HOME")
        os.environ["SKIFF_HOME"] = str(self.home)
        try:
            self.cfg.save()
        finally:
            if old is None:
                os.environ.pop("SKIFF_HOME", None)
            else:
                os.environ["SKIFF_HOME"] = old
        (self.state_dir / "controlplane.ready").unlink(missing_ok=True)
        log = open(self.state_dir / "controlplane.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "skiff", "controlplane", "--state-dir",
                                      str(self.state_dir), "--listen", "127.0.0.1"], stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env(), cwd=REPO, start_new_session=True)
        (self.state_dir / "controller-manager.ready").unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        while not ((self.state_dir / "controlplane.ready").exists()
                   and (self.state_dir / "controller-manager.ready").exists()):
            if self.proc.poll() is not None:
                raise RuntimeError("control plane exited:\n" + (self.state_dir / "controlplane.log").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("control plane did not start")
            time.sleep(0.01)
        if self.kubectl is None:
            self.kubectl = self._kubectl()
        return self

    def _kubectl(self) -> Kubectl:
        kdir = self.home / "kubectl-home"
        kdir.mkdir(exist_ok=True)
        kc = self.home / "kubeconfig"
        kc.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        return Kubectl(kc, kdir)

    def kubeconfig_dict(self) -> dict:
        import base64

        ca = (self.state_dir / "pki" / "ca.crt").read_bytes()
        return {"apiVersion": "v1", "kind": "Config", "current-context": "t",
                "clusters": [{"name": "t", "cluster": {"server": self.cfg.server_url,
                                                       "certificate-authority-data": base64.b64encode(ca).decode()}}],
                "users": [{"name": "t", "user": {"token": self.cfg.token}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def routed_networks() -> list:
    """Every destination routed on this machine now (all tables)."""
    import ipaddress
    import json as _json

    routes = _json.loads(subprocess.run(["ip", "-4", "-j", "route", "show", "table", "all"], capture_output=True,
                                        text=True).stdout or "[]")
    used = []
    for r in routes:
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
            except ValueError:
                pass
    return used


def unrouted(*nets: str, used: list | None = None) -> bool:
    """Whether none of `nets` overlaps a route of this machine (`used`: routed_networks(), if known)."""
    import ipaddress

    used = routed_networks() if used is None else used
    return not any(ipaddress.ip_network(n).overlaps(u) for n in nets for u in used)


def free_ranges() -> tuple[int, int]:
    """(X, Y) such that 172.29.X.0/24 and 10.Y.0.0/16 are not routed on this machine now, so test
    clusters that exist at the same time never clash (skiff up refuses overlapping ranges)."""
    import random

    used = routed_networks()
    octets = [x for x in range(16, 251) if unrouted(f"172.29.{x}.0/24", used=used)]
    pods = [y for y in range(200, 250) if unrouted(f"10.{y}.0.0/16", used=used)]
    return random.choice(octets), random.choice(pods)


class Cluster:
    """A whole cluster started with `skiff up` (root: namespaces, links, nftables), on ranges that do
    not clash with a default cluster, in a temporary SKIFF_HOME; `down()` removes all of it."""

    def __init__(self, nodes: int = 3, **settings: str) -> None:

        self.home = Path(tempfile.mkdtemp(prefix="skiff-e2e-"))
        self.name = unique_name("e")
        octet, pod_octet = free_ranges()
        self.settings = {"node-cidr": f"172.29.{octet}.0/24", "pod-cidr": f"10.{pod_octet}.0.0/16",
                         "lb-pool": f"172.29.{octet}.200-172.29.{octet}.230", "node-grace": "3"}
        self.settings.update(settings)
        self.nodes = nodes
        self.kubeconfig = self.home / "kubeconfig"
        self.kubectl = Kubectl(self.kubeconfig, self.home / "kubectl-home")
        (self.home / "kubectl-home").mkdir()
        self.up_output = ""
        self.up_seconds = 0.0

    def env(self) -> dict:
        return {**os.environ, "SKIFF_HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}

    def skiff(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True, text=True,
                              env=self.env(), cwd=REPO, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"skiff {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self, wait: bool = False) -> Cluster:
        args = ["up", "--name", self.name, "--nodes", str(self.nodes)] + (["--wait"] if wait else [])
        for k, v in self.settings.items():
            args += [f"--{k}", v]
        t0 = time.monotonic()
        try:
            self.up_output = self.skiff(*args).stdout
        except BaseException:
            self.down()
            raise
        self.up_seconds = time.monotonic() - t0
        return self

    @property
    def cfg(self):
        old = os.environ.get("SKIFF_HOME")
        os.environ["SKIFF_HOME"] = str(self.home)
        try:
            from skiff.config import ClusterConfig

            return ClusterConfig.load(self.name)
        finally:
            if old is None:
                os.environ.pop("SKIFF_HOME", None)
            else:
                os.environ["SKIFF_HOME"] = old

    def agent_pid(self, node: str) -> int:
        """The pid of `node`'s agent (it leads the node's process group)."""
        return int((self.home / self.name / f"{node}.pid").read_text())

    def wait_node(self, node: str, status: str, timeout: float = 15) -> None:
        """Until `kubectl get nodes` shows `node` with a STATUS starting with `status`."""
        wait_for(lambda: re.search(rf"^{re.escape(node)}\s+{status}", self.kubectl("get", "nodes"), re.M),
                 timeout, 0.2)

    def in_netns(self, netns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def wait_dns(self, timeout: float = 60) -> None:
        """Until cluster DNS has a ready endpoint (what `skiff up --wait` waits for; the shared fixture
        does not start with --wait)."""
        def ready() -> bool:
            slices = json.loads(self.kubectl("get", "endpointslices", "-n", "kube-system", "-l",
                                             "kubernetes.io/service-name=kube-dns", "-o", "json"))["items"]
            return any((e.get("conditions") or {}).get("ready") for s in slices for e in s.get("endpoints") or [])
        wait_for(ready, timeout, 0.3)

    def down(self) -> None:
        try:
            self.skiff("down", "--name", self.name, check=False)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def curl(url: str, *extra: str, timeout: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *extra, url], capture_output=True,
                          text=True, timeout=timeout + 5)


def wait_for(pred, timeout: float = 10, interval: float = 0.05):
    """Poll `pred` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def is_ready(obj: dict) -> bool:
    """The object's Ready condition is True and it is not being deleted (pods and nodes). A pod stays
    Ready while it terminates, as on a real cluster, but no test should pick one of those."""
    return not obj.get("metadata", {}).get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions") or [])
