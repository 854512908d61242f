import base64
import copy
import ipaddress
import random

import pytest

from skiff.api.defaults import apply_defaults
from skiff.api.errors import APIError
from skiff.api.validation.service import prepare_for_update, validate_service
from skiff.apiserver.allocators import (
    ErrAllocated,
    ErrFull,
    ErrNotInRange,
    IPAllocator,
    PortAllocator,
    ServiceAllocations,
)

# ---- IPAllocator ---------------------------------------------------------------------------


def test_ip_network_and_broadcast_are_never_allocated():
    a = IPAllocator("10.0.0.0/24")
    assert a.size == 254
    for ip in ("10.0.0.0", "10.0.0.255", "10.0.1.1", "192.168.0.1"):
        with pytest.raises(ErrNotInRange) as e:
            a.allocate(ip)
        assert str(e.value) == (f"the provided IP ({ip}) is not in the valid range. "
                                "The range of valid IPs is 10.0.0.0/24")
    a.allocate("10.0.0.1")
    a.allocate("10.0.0.254")
    with pytest.raises(ErrAllocated) as e:
        a.allocate("10.0.0.1")
    assert str(e.value) == "provided IP is already allocated"


@pytest.mark.parametrize("cidr,band", [("10.0.0.0/28", 0), ("10.0.0.0/26", 16), ("10.0.0.0/24", 16),
                                       ("10.0.0.0/22", 64), ("10.0.0.0/16", 256), ("10.96.0.0/12", 256)])
def test_static_band_size(cidr, band):
    assert IPAllocator(cidr).static_band == band


def test_dynamic_allocation_uses_the_upper_band_first_then_fills_up():
    a = IPAllocator("10.0.0.0/24", random.Random(1))
    first = [a.allocate_next() for _ in range(254 - 16)]
    # 10.0.0.1-10.0.0.16 are the static band: untouched until the upper band is exhausted.
    assert all(int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.0.0.0")) > 16 for ip in first)
    assert len(set(first)) == len(first)
    rest = {a.allocate_next() for _ in range(16)}
    assert rest == {f"10.0.0.{i}" for i in range(1, 17)}
    with pytest.raises(ErrFull) as e:
        a.allocate_next()
    assert str(e.value) == "range is full"
    a.release("10.0.0.7")
    assert a.allocate_next() == "10.0.0.7"


def test_dynamic_allocation_is_random():
    a = IPAllocator("10.96.0.0/12", random.Random(7))
    ips = [a.allocate_next() for _ in range(5)]
    assert ips != sorted(ips) or len({ipaddress.ip_address(i).packed[2] for i in ips}) > 1


def test_ipv6_is_capped():
    a = IPAllocator("fd00::/64")
    assert a.family == "IPv6" and a.size == 65536
    a.allocate("fd00::1")
    with pytest.raises(ErrNotInRange):
        a.allocate("fd00::1:0:0")


def test_snapshot_is_the_big_endian_bitmap_and_restores():
    a = IPAllocator("10.0.0.0/24")
    a.allocate("10.0.0.1")   # offset 0
    a.allocate("10.0.0.10")  # offset 9
    snap = a.snapshot()
    assert snap["range"] == "10.0.0.0/24"
    assert base64.b64decode(snap["data"]) == bytes([0x02, 0x01])
    b = IPAllocator("10.0.0.0/24")
    b.restore(snap)
    assert b.allocated() == ["10.0.0.1", "10.0.0.10"] and b.used() == 2
    with pytest.raises(ValueError):
        IPAllocator("10.0.1.0/24").restore(snap)


# ---- PortAllocator -------------------------------------------------------------------------


def test_port_range_messages_and_band():
    p = PortAllocator("30000-32767")
    assert p.static_band == 86 and p.size == 2768
    with pytest.raises(ErrNotInRange) as e:
        p.allocate(80)
    assert str(e.value) == "provided port is not in the valid range. The range of valid ports is 30000-32767"
    p.allocate(30000)
    with pytest.raises(ErrAllocated) as e:
        p.allocate(30000)
    assert str(e.value) == "provided port is already allocated"
    for _ in range(50):
        assert p.allocate_next() >= 30086
    assert PortAllocator("32567-32767").static_band == 16
    assert PortAllocator("20000-32767").static_band == 128


def test_small_port_range_fills_and_reports_full():
    p = PortAllocator("31000-31009")
    assert p.static_band == 0
    assert sorted(p.allocate_next() for _ in range(10)) == list(range(31000, 31010))
    with pytest.raises(ErrFull):
        p.allocate_next()


# ---- ServiceAllocations --------------------------------------------------------------------


@pytest.fixture
def alloc():
    return ServiceAllocations(IPAllocator("10.96.0.0/12", random.Random(3)),
                              PortAllocator("30000-32767", random.Random(4)))


def svc(name="web", **spec):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
         "spec": {"ports": [{"port": 80}], "selector": {"app": name}, **spec}}
    apply_defaults(s)
    return s


def msgs(errs):
    return [str(e) for e in errs]


