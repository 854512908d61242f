"""hostNetwork pods in a real cluster, driven by the real kubectl: the node's network and hostname,
yet their own mount namespace with the kubelet's /etc files and their volumes, as on Kubernetes;
and deleting one removes its own namespaces, never the node's.

Needs root (a cluster). The pods run the `busybox` generic image, that is the host's programs.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from skiff.net import names
from skiff.net.ns import netns_exists, ns_pin_path, pin_dir, sandbox_files_dir
from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def apply(k, ns: str, docs: list[dict]) -> None:
    k("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def host_pod(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                     **spec.pop("container", {})}], **spec}}


def running(k, ns: str, name: str) -> dict:
    def get() -> dict | None:
        pod = json.loads(k("get", "pod", "-n", ns, name, "-o", "json"))
        return pod if pod["status"].get("phase") == "Running" else None
    try:
        return wait_for(get, 30, 0.2)
    except AssertionError:
        print(k("describe", "pod", "-n", ns, name, check=False))
        raise


def sh(k, ns: str, name: str, script: str) -> str:
    return k("exec", "-n", ns, name, "--", "sh", "-c", script)


def test_host_network_pod_has_its_volumes_the_nodes_name_and_the_nodes_network(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hello"}},
        host_pod("agent", volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
                 container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/skiff-test-cfg"}]}),
    ])
    pod = running(k, ns, "agent")
    node, node_ip = pod["spec"]["nodeName"], pod["status"]["hostIP"]
    assert pod["status"]["podIP"] == node_ip

    assert sh(k, ns, "agent", "cat /etc/skiff-test-cfg/greeting") == "hello"
    # The ServiceAccount token volume too, which every pod gets.
    assert sh(k, ns, "agent", "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace") == ns
    # The hostname a hostNetwork pod sees on Kubernetes: its node's.
    assert sh(k, ns, "agent", "hostname").strip() == node
    # The node's network: its address is on the pod's interfaces.
    assert re.search(rf"\binet {re.escape(node_ip)}/", sh(k, ns, "agent", "ip -o -4 addr show"))
    # The mount point was made in the pod's own view, not on the machine.
    assert not os.path.exists("/etc/skiff-test-cfg")
    events = k("get", "events", "-n", ns, "--field-selector", "involvedObject.name=agent")
    assert "VolumesNotMounted" not in events and "FailedMount" not in events

    # An update reaches the mounted file, as for any pod.
    k("patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"greeting":"bonjour"}}')
    wait_for(lambda: sh(k, ns, "agent", "cat /etc/skiff-test-cfg/greeting") == "bonjour", 10, 0.2)

    # Deleting the pod removes its own namespaces' pins and /etc files and leaves the node's network alone.
    node_netns = names.node_netns_name(node)
    key = names.pod_netns_name(node_netns, ns, "agent", pod["metadata"]["uid"])
    pins = [ns_pin_path(key, kind) for kind in ("uts", "mnt")] + [sandbox_files_dir(pin_dir(node_netns), key)]
    assert all(os.path.exists(p) for p in pins)
    k("delete", "pod", "agent", "-n", ns, "--wait=true", "--timeout=30s")
    wait_for(lambda: not any(os.path.exists(p) for p in pins), 10, 0.1)
    assert netns_exists(node_netns)
    nodes = json.loads(k("get", "node", node, "-o", "json"))
    assert {c["type"]: c["status"] for c in nodes["status"]["conditions"]}["Ready"] == "True"


def test_dns_policy_and_hosts_file_of_host_network_pods(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, [
        host_pod("cluster-dns", dnsPolicy="ClusterFirstWithHostNet"),
        host_pod("node-dns", hostAliases=[{"ip": "10.1.2.3", "hostnames": ["alias.example"]}]),
    ])
    running(k, ns, "cluster-dns")
    running(k, ns, "node-dns")
    dns_ip = json.loads(k("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json"))["spec"]["clusterIP"]

    # ClusterFirstWithHostNet: the cluster's DNS and search path.
    resolv = sh(k, ns, "cluster-dns", "cat /etc/resolv.conf")
    assert f"nameserver {dns_ip}" in resolv and f"{ns}.svc.cluster.local" in resolv

    # ClusterFirst on a hostNetwork pod falls back to the node's resolv.conf (dnsPolicy Default).
    with open("/etc/resolv.conf") as f:
        host_servers = [line.split()[1] for line in f if line.startswith("nameserver")]
    resolv = sh(k, ns, "node-dns", "cat /etc/resolv.conf")
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == host_servers
    assert f"nameserver {dns_ip}" not in resolv

    # The node's hosts file, plus the pod's hostAliases.
    hosts = sh(k, ns, "node-dns", "cat /etc/hosts")
    assert hosts.startswith("# Kubernetes-managed hosts file (host network).")
    assert re.search(r"^10\.1\.2\.3\talias\.example$", hosts, re.M)
    with open("/etc/hosts") as f:
        assert f.read() in hosts
