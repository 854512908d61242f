"""LoadBalancer address assignment by the control plane alone (no root needed): pool exhaustion,
requested addresses, release on delete and type change, and allocateLoadBalancerNodePorts."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import ControlPlane


@pytest.fixture(scope="module")
def cp():
    plane = ControlPlane(lb_pool="172.31.250.10-172.31.250.11")
    try:
        plane.start()
        yield plane
    finally:
        plane.cleanup()


def external_ip(k, name: str, timeout: float = 2.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ing = json.loads(k("get", "svc", name, "-o", "json"))["status"].get("loadBalancer", {}).get("ingress")
        if ing:
            return ing[0]["ip"]
        time.sleep(0.02)
    return None


def lb(name: str, extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec: {{type: LoadBalancer, selector: {{app: x}}, ports: [{{port: 80}}]{extra}}}\n")


def test_pool_assignment_exhaustion_and_release(cp):
    k = cp.kubectl
    k("apply", "-f", "-", input=lb("a"))
    t0 = time.monotonic()
    a = external_ip(k, "a")
    assert a == "172.31.250.10" and time.monotonic() - t0 < 1.0
    k("apply", "-f", "-", input=lb("b", ", loadBalancerIP: 172.31.250.11"))
    assert external_ip(k, "b") == "172.31.250.11"
    k("apply", "-f", "-", input=lb("c"))
    assert external_ip(k, "c", 1.0) is None
    assert k("get", "svc", "c").splitlines()[1].split()[3] == "<pending>"
    events = k("get", "events", "--field-selector", "involvedObject.name=c")
    assert "AllocationFailed" in events and "no available IPs" in events and "--lb-pool" in events
    k("delete", "svc", "a")
    assert external_ip(k, "c", 3.0) == "172.31.250.10"  # the freed address goes to the waiting Service
    k("patch", "svc", "b", "-p", '{"spec":{"type":"ClusterIP"}}')
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and json.loads(k("get", "svc", "b", "-o", "json"))["status"].get(
            "loadBalancer", {}).get("ingress"):
        time.sleep(0.05)
    assert not json.loads(k("get", "svc", "b", "-o", "json"))["status"].get("loadBalancer", {}).get("ingress")


def test_allocate_load_balancer_node_ports_false(cp):
    k = cp.kubectl
    k("apply", "-f", "-", input=lb("nonp", ", allocateLoadBalancerNodePorts: false"))
    svc = json.loads(k("get", "svc", "nonp", "-o", "json"))
    assert "nodePort" not in svc["spec"]["ports"][0]
    assert k("get", "svc", "nonp").splitlines()[1].split()[4] == "80/TCP"
