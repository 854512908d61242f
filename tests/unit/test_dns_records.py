"""The cluster DNS zone against the Kubernetes DNS spec and CoreDNS's choices (no sockets)."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype as T
import pytest

from skiff.dns.records import Zone, dashed, undashed

NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL
Z = "cluster.local."


def svc(name, ns="default", cluster_ip="10.96.0.20", ports=None, **spec):
    s = {"kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"type": "ClusterIP", "ports": ports if ports is not None else [], **spec}}
    if cluster_ip is not None:
        s["spec"]["clusterIP"] = cluster_ip
        s["spec"].setdefault("clusterIPs", [cluster_ip])
    return s


def eps(service, endpoints, ns="default", name=None, ports=None, family="IPv4"):
    return {"kind": "EndpointSlice", "addressType": family,
            "metadata": {"name": name or f"{service}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints}


def ep(ip, ready=True, hostname=None, serving=None):
    e = {"addresses": [ip], "conditions": {}}
    if ready is not None:
        e["conditions"]["ready"] = ready
    if serving is not None:
        e["conditions"]["serving"] = serving
    if hostname:
        e["hostname"] = hostname
    return e


def texts(rrsets):
    return sorted(rd.to_text() for rr in rrsets for rd in rr)


@pytest.fixture
def zone() -> Zone:
    objs = [
        {"kind": "Namespace", "metadata": {"name": "empty"}},
        svc("kubernetes", cluster_ip="10.96.0.1", ports=[{"name": "https", "port": 443, "protocol": "TCP"}]),
        svc("web", cluster_ip="10.96.0.20", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                                   {"port": 9000, "protocol": "UDP"}]),
        eps("web", [ep("10.244.1.5"), ep("10.244.1.6", ready=False)]),
        svc("hdls", cluster_ip="None", ports=[{"name": "http", "port": 80, "protocol": "TCP"}]),
        eps("hdls", [ep("10.244.1.10", hostname="pet-0"), ep("10.244.1.11"), ep("10.244.1.12", ready=False),
                     ep("10.244.1.13", ready=None)]),
        # publishNotReadyAddresses: the controller marks unready pods ready:true, serving:false.
        svc("pnr", cluster_ip="None", publishNotReadyAddresses=True),
        eps("pnr", [ep("10.244.2.1", ready=True, serving=False)]),
        svc("lonely", cluster_ip="None", ports=[{"name": "http", "port": 80}]),
        eps("lonely", [ep("10.244.3.1", ready=False)]),
        svc("ext", cluster_ip=None, type="ExternalName", externalName="www.example.com"),
        svc("alias", cluster_ip=None, type="ExternalName", externalName="web.default.svc.cluster.local"),
        svc("extip", cluster_ip=None, type="ExternalName", externalName="192.0.2.10"),
        svc("dangling", cluster_ip=None, type="ExternalName", externalName="nosuch.default.svc.cluster.local"),
    ]
    return Zone.from_objects(objs, reverse_cidrs=["10.96.0.0/12", "10.244.0.0/16"], dns_ips=["10.96.0.10"])


def ask(zone, name, qtype):
    return zone.answer(name, qtype)


def assert_negative(zone, ans, rcode):
    assert ans.rcode == rcode and ans.answer == []
    (soa,) = ans.authority
    assert soa.rdtype == T.SOA and soa.name.to_text() == Z and soa.ttl == 5
    assert soa[0].to_text() == f"ns.dns.{Z} hostmaster.{Z} {zone.serial} 7200 1800 86400 5"


def test_clusterip_a_with_default_ttl_and_query_case(zone):
    ans = ask(zone, "Web.Default.svc.Cluster.Local.", T.A)
    assert ans.rcode == NOERROR
    (rr,) = ans.answer
    assert rr.name.to_text() == "Web.Default.svc.Cluster.Local." and rr.ttl == 5
    assert texts(ans.answer) == ["10.96.0.20"]


def test_existing_name_other_type_is_nodata(zone):
    for name, qtype in [("web.default.svc." + Z, T.AAAA), ("web.default.svc." + Z, T.TXT),
                        ("default.svc." + Z, T.A), ("empty.svc." + Z, T.A), ("svc." + Z, T.A),
                        ("pod." + Z, T.A), ("default.pod." + Z, T.A), (Z, T.A), ("dns-version." + Z, T.A),
                        ("web.default.svc." + Z, T.SOA), ("svc." + Z, T.NS)]:
        assert_negative(zone, ask(zone, name, qtype), NOERROR)


def test_missing_names_are_nxdomain(zone):
    for name in ["nope.default.svc." + Z, "web.nons.svc." + Z, "nons.svc." + Z, "foo." + Z,
                 "bogus.hdls.default.svc." + Z, "x.ext.default.svc." + Z, "a.b._http._tcp.web.default.svc." + Z,
                 "lonely.default.svc." + Z, "extip.default.svc." + Z, "_http._tcp.lonely.default.svc." + Z,
                 "_http._udp.web.default.svc." + Z, "10-1-2-3.nons.pod." + Z, "blah.default.pod." + Z]:
        assert_negative(zone, ask(zone, name, T.A), NXDOMAIN)
    assert_negative(zone, ask(zone, "nope.default.svc." + Z, T.NS), NXDOMAIN)


def test_outside_the_zone_is_not_ours(zone):
    assert ask(zone, "example.com.", T.A) is None
    assert ask(zone, "cluster.localx.", T.A) is None


def test_srv_for_named_clusterip_port_with_target_address(zone):
    ans = ask(zone, "_https._tcp.kubernetes.default.svc." + Z, T.SRV)
    assert texts(ans.answer) == ["0 100 443 kubernetes.default.svc.cluster.local."]
    assert texts(ans.additional) == ["10.96.0.1"]
    # The bare name answers SRV for every port, named or not; weight is floor(100 / count).
    bare = ask(zone, "web.default.svc." + Z, T.SRV)
    assert texts(bare.answer) == ["0 50 80 web.default.svc.cluster.local.",
                                  "0 50 9000 web.default.svc.cluster.local."]


def test_headless_answers_ready_endpoints_only(zone):
    ans = ask(zone, "hdls.default.svc." + Z, T.A)
    # ready:false is left out, an unset ready counts as ready.
    assert texts(ans.answer) == ["10.244.1.10", "10.244.1.11", "10.244.1.13"]
    assert texts(ask(zone, "pnr.default.svc." + Z, T.A).answer) == ["10.244.2.1"]


def test_endpoint_names_hostname_or_dashed_ip(zone):
    assert texts(ask(zone, "pet-0.hdls.default.svc." + Z, T.A).answer) == ["10.244.1.10"]
    assert texts(ask(zone, "10-244-1-11.hdls.default.svc." + Z, T.A).answer) == ["10.244.1.11"]
    # CoreDNS also serves endpoint names under ClusterIP Services.
    assert texts(ask(zone, "10-244-1-5.web.default.svc." + Z, T.A).answer) == ["10.244.1.5"]
    assert_negative(zone, ask(zone, "10-244-1-12.hdls.default.svc." + Z, T.A), NXDOMAIN)


def test_headless_srv_one_per_endpoint_with_slice_port(zone):
    ans = ask(zone, "_http._tcp.hdls.default.svc." + Z, T.SRV)
    assert texts(ans.answer) == ["0 33 8080 10-244-1-11.hdls.default.svc.cluster.local.",
                                 "0 33 8080 10-244-1-13.hdls.default.svc.cluster.local.",
                                 "0 33 8080 pet-0.hdls.default.svc.cluster.local."]
    assert texts(ans.additional) == ["10.244.1.10", "10.244.1.11", "10.244.1.13"]


def test_externalname_cname(zone):
    ans = ask(zone, "ext.default.svc." + Z, T.A)
    assert ans.rcode == NOERROR and texts(ans.answer) == ["www.example.com."]
    assert ans.answer[0].rdtype == T.CNAME
    assert texts(ask(zone, "ext.default.svc." + Z, T.CNAME).answer) == ["www.example.com."]
    assert_negative(zone, ask(zone, "ext.default.svc." + Z, T.SRV), NOERROR)
    # A CNAME into the cluster domain is followed within the zone.
    chased = ask(zone, "alias.default.svc." + Z, T.A)
    assert [rr.rdtype for rr in chased.answer] == [T.CNAME, T.A]
    assert texts(chased.answer) == ["10.96.0.20", "web.default.svc.cluster.local."]
    # ... and given only with what it leads to: an in-zone target without such records is NODATA.
    assert_negative(zone, ask(zone, "alias.default.svc." + Z, T.AAAA), NOERROR)
    assert_negative(zone, ask(zone, "dangling.default.svc." + Z, T.A), NOERROR)


def test_type_decides_externalname_not_leftover_field(zone):
    zone.upsert_service(svc("ext", cluster_ip="10.96.0.99", externalName="www.example.com",
                            ports=[{"name": "http", "port": 80}]))
    ans = ask(zone, "ext.default.svc." + Z, T.A)
    assert texts(ans.answer) == ["10.96.0.99"] and ans.answer[0].rdtype == T.A


def test_ptr_for_cluster_ips_and_endpoints(zone):
    assert texts(ask(zone, "1.0.96.10.in-addr.arpa.", T.PTR).answer) == ["kubernetes.default.svc.cluster.local."]
    assert texts(ask(zone, "10.1.244.10.in-addr.arpa.", T.PTR).answer) == ["pet-0.hdls.default.svc.cluster.local."]
    assert texts(ask(zone, "5.1.244.10.in-addr.arpa.", T.PTR).answer) == ["10-244-1-5.web.default.svc.cluster.local."]
    # Unready endpoints have no PTR; unknown addresses in the cluster ranges are NXDOMAIN here...
    ans = ask(zone, "12.1.244.10.in-addr.arpa.", T.PTR)
    assert ans.rcode == NXDOMAIN and ans.authority[0].name.to_text() == "in-addr.arpa."
    # ...and outside them they are forwarded.
    assert ask(zone, "1.2.0.192.in-addr.arpa.", T.PTR) is None
    assert ask(zone, "10.in-addr.arpa.", T.PTR) is None
    assert ask(zone, "1.0.96.10.in-addr.arpa.", T.A).rcode == NOERROR


def test_endpoint_in_two_services_gets_two_ptrs(zone):
    zone.upsert_service(svc("web2", cluster_ip="10.96.0.21"))
    zone.upsert_endpoint_slice(eps("web2", [ep("10.244.1.5")]))
    assert texts(ask(zone, "5.1.244.10.in-addr.arpa.", T.PTR).answer) == [
        "10-244-1-5.web.default.svc.cluster.local.", "10-244-1-5.web2.default.svc.cluster.local."]


def test_pods_insecure(zone):
    ans = ask(zone, "10-244-9-9.default.pod." + Z, T.A)
    assert texts(ans.answer) == ["10.244.9.9"] and ans.answer[0].ttl == 5
    assert texts(ask(zone, "fd00-10--1.empty.pod." + Z, T.AAAA).answer) == ["fd00:10::1"]
    assert_negative(zone, ask(zone, "10-244-9-9.default.pod." + Z, T.AAAA), NOERROR)


def test_pods_disabled_and_verified():
    off = Zone(pods="disabled")
    off.update("ADDED", {"kind": "Namespace", "metadata": {"name": "default"}})
    assert off.answer("10-1-1-1.default.pod." + Z, T.A).rcode == NXDOMAIN
    ver = Zone(pods="verified")
    ver.update("ADDED", {"kind": "Namespace", "metadata": {"name": "default"}})
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "status": {"podIP": "10.1.1.1", "podIPs": [{"ip": "10.1.1.1"}]}}
    assert ver.answer("10-1-1-1.default.pod." + Z, T.A).rcode == NXDOMAIN
    ver.update("ADDED", pod)
    assert texts(ver.answer("10-1-1-1.default.pod." + Z, T.A).answer) == ["10.1.1.1"]
    ver.update("DELETED", pod)
    assert ver.answer("10-1-1-1.default.pod." + Z, T.A).rcode == NXDOMAIN


def test_dns_version_and_apex(zone):
    ans = ask(zone, "dns-version." + Z, T.TXT)
    assert texts(ans.answer) == ['"1.1.0"'] and ans.answer[0].ttl == 28800
    soa = ask(zone, Z, T.SOA)
    assert soa.rcode == NOERROR and soa.answer[0].rdtype == T.SOA
    ns = ask(zone, Z, T.NS)
    assert texts(ns.answer) == ["ns.dns.cluster.local."] and texts(ns.additional) == ["10.96.0.10"]


def test_not_synced_turns_nxdomain_into_servfail(zone):
    zone.synced = False
    assert ask(zone, "nope.default.svc." + Z, T.A) == (SERVFAIL, [], [], [])
    assert ask(zone, "web.default.svc." + Z, T.A).rcode == NOERROR
    assert ask(zone, "web.default.svc." + Z, T.AAAA).rcode == NOERROR


def test_dual_stack_families():
    z = Zone.from_objects([svc("ds", cluster_ip="10.96.0.30", clusterIPs=["10.96.0.30", "fd00:96::30"])])
    assert texts(z.answer("ds.default.svc." + Z, T.A).answer) == ["10.96.0.30"]
    assert texts(z.answer("ds.default.svc." + Z, T.AAAA).answer) == ["fd00:96::30"]
    ptr = z.answer("0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", T.PTR)
    assert texts(ptr.answer) == ["ds.default.svc.cluster.local."]


def test_updates_are_incremental_and_bump_the_serial(zone):
    before = zone.serial
    zone.serial -= 10  # the serial is in seconds; make the change visible
    zone.upsert_endpoint_slice(eps("hdls", [ep("10.244.1.50", hostname="pet-1")]))
    assert zone.serial >= before
    assert texts(ask(zone, "hdls.default.svc." + Z, T.A).answer) == ["10.244.1.50"]
    assert_negative(zone, ask(zone, "pet-0.hdls.default.svc." + Z, T.A), NXDOMAIN)
    assert ask(zone, "10.1.244.10.in-addr.arpa.", T.PTR).rcode == NXDOMAIN
    # A second slice of the same Service adds to it.
    zone.upsert_endpoint_slice(eps("hdls", [ep("10.244.1.51")], name="hdls-second"))
    assert texts(ask(zone, "hdls.default.svc." + Z, T.A).answer) == ["10.244.1.50", "10.244.1.51"]
    zone.delete_endpoint_slice(eps("hdls", [], name="hdls-second"))
    assert texts(ask(zone, "hdls.default.svc." + Z, T.A).answer) == ["10.244.1.50"]
    zone.delete_service(svc("web"))
    assert ask(zone, "web.default.svc." + Z, T.A).rcode == NXDOMAIN
    assert ask(zone, "20.0.96.10.in-addr.arpa.", T.PTR).rcode == NXDOMAIN
    assert ask(zone, "_http._tcp.web.default.svc." + Z, T.SRV).rcode == NXDOMAIN


def test_slice_moving_to_another_service():
    z = Zone.from_objects([svc("a", cluster_ip="None"), svc("b", cluster_ip="None"),
                           eps("a", [ep("10.0.0.1")], name="s1")])
    assert z.answer("a.default.svc." + Z, T.A).rcode == NOERROR
    z.upsert_endpoint_slice(eps("b", [ep("10.0.0.1")], name="s1"))
    assert z.answer("a.default.svc." + Z, T.A).rcode == NXDOMAIN
    assert texts(z.answer("b.default.svc." + Z, T.A).answer) == ["10.0.0.1"]


def test_dashed_labels():
    assert dashed("10.1.2.3") == "10-1-2-3"
    assert dashed("5678:abcd::1") == "5678-abcd--1"
    assert dashed("fd00::") == "fd00--0"
    assert undashed("10-1-2-3") == "10.1.2.3" and undashed("2001-db8--1") == "2001:db8::1"
    assert undashed("blah") is None and undashed("10-1-2") is None


def test_large_zone_lookups_are_indexed():
    import time

    objs = []
    for i in range(2000):
        objs.append(svc(f"s{i}", cluster_ip=f"10.96.{i // 250}.{i % 250 + 1}",
                        ports=[{"name": "http", "port": 80}]))
        objs.append(eps(f"s{i}", [ep(f"10.244.{i // 250}.{i % 250 + 1}")]))
    z = Zone.from_objects(objs)
    t = time.perf_counter()
    for i in range(2000):
        assert z.answer(f"s{i}.default.svc.{Z}", T.A).rcode == NOERROR
    assert time.perf_counter() - t < 0.5
