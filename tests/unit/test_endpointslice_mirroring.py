"""Which EndpointSlices mirror a hand-written Endpoints object (skiff.controllers.endpointslicemirroring)."""

from __future__ import annotations

from skiff.controllers.endpointslicemirroring import mirrored_slices, wants_mirror


def endpoints(subsets: list, labels: dict | None = None) -> dict:
    md = {"name": "db", "namespace": "default", "annotations": {"team": "a"}}
    if labels:
        md["labels"] = labels
    return {"metadata": md, "subsets": subsets}


def test_each_subset_and_family_becomes_a_slice_with_readiness_kept():
    ep = endpoints([{"addresses": [{"ip": "192.0.2.10", "hostname": "db-0"}], "notReadyAddresses": [{"ip": "192.0.2.11"}],
                     "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]},
                    {"addresses": [{"ip": "2001:db8::1"}], "ports": [{"port": 53, "protocol": "UDP"}]}],
                   labels={"app": "db"})
    [v4, v6] = mirrored_slices(ep)
    assert v4["addressType"] == "IPv4" and v6["addressType"] == "IPv6"
    assert v4["endpoints"] == [{"addresses": ["192.0.2.10"], "conditions": {"ready": True}, "hostname": "db-0"},
                               {"addresses": ["192.0.2.11"], "conditions": {"ready": False}}]
    assert v4["ports"] == [{"name": "sql", "port": 5432, "protocol": "TCP"}]
    assert v4["metadata"]["labels"] == {"app": "db", "kubernetes.io/service-name": "db",
                                        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    assert v4["metadata"]["annotations"] == {"team": "a"}


def test_large_subsets_are_split_into_slices_of_100():
    ep = endpoints([{"addresses": [{"ip": f"192.0.2.{i}"} for i in range(1, 251)], "ports": [{"port": 80}]}])
    assert [len(s["endpoints"]) for s in mirrored_slices(ep)] == [100, 100, 50]


def test_only_selectorless_services_without_skip_mirror_are_mirrored():
    svc = {"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}}
    ep = endpoints([])
    assert wants_mirror(svc, ep)
    assert not wants_mirror({**svc, "spec": {"selector": {"app": "db"}}}, ep)
    assert not wants_mirror(svc, endpoints([], labels={"endpointslice.kubernetes.io/skip-mirror": "true"}))
    assert not wants_mirror(None, ep) and not wants_mirror(svc, None)
