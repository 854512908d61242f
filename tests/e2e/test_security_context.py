"""Pod and container securityContext users, groups and capabilities in a real cluster, driven by the
real kubectl, following the Kubernetes docs' "Configure a Security Context for a Pod or Container":
runAsUser, runAsGroup, supplementalGroups and fsGroup for processes, exec sessions and volumes,
capabilities (containerd 2.x's default set, add/drop, privileged), and runAsNonRoot refusing a
container that would run as root.

Needs root (a cluster). `busybox` is the host's programs; agnhost is a built-in image, started by
the node's fork server.
"""

from __future__ import annotations

import json
import os

import pytest

from skiff.net import names
from skiff.net.ns import ns_pin_path
from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

# The docs' security-context.yaml (busybox:1.28 as the image), with supplementalGroups as in 1.33's copy.
DEMO = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "security-context-demo"},
    "spec": {
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
        "volumes": [{"name": "sec-ctx-vol", "emptyDir": {}}],
        "containers": [{"name": "sec-ctx-demo", "image": "busybox:1.28", "command": ["sh", "-c", "sleep 1h"],
                        "volumeMounts": [{"name": "sec-ctx-vol", "mountPath": "/data/demo"}],
                        "securityContext": {"allowPrivilegeEscalation": False}}],
        "terminationGracePeriodSeconds": 0,
    },
}


def apply(k, ns: str, doc: dict) -> None:
    k("apply", "-n", ns, "-f", "-", input=json.dumps(doc))


def pod_json(k, ns: str, name: str) -> dict:
    return json.loads(k("get", "pod", "-n", ns, name, "-o", "json"))


def wait_running(k, ns: str, name: str) -> None:
    try:
        wait_for(lambda: pod_json(k, ns, name)["status"].get("phase") == "Running", 30, 0.2)
    except AssertionError:
        print(k("describe", "pod", "-n", ns, name, check=False))
        raise


def process_status(k, ns: str, name: str, cmdline: str | None) -> dict[str, str]:
    """/proc/<pid>/status fields of the pod's process running `cmdline` (None: its only process): found
    from the host by its UTS namespace, the pod's (each container has a PID and mount namespace of its
    own, so the command alone is not enough)."""
    pod = pod_json(k, ns, name)
    node_netns = names.node_netns_name(pod["spec"]["nodeName"])
    pin = ns_pin_path(names.pod_netns_name(node_netns, ns, name, pod["metadata"]["uid"]), "uts")
    mine = os.stat(pin).st_ino
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/uts").st_ino == mine and cmdline in (None, open(f"/proc/{pid}/cmdline").read()):
                found.append(open(f"/proc/{pid}/status").read())
        except OSError:
            continue
    assert len(found) == 1, found
    return dict(line.split(":\t", 1) for line in found[0].splitlines() if ":\t" in line)


def sh(k, ns: str, name: str, script: str) -> str:
    return k("exec", "-n", ns, name, "--", "sh", "-c", script).rstrip("\n")


def test_the_docs_security_context_demo(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, DEMO)
    wait_running(k, ns, "security-context-demo")
    pod = "security-context-demo"
    # kubectl exec runs as the container's user, with the pod's groups.
    uid, gid, groups = sh(k, ns, pod, "id -u; id -g; id -G").splitlines()
    assert (uid, gid, sorted(groups.split())) == ("1000", "3000", ["2000", "3000", "4000"])
    # The container's own process too (its sleep), with no_new_privs from allowPrivilegeEscalation: false.
    fields = process_status(k, ns, pod, "sleep\x001h\x00")
    assert fields["Uid"].split()[0] == "1000" and fields["Gid"].split()[0] == "3000"
    assert fields["Groups"].split() == ["2000", "3000", "4000"] and fields["NoNewPrivs"].strip() == "1"
    # The emptyDir belongs to the fsGroup, with setgid, so what the user writes there does too.
    assert sh(k, ns, pod, "stat -c '%A %u %g' /data/demo") == "drwxrwsrwx 0 2000"
    sh(k, ns, pod, "echo hello > /data/demo/testfile")
    assert sh(k, ns, pod, "stat -c '%A %u %g' /data/demo/testfile") == "-rw-r--r-- 1000 2000"
    # Not root: what only root may do is refused.
    r = k.run("exec", "-n", ns, pod, "--", "sh", "-c", "touch /etc/skiff-should-not-exist", check=False)
    assert r.returncode != 0 and not os.path.exists("/etc/skiff-should-not-exist")


