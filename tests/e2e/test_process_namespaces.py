"""Processes and PID namespaces in a real cluster, driven by the real kubectl: each container has a
PID namespace of its own (its program is PID 1, `ps` lists only its processes, the node's are out
of reach), the docs' "Share Process Namespace between Containers in a Pod" (shareProcessNamespace),
hostPID, and what SIGTERM does to PID 1 when a pod is deleted.

Needs root (a cluster). `busybox` is the host's programs (procps' `ps` among them); nginx and
agnhost are built-in images, started by the node's fork server.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

# The docs' share-process-namespace.yaml.
SHARED = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
    "spec": {
        "shareProcessNamespace": True,
        "containers": [
            {"name": "nginx", "image": "nginx"},
            {"name": "shell", "image": "busybox:1.28", "command": ["sleep", "3600"],
             "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}, "stdin": True, "tty": True},
        ],
    },
}


def pod(name: str, command: list[str], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": command}], **spec}}


def apply(k, ns: str, *docs: dict) -> None:
    k("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))


def wait_ready(k, ns: str, *names: str) -> None:
    k("wait", "-n", ns, "--for=condition=Ready", "--timeout=30s", *[f"pod/{n}" for n in names])


def processes(k, ns: str, name: str, *container: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process `ps` shows in the container."""
    out = k("exec", "-n", ns, name, *container, "--", "ps", "-eo", "pid=,args=")
    return [(int(pid), args) for pid, args in (line.strip().split(None, 1) for line in out.splitlines())]


def test_a_container_sees_only_its_own_processes(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, pod("sleeper", ["sleep", "3600"], terminationGracePeriodSeconds=0),
          {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agnhost"},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                    "args": ["netexec"]}]}})
    wait_ready(k, ns, "sleeper", "agnhost")
    seen = processes(k, ns, "sleeper")
    assert seen[0] == (1, "sleep 3600") and [args for _, args in seen[1:]] == ["ps -eo pid=,args="], seen
    seen = processes(k, ns, "agnhost")
    assert seen[0][0] == 1 and "agnhost netexec" in seen[0][1] and len(seen) == 2, seen
    # This test's own process is the node's, not the pod's: no such process there, so no signal.
    res = k.run("exec", "-n", ns, "sleeper", "--", "kill", "-0", str(os.getpid()), check=False)
    assert res.returncode == 1 and "No such process" in res.stderr, res.stderr
    # PID 1 ignores a SIGTERM it has no handler for, even from inside its own namespace.
    k("exec", "-n", ns, "sleeper", "--", "kill", "-TERM", "1")
    time.sleep(0.3)
    status = json.loads(k("get", "pod", "-n", ns, "sleeper", "-o", "json"))["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0 and "running" in status["state"]


def test_the_docs_share_process_namespace(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, SHARED)
    wait_ready(k, ns, "nginx")
    seen = processes(k, ns, "nginx", "-c", "shell")
    assert seen[0][0] == 1 and seen[0][1].endswith("skiff.images pause"), seen
    commands = [args for _, args in seen]
    assert "sleep 3600" in commands, seen
    nginx_pid = next(pid for pid, args in seen if args.endswith("skiff.images nginx -g daemon off;"))
    # As in the docs: signal nginx from the shell container, and it reconfigures.
    k("exec", "-n", ns, "nginx", "-c", "shell", "--", "kill", "-HUP", str(nginx_pid))
    wait_for(lambda: "signal 1 (SIGHUP) received, reconfiguring" in k("logs", "-n", ns, "nginx", "-c", "nginx"), 5)
    # nginx's own way finds its master in the namespace too.
    res = k.run("exec", "-n", ns, "nginx", "-c", "nginx", "--", "nginx", "-s", "reopen")
    assert res.returncode == 0 and "signal process started" in res.stderr, res.stderr
    wait_for(lambda: "reopening logs" in k("logs", "-n", ns, "nginx", "-c", "nginx"), 5)
    statuses = json.loads(k("get", "pod", "-n", ns, "nginx", "-o", "json"))["status"]["containerStatuses"]
    assert [s["restartCount"] for s in statuses] == [0, 0]
    # A container's program is not PID 1 here: SIGTERM ends `sleep` at once.
    t0 = time.monotonic()
    k("delete", "pod", "-n", ns, "nginx")
    assert time.monotonic() - t0 < 5


def test_host_pid(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, pod("host-pid", ["sleep", "3600"], hostPID=True, terminationGracePeriodSeconds=0))
    wait_ready(k, ns, "host-pid")
    out = k("exec", "-n", ns, "host-pid", "--", "sh", "-c", f"cat /proc/1/comm; kill -0 {os.getpid()} && echo seen")
    with open("/proc/1/comm") as f:
        assert out == f.read() + "seen\n"


def test_deleting_a_pod_waits_for_a_pid_1_that_ignores_sigterm(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    grace = 3
    apply(k, ns, pod("ignores", ["sleep", "3600"], terminationGracePeriodSeconds=grace),
          pod("traps", ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], terminationGracePeriodSeconds=grace))
    wait_ready(k, ns, "ignores", "traps")
    took = {}
    for name in ("ignores", "traps"):
        t0 = time.monotonic()
        k("delete", "pod", "-n", ns, name)
        took[name] = time.monotonic() - t0
    assert took["ignores"] >= grace and took["traps"] < grace - 1, took


def test_share_process_namespace_and_host_pid_are_refused_together(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    res = k.run("apply", "-n", ns, "-f", "-", check=False,
                input=json.dumps(pod("both", ["sleep", "1"], hostPID=True, shareProcessNamespace=True)))
    assert res.returncode != 0
    assert ('The Pod "both" is invalid: spec.securityContext.shareProcessNamespace: Invalid value: true: '
            "ShareProcessNamespace and HostPID cannot both be enabled") in res.stderr, res.stderr