def test_cluster_ip_service(alloc):
    s = svc()
    assert alloc.allocate_create(s) == []
    spec = s["spec"]
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert alloc.ips.has(spec["clusterIP"])
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert "nodePort" not in spec["ports"][0]
    assert validate_service(s) == []


def test_requested_ip_taken_or_out_of_range(alloc):
    assert alloc.allocate_create(svc(clusterIP="10.96.0.5")) == []
    assert msgs(alloc.allocate_create(svc("b", clusterIP="10.96.0.5"))) == [
        'spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: '
        "provided IP is already allocated"]
    assert msgs(alloc.allocate_create(svc("c", clusterIP="10.0.0.5"))) == [
        'spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: failed to allocate IP 10.0.0.5: the provided IP '
        "(10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"]
    assert alloc.ips.used() == 1


def test_headless_and_external_name_get_no_ip(alloc):
    headless = svc(clusterIP="None")
    assert alloc.allocate_create(headless) == []
    assert headless["spec"]["clusterIPs"] == ["None"]
    assert headless["spec"]["ipFamilies"] == ["IPv4"] and headless["spec"]["ipFamilyPolicy"] == "SingleStack"
    selectorless = svc("db", clusterIP="None")
    del selectorless["spec"]["selector"]
    assert alloc.allocate_create(selectorless) == []
    assert selectorless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert selectorless["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    ext = svc("ext", type="ExternalName", externalName="example.com", ports=[])
    assert alloc.allocate_create(ext) == []
    assert "clusterIP" not in ext["spec"] and "ipFamilies" not in ext["spec"]
    assert alloc.ips.used() == 0


def test_dual_stack_is_refused(alloc):
    assert msgs(alloc.allocate_create(svc(ipFamilyPolicy="RequireDualStack"))) == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services']
    assert msgs(alloc.allocate_create(svc(clusterIP="fd00::10"))) == [
        'spec.clusterIPs[0]: Invalid value: []string{"fd00::10"}: IPv6 is not configured on this cluster']


def test_node_port_service(alloc):
    s = svc(type="NodePort", ports=[{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "port": 53}])
    assert alloc.allocate_create(s) == []
    ports = s["spec"]["ports"]
    assert all(30086 <= p["nodePort"] <= 32767 for p in ports)
    # TCP and UDP on one port number share their nodePort.
    assert ports[1]["nodePort"] == ports[2]["nodePort"] != ports[0]["nodePort"]
    assert alloc.ports.used() == 2
    assert validate_service(s) == []


def test_node_port_errors_and_revert(alloc):
    taken = svc("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert alloc.allocate_create(taken) == []
    s = svc("b", type="NodePort", ports=[{"name": "a", "port": 81}, {"name": "b", "port": 82, "nodePort": 30080}])
    assert msgs(alloc.allocate_create(s)) == ["spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"]
    # Nothing the failed create took stays allocated.
    assert alloc.ports.allocated() == [30080] and alloc.ips.used() == 1
    s = svc("c", type="NodePort", ports=[{"port": 80, "nodePort": 80}])
    assert msgs(alloc.allocate_create(s)) == [
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"]


def test_load_balancer_node_ports_and_health_check(alloc):
    lb = svc(type="LoadBalancer", allocateLoadBalancerNodePorts=False)
    assert alloc.allocate_create(lb) == []
    assert "nodePort" not in lb["spec"]["ports"][0]
    local = svc("l", type="LoadBalancer", externalTrafficPolicy="Local")
    assert alloc.allocate_create(local) == []
    assert local["spec"]["ports"][0]["nodePort"] and local["spec"]["healthCheckNodePort"]
    assert alloc.ports.used() == 2
    assert validate_service(local) == []


def test_range_full_is_an_internal_error():
    a = ServiceAllocations(IPAllocator("10.96.0.0/30"), PortAllocator("30000-30001"))
    assert a.allocate_create(svc("a")) == []
    assert a.allocate_create(svc("b")) == []
    with pytest.raises(APIError) as e:
        a.allocate_create(svc("c"))
    assert e.value.code == 500 and e.value.message == "Internal error occurred: failed to allocate a serviceIP: range is full"
    assert a.ips.used() == 2


def test_release(alloc):
    s = svc(type="NodePort")
    alloc.allocate_create(s)
    alloc.release(s)
    assert alloc.ips.used() == 0 and alloc.ports.used() == 0


def update(alloc, old, change):
    """What the API server does for an update: allocate, then the strategy, then validate."""
    new = copy.deepcopy(old)
    change(new["spec"])
    apply_defaults(new)
    errs = alloc.allocate_update(new, old)
    prepare_for_update(new, old)
    return new, errs + validate_service(new, old)


def test_update_like_kubectl_apply_keeps_allocations(alloc):
    old = svc(type="NodePort")
    alloc.allocate_create(old)
    fresh = svc(type="NodePort", ports=[{"port": 80, "targetPort": 8080}])
    fresh["metadata"] = old["metadata"]
    assert alloc.allocate_update(fresh, old) == []
    assert fresh["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert fresh["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]
    assert alloc.ports.used() == 1 and alloc.ips.used() == 1


def test_cluster_ip_to_node_port_and_back(alloc):
    old = svc()
    alloc.allocate_create(old)
    np, errs = update(alloc, old, lambda s: s.update(type="NodePort"))
    assert errs == [] and np["spec"]["ports"][0]["nodePort"] and np["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert alloc.ports.used() == 1
    back, errs = update(alloc, np, lambda s: s.update(type="ClusterIP"))
    assert errs == [] and "nodePort" not in back["spec"]["ports"][0] and "externalTrafficPolicy" not in back["spec"]
    assert alloc.ports.used() == 0 and alloc.ips.used() == 1


def test_to_external_name_and_back(alloc):
    old = svc()
    alloc.allocate_create(old)

    def to_external(s):
        s.update(type="ExternalName", externalName="example.com")
        s.pop("internalTrafficPolicy")

    ext, errs = update(alloc, old, to_external)
    assert errs == [] and "clusterIP" not in ext["spec"]
    assert alloc.ips.used() == 0

    def to_cluster_ip(s):
        s.update(type="ClusterIP")
        s.pop("externalName")

    back, errs = update(alloc, ext, to_cluster_ip)
    assert errs == [] and alloc.ips.has(back["spec"]["clusterIP"])
    assert back["spec"]["ipFamilies"] == ["IPv4"]


def test_update_changing_a_node_port(alloc):
    old = svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    alloc.allocate_create(old)
    new, errs = update(alloc, old, lambda s: s["ports"][0].update(nodePort=30081))
    assert errs == [] and alloc.ports.allocated() == [30081]
    other = svc("b", type="NodePort", ports=[{"port": 80, "nodePort": 30500}])
    alloc.allocate_create(other)
    _, errs = update(alloc, new, lambda s: s["ports"][0].update(nodePort=30500))
    assert msgs(errs)[0] == "spec.ports[0].nodePort: Invalid value: 30500: provided port is already allocated"
    assert alloc.ports.allocated() == [30081, 30500]


def test_rollback_update_restores_the_old_allocations(alloc):
    old = svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    alloc.allocate_create(old)
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["nodePort"] = 30081
    assert alloc.allocate_update(new, old) == []
    assert alloc.ports.allocated() == [30081]
    alloc.rollback_update(new, old)
    assert alloc.ports.allocated() == [30080]
    assert alloc.ips.has(old["spec"]["clusterIP"])


def test_snapshot_restore_round_trip(alloc):
    s = svc(type="NodePort")
    alloc.allocate_create(s)
    fresh = ServiceAllocations(IPAllocator("10.96.0.0/12"), PortAllocator("30000-32767"))
    fresh.restore(alloc.snapshot())
    assert fresh.ips.allocated() == [s["spec"]["clusterIP"]]
    assert fresh.ports.allocated() == [s["spec"]["ports"][0]["nodePort"]]


def test_repair_rebuilds_from_services(alloc):
    a = svc("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}], clusterIP="10.96.0.20")
    alloc.allocate_create(a)
    alloc.ips.allocate("10.96.0.99")  # leaked: no Service owns it
    alloc.ports.allocate(30099)
    b = svc("b", clusterIP="10.96.0.21")
    b["spec"].update(clusterIPs=["10.96.0.21"])  # stored but never allocated
    dup = svc("c", clusterIP="10.96.0.20")
    dup["spec"].update(clusterIPs=["10.96.0.20"])
    out_of_range = svc("d", type="NodePort", ports=[{"port": 80, "nodePort": 80}], clusterIP="10.0.0.1")
    out_of_range["spec"].update(clusterIPs=["10.0.0.1"])
    messages = alloc.repair([a, b, dup, out_of_range])
    assert messages == [
        "the cluster IP 10.96.0.21 for service default/b is not allocated; repairing",
        "the cluster IP 10.96.0.20 for service default/c was assigned to multiple services; please recreate",
        "the cluster IP 10.0.0.1 for service default/d is not within the service CIDR 10.96.0.0/12; please recreate",
        "the cluster IP 10.96.0.99 appears to have leaked: cleaning up",
        "the node port 80 for service default/d is not within the port range 30000-32767; please recreate",
        "the node port 30099 appears to have leaked: cleaning up",
    ]
    assert alloc.ips.allocated() == ["10.96.0.20", "10.96.0.21"]
    assert alloc.ports.allocated() == [30080]
    assert alloc.repair([a, b]) == []


def test_repair_with_grace_flags_leaks_first(alloc):
    alloc.ports.allocate(30099)
    assert alloc.repair([], leak_grace=1) == ["the node port 30099 may have leaked: flagging for later clean up"]
    assert alloc.ports.has(30099)
    assert alloc.repair([], leak_grace=1) == ["the node port 30099 appears to have leaked: cleaning up"]
    assert not alloc.ports.has(30099)
