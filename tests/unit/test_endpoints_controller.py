"""The legacy Endpoints object the EndpointSlice controller keeps for each Service."""

from __future__ import annotations

from skiff.controllers.endpointslice import desired_groups, legacy_endpoints


def svc(cluster_ip: str = "10.96.0.20", labels: dict | None = None) -> dict:
    md = {"name": "web", "namespace": "default", "uid": "u"} | ({"labels": labels} if labels else {})
    return {"metadata": md, "spec": {"clusterIP": cluster_ip, "selector": {"app": "web"},
                                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def pod(name: str, ip: str, ready: bool = True) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_addresses_are_sorted_by_address_not_by_pod_name_or_text():
    pods = [pod("a", "10.244.2.5"), pod("b", "10.244.10.3"), pod("c", "10.244.1.9"), pod("d", "10.244.2.7", ready=False),
            pod("e", "10.244.0.4", ready=False)]
    ep = legacy_endpoints(svc(), desired_groups(svc(), pods))
    [subset] = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.1.9", "10.244.2.5", "10.244.10.3"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.4", "10.244.2.7"]


def test_nothing_to_list_leaves_the_fields_out_and_headless_services_are_marked():
    ep = legacy_endpoints(svc(), desired_groups(svc(), []))
    assert "subsets" not in ep and "labels" not in ep["metadata"]
    headless = svc("None", labels={"team": "a"})
    ep = legacy_endpoints(headless, desired_groups(headless, [pod("a", "10.244.0.5")]))
    assert ep["metadata"]["labels"] == {"team": "a", "service.kubernetes.io/headless": ""}
