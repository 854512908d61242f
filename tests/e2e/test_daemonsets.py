"""DaemonSets in a real cluster, driven by the real kubectl: a pod on every node, `kubectl rollout
status`, a node selector that follows node labels, a rolling update node by node, and deletion with
the DaemonSet's pods.

Needs root (a cluster). agnhost is a built-in image, started by the node's fork server.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost"


def daemonset(name: str, tag: str = "2.53", **pod_spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1, **pod_spec,
                                           "containers": [{"name": "c", "image": f"{AGNHOST}:{tag}",
                                                           "args": ["netexec"]}]}}}}


def apply(k, ns: str, doc: dict) -> None:
    k("apply", "-n", ns, "-f", "-", input=json.dumps(doc))


def pods_by_node(k, ns: str, app: str) -> dict[str, list[str]]:
    """node -> images of the live pods there."""
    out: dict[str, list[str]] = {}
    for p in json.loads(k("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "json"))["items"]:
        if p["metadata"].get("deletionTimestamp") or not p["spec"].get("nodeName"):
            continue
        out.setdefault(p["spec"]["nodeName"], []).append(p["spec"]["containers"][0]["image"])
    return out


def nodes(k) -> list[str]:
    return sorted(k("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split())


def test_a_daemonset_runs_one_pod_per_node_and_rolls_out_node_by_node(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    apply(k, ns, daemonset("agent"))
    k("rollout", "status", "-n", ns, "ds/agent", "--timeout=30s")
    everywhere = nodes(k)
    assert pods_by_node(k, ns, "agent") == {n: [f"{AGNHOST}:2.53"] for n in everywhere}
    row = k("get", "ds", "-n", ns, "agent", "--no-headers").split()
    want = str(len(everywhere))
    assert row[:7] == ["agent", want, want, want, want, want, "<none>"], row
    k("set", "image", "-n", ns, "ds/agent", f"c={AGNHOST}:2.52")
    k("rollout", "status", "-n", ns, "ds/agent", "--timeout=60s")
    wait_for(lambda: pods_by_node(k, ns, "agent") == {n: [f"{AGNHOST}:2.52"] for n in everywhere}, 30, 0.2)
    # Node by node: maxUnavailable 1 means one old pod deleted at a time, each after the one before
    # was replaced (the Events come in create/delete pairs).
    reasons = k("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=DaemonSet",
                "--sort-by=.metadata.creationTimestamp", "-o", "custom-columns=R:.reason", "--no-headers").split()
    assert reasons.count("SuccessfulDelete") == len(everywhere) and reasons.count("SuccessfulCreate") == 2 * len(everywhere)
    k("delete", "ds", "-n", ns, "agent")
    wait_for(lambda: not json.loads(k("get", "pods", "-n", ns, "-l", "app=agent", "-o", "json"))["items"], 30, 0.2)


def test_a_node_selector_follows_node_labels(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    label = f"edge-{ns}"
    apply(k, ns, daemonset("edge", nodeSelector={label: "yes"}))
    wait_for(lambda: k("get", "ds", "-n", ns, "edge", "-o", "jsonpath={.status.observedGeneration}") == "1", 10, 0.1)
    assert k("get", "ds", "-n", ns, "edge", "-o", "jsonpath={.status.desiredNumberScheduled}") == "0"
    chosen = nodes(k)[0]
    k("label", "node", chosen, f"{label}=yes")
    try:
        wait_for(lambda: pods_by_node(k, ns, "edge") == {chosen: [f"{AGNHOST}:2.53"]}, 30, 0.2)
        assert k("get", "ds", "-n", ns, "edge", "--no-headers").split()[6] == f"{label}=yes"
    finally:
        k("label", "node", chosen, f"{label}-")
    wait_for(lambda: pods_by_node(k, ns, "edge") == {}, 30, 0.2)
