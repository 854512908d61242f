"""StatefulSets in a real cluster, driven by the real kubectl, after the docs' "StatefulSet Basics":
pods web-0, web-1 made in order, each with a stable DNS name through the headless Service
(`web-0.nginx`), scaling up and down in order, a rolling update from the highest ordinal down, and
`kubectl rollout status`.

Needs root (a cluster). nginx is a built-in image; busybox is the host's programs.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

# The tutorial's headless Service and StatefulSet, without its volumeClaimTemplates (Skiff has no
# PersistentVolumes).
WEB = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
     "spec": {"ports": [{"port": 80, "name": "web"}], "clusterIP": "None", "selector": {"app": "nginx"}}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
     "spec": {"serviceName": "nginx", "replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
              "template": {"metadata": {"labels": {"app": "nginx"}},
                           "spec": {"terminationGracePeriodSeconds": 1,
                                    "containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.21",
                                                    "ports": [{"containerPort": 80, "name": "web"}]}]}}}},
]


def pods(k, ns: str) -> dict[str, dict]:
    items = json.loads(k("get", "pods", "-n", ns, "-l", "app=nginx", "-o", "json"))["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def created_order(k, ns: str) -> list[str]:
    out = k("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=StatefulSet,reason=SuccessfulCreate",
            "--sort-by=.metadata.creationTimestamp", "-o", "custom-columns=M:.message", "--no-headers")
    return [line.split()[2] for line in out.splitlines()]


def test_the_tutorials_statefulset_has_ordered_pods_with_stable_names(cluster, cluster_ns):
    k, ns = cluster.kubectl, cluster_ns
    k("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": WEB}))
    k("rollout", "status", "-n", ns, "sts/web", "--timeout=60s")
    assert created_order(k, ns) == ["web-0", "web-1"]
    assert k("get", "sts", "-n", ns, "web", "--no-headers").split()[:2] == ["web", "2/2"]
    # Each pod's hostname is its name, and the headless Service gives it a DNS name.
    for name in ("web-0", "web-1"):
        assert k("exec", "-n", ns, name, "--", "hostname") == f"{name}\n"
    ips = {n: p["status"]["podIP"] for n, p in pods(k, ns).items()}
    k("run", "-n", ns, "dns", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    k("wait", "-n", ns, "--for=condition=Ready", "pod/dns", "--timeout=30s")
    for name in ("web-0", "web-1"):
        out = k("exec", "-n", ns, "dns", "--", "nslookup", f"{name}.nginx")
        assert f"Name:\t{name}.nginx.{ns}.svc.cluster.local\nAddress: {ips[name]}" in out, out

    # Scaling: up in order, down from the top.
    k("scale", "-n", ns, "sts/web", "--replicas=4")
    k("rollout", "status", "-n", ns, "sts/web", "--timeout=60s")
    assert created_order(k, ns) == ["web-0", "web-1", "web-2", "web-3"]
    k("scale", "-n", ns, "sts/web", "--replicas=2")
    wait_for(lambda: sorted(pods(k, ns)) == ["web-0", "web-1"], 30, 0.2)

    # A rolling update replaces web-1 before web-0, each with a new pod of the same name.
    k("set", "image", "-n", ns, "sts/web", "nginx=registry.k8s.io/nginx-slim:0.22")
    k("rollout", "status", "-n", ns, "sts/web", "--timeout=60s")
    now = pods(k, ns)
    assert {n: p["spec"]["containers"][0]["image"] for n, p in now.items()} == {
        "web-0": "registry.k8s.io/nginx-slim:0.22", "web-1": "registry.k8s.io/nginx-slim:0.22"}
    deleted = k("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=StatefulSet,reason=SuccessfulDelete",
                "--sort-by=.metadata.creationTimestamp", "-o", "custom-columns=M:.message", "--no-headers")
    assert [line.split()[2] for line in deleted.splitlines()] == ["web-3", "web-2", "web-1", "web-0"]
    status = json.loads(k("get", "sts", "-n", ns, "web", "-o", "json"))["status"]
    assert status["currentRevision"] == status["updateRevision"] and status["updatedReplicas"] == 2
    k("delete", "sts", "-n", ns, "web")
    wait_for(lambda: not pods(k, ns), 30, 0.2)