def test_built_in_image_runs_as_the_user_and_volume_files_belong_to_the_fs_group(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    k("create", "configmap", "cfg", "-n", ns, "--from-literal=key=value")
    apply(k, ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netexec"},
        "spec": {"securityContext": {"runAsUser": 1234, "runAsGroup": 5678, "fsGroup": 2000},
                 "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                 "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                 "args": ["netexec", "--http-port=8080"],
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
                 "terminationGracePeriodSeconds": 0}})
    wait_running(k, ns, "netexec")
    # /shell runs the command from the agnhost process itself, so this is the fork server's child.
    out = json.loads(sh(k, ns, "netexec", "curl -s 'http://127.0.0.1:8080/shell?cmd=id+-u;id+-g;id+-G'"))
    uid, gid, groups = out["output"].splitlines()[:3]
    assert (uid, gid, sorted(groups.split())) == ("1234", "5678", ["2000", "5678"])
    # A configMap volume's files and directories belong to the fsGroup, group-readable.
    assert sh(k, ns, "netexec", "cat /etc/cfg/key") == "value"
    assert sh(k, ns, "netexec", "stat -L -c '%a %g' /etc/cfg/key") == "644 2000"
    assert sh(k, ns, "netexec", "stat -L -c '%A %g' /etc/cfg/..data") == "drwxr-sr-x 2000"
    # An update is a new version directory: it gets the group too.
    k("patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"key":"changed"}}')
    wait_for(lambda: sh(k, ns, "netexec", "cat /etc/cfg/key") == "changed", 10, 0.2)
    assert sh(k, ns, "netexec", "stat -L -c '%g' /etc/cfg/key") == "2000"


def test_run_as_non_root_refuses_a_root_container_with_the_kubelets_words(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    base = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
            "terminationGracePeriodSeconds": 0}
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "image-root"},
                  "spec": {**base, "securityContext": {"runAsNonRoot": True}}})
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "uid-zero"},
                  "spec": {**base, "securityContext": {"runAsNonRoot": True, "runAsUser": 0}}})
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "non-root"},
                  "spec": {**base, "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}})

    def waiting(name: str) -> dict:
        statuses = pod_json(k, ns, name)["status"].get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting") or {}

    for name, words in (("image-root", "container has runAsNonRoot and image will run as root"),
                        ("uid-zero", "container's runAsUser breaks non-root policy")):
        w = wait_for(lambda name=name: waiting(name) if waiting(name).get("reason") == "CreateContainerConfigError"
                     else None, 15, 0.2)
        uid = pod_json(k, ns, name)["metadata"]["uid"]
        assert w["message"] == f'{words} (pod: "{name}_{ns}({uid})", container: c)'
        assert "CreateContainerConfigError" in k("get", "pod", "-n", ns, name)
    wait_running(k, ns, "non-root")
    assert sh(k, ns, "non-root", "id -u") == "1000"


def test_a_container_that_is_not_root_may_bind_a_low_port_as_with_containerd(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "low-port"},
        "spec": {"securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                 "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                 "args": ["netexec", "--http-port=80"]}],
                 "terminationGracePeriodSeconds": 0}})
    wait_running(k, ns, "low-port")
    assert sh(k, ns, "low-port", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start") == "0"
    assert sh(k, ns, "low-port", "curl -s http://127.0.0.1:80/hostname") == "low-port"


# containerd 2.x's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE.
DEFAULT_CAPS = "00000000000005fb"
WITH_NET_ADMIN_SYS_TIME = "00000000020015fb"  # + NET_ADMIN (12) and SYS_TIME (25), the docs' demo-4


def test_capabilities_as_the_docs_demo_shows_them(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    sleeper = {"name": "sec-ctx-3", "image": "busybox:1.28", "command": ["sleep", "1h"]}
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "security-context-demo-3"},
                  "spec": {"containers": [sleeper], "terminationGracePeriodSeconds": 0}})
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "security-context-demo-4"},
                  "spec": {"containers": [{**sleeper, "name": "sec-ctx-4", "securityContext": {
                      "capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}}}], "terminationGracePeriodSeconds": 0}})
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
                  "spec": {"containers": [{**sleeper, "name": "p", "securityContext": {"privileged": True}}],
                           "terminationGracePeriodSeconds": 0}})
    apply(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "built-in"},
                  "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                           "args": ["netexec", "--http-port=8080"]}],
                           "terminationGracePeriodSeconds": 0}})
    for name in ("security-context-demo-3", "security-context-demo-4", "privileged", "built-in"):
        wait_running(k, ns, name)
    # A privileged container holds all the runtime holds (here the test's own set, which a VM's
    # init may already have cut).
    every = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:"))
    for name, caps in (("security-context-demo-3", DEFAULT_CAPS), ("security-context-demo-4", WITH_NET_ADMIN_SYS_TIME),
                       ("privileged", every), ("built-in", DEFAULT_CAPS)):
        # The container's own process (a root one holds its whole set) and an exec session alike.
        fields = process_status(k, ns, name, None)
        assert (fields["CapPrm"], fields["CapEff"], fields["CapBnd"]) == (caps, caps, caps), (name, fields)
        exec_caps = sh(k, ns, name, "grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status").split()
        assert exec_caps == ["CapPrm:", caps, "CapEff:", caps, "CapBnd:", caps], (name, exec_caps)
    # NET_ADMIN is what changing the pod's network takes: not in the default set.
    add = ("ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
    r = k.run("exec", "-n", ns, "security-context-demo-3", "--", *add, check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, (r.stdout, r.stderr)
    k("exec", "-n", ns, "security-context-demo-4", "--", *add)
    assert "192.0.2.1/32" in k("exec", "-n", ns, "security-context-demo-4", "--", "ip", "addr", "show", "lo")
    # The built-in image's process (the fork server's child, which never execs) holds the same set.
    out = json.loads(sh(k, ns, "built-in", "curl -s 'http://127.0.0.1:8080/shell?cmd=grep+CapEff+/proc/self/status'"))
    assert out["output"].split() == ["CapEff:", DEFAULT_CAPS], out
