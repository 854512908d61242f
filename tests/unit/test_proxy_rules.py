"""Services + EndpointSlices -> ruleset semantics, rendering and partial-sync diffs (no root)."""

from __future__ import annotations

import copy
import random

from skiff.proxy.conntrack import StaleFlow, stale_udp_flows
from skiff.proxy.model import NodeContext, Ruleset
from skiff.proxy.render import diff, render_diff, render_full
from skiff.proxy.rules import RulesetBuilder, chains_of, desired_ruleset

NODE = NodeContext("n1", ("172.30.0.2",), "10.50.0.0/16", service_cidr="10.60.0.0/24")


def svc(name: str, ip: str = "10.60.0.10", port: int = 80, proto: str = "TCP", **spec) -> dict:
    p = {"name": "http", "port": port, "protocol": proto, "targetPort": 8080}
    if "nodePort" in spec:
        p["nodePort"] = spec.pop("nodePort")
    status = spec.pop("status", {})
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"clusterIP": ip, "ports": [p], **spec}, "status": status}


def ep(ip: str, node: str = "n1", **cond) -> dict:
    return {"addresses": [ip], "nodeName": node, "conditions": cond or {"ready": True}}


def eps(name: str, *endpoints: dict, proto: str = "TCP") -> dict:
    return {
        "metadata": {"namespace": "ns", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": proto}],
        "endpoints": list(endpoints),
    }


def only(rs: Ruleset, prefix: str):
    found = chains_of(rs, prefix)
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def test_cluster_ip_dispatch_chains_and_dnat():
    rs = desired_ruleset([svc("web")], [eps("web", ep("10.50.1.2"), ep("10.50.2.2", "n2"))], NODE)
    service = only(rs, "service-")
    assert service.name.endswith("-ns/web/tcp/http")
    assert rs.elements["service-ips"]["10.60.0.10 . tcp . 80"] == f"goto {service.name}"
    assert "10.60.0.10" in rs.elements["cluster-ips"]
    # Masquerade traffic from outside the pod CIDR only.
    assert service.rules[0] == "ip daddr 10.60.0.10 ip saddr != 10.50.0.0/16 jump mark-for-masquerade"
    endpoints = chains_of(rs, "endpoint-")
    assert sorted(c.name.split("__")[1] for c in endpoints) == ["10.50.1.2/8080", "10.50.2.2/8080"]
    dnats = sorted(c.rules[-1] for c in endpoints)
    assert dnats == ["meta l4proto tcp dnat to 10.50.1.2:8080", "meta l4proto tcp dnat to 10.50.2.2:8080"]
    # Uniform random choice over both endpoints.
    assert any(r.startswith("numgen random mod 2 == 0 goto endpoint-") for r in service.rules)
    assert service.rules[-1].startswith("goto endpoint-")
    # Hairpin: an endpoint reaching itself is masqueraded.
    assert all(c.rules[0] == f"ip saddr {c.name.split('__')[1].split('/')[0]} jump mark-for-masquerade" for c in endpoints)


def test_base_chains_hooks_and_masquerade():
    rs = desired_ruleset([], [], NODE)
    assert rs.chains["nat-prerouting"].hook == "type nat hook prerouting priority -100"
    assert rs.chains["nat-output"].rules == ("jump services",)  # ClusterIPs from the node itself
    assert rs.chains["nat-postrouting"].rules == ("jump masquerading",)
    assert rs.chains["masquerading"].rules[-1] == "masquerade fully-random"
    assert rs.elements["nodeport-ips"] == {"172.30.0.2": ""}
    assert "ip daddr 10.60.0.0/24 drop" in rs.chains["cluster-ips-check"].rules
    assert rs.sets["service-ips"].key_type == "ipv4_addr . inet_proto . inet_service"


def test_masquerade_all():
    node = NodeContext("n1", ("172.30.0.2",), "10.50.0.0/16", masquerade_all=True)
    rs = desired_ruleset([svc("web")], [eps("web", ep("10.50.1.2"))], node)
    assert only(rs, "service-").rules[0] == "ip daddr 10.60.0.10 jump mark-for-masquerade"


def test_node_port_load_balancer_and_external_ips_use_external_chain():
    s = svc(
        "web", type="LoadBalancer", nodePort=30080, externalIPs=["192.0.2.7"],
        status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"ip": "203.0.113.10", "ipMode": "Proxy"}]}},
    )
    rs = desired_ruleset([s], [eps("web", ep("10.50.1.2"))], NODE)
    external = only(rs, "external-")
    assert external.rules == ("jump mark-for-masquerade", f"goto {only(rs, 'service-').name}")
    assert rs.elements["service-nodeports"] == {"tcp . 30080": f"goto {external.name}"}
    assert rs.elements["service-ips"]["203.0.113.9 . tcp . 80"] == f"goto {external.name}"
    assert rs.elements["service-ips"]["192.0.2.7 . tcp . 80"] == f"goto {external.name}"
    assert "203.0.113.10 . tcp . 80" not in rs.elements["service-ips"]


def test_node_port_ignored_for_cluster_ip_type():
    rs = desired_ruleset([svc("web", nodePort=30080)], [eps("web", ep("10.50.1.2"))], NODE)
    assert rs.elements["service-nodeports"] == {}
    assert chains_of(rs, "external-") == []


def test_udp_and_sctp():
    rs = desired_ruleset(
        [svc("dns", port=53, proto="UDP"), svc("s", ip="10.60.0.11", proto="SCTP")],
        [eps("dns", ep("10.50.1.2"), proto="UDP"), eps("s", ep("10.50.1.3"), proto="SCTP")],
        NODE,
    )
    assert "10.60.0.10 . udp . 53" in rs.elements["service-ips"]
    assert "10.60.0.11 . sctp . 80" in rs.elements["service-ips"]
    assert any(r == "meta l4proto udp dnat to 10.50.1.2:8080" for c in chains_of(rs, "endpoint-") for r in c.rules)
    assert rs.udp_destinations == {("10.60.0.10", 53): frozenset({"10.50.1.2"})}


def test_session_affinity_sets_and_update():
    s = svc("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    rs = desired_ruleset([s], [eps("web", ep("10.50.1.2"), ep("10.50.1.3"))], NODE)
    aff = [x for x in rs.sets.values() if x.name.startswith("affinity-")]
    assert len(aff) == 2 and all(a.timeout == 600 and a.flags == ("dynamic", "timeout") for a in aff)
    service = only(rs, "service-")
    for a in aff:
        assert any(r.startswith(f"ip saddr @{a.name} goto endpoint-") for r in service.rules)
    # The affinity checks come before the random choice.
    assert service.rules.index(next(r for r in service.rules if "@affinity" in r)) < service.rules.index(
        next(r for r in service.rules if r.startswith("numgen"))
    )
    for c in chains_of(rs, "endpoint-"):
        assert any(r.startswith("update @affinity-") and r.endswith("{ ip saddr }") for r in c.rules)
    assert "timeout 600s" in render_full(rs, "t")
    default = desired_ruleset([svc("web", sessionAffinity="ClientIP")], [eps("web", ep("10.50.1.2"))], NODE)
    assert [x.timeout for x in default.sets.values() if x.name.startswith("affinity-")] == [10800]


def test_external_traffic_policy_local_with_local_endpoint():
    s = svc("web", type="NodePort", nodePort=30080, externalTrafficPolicy="Local")
    rs = desired_ruleset([s], [eps("web", ep("10.50.1.2", "n1"), ep("10.50.2.2", "n2"))], NODE)
    external, local, service = only(rs, "external-"), only(rs, "local-"), only(rs, "service-")
    assert external.rules == (
        f"ip saddr 10.50.0.0/16 goto {service.name}",
        "fib saddr type local jump mark-for-masquerade",
        f"fib saddr type local goto {service.name}",
        f"goto {local.name}",
    )
    # The local chain only reaches this node's endpoint and does not masquerade.
    assert local.rules == (f"goto {[c.name for c in chains_of(rs, 'endpoint-') if '10.50.1.2' in c.name][0]}",)
    assert "jump mark-for-masquerade" not in external.rules[-1]
    assert rs.elements["no-endpoint-nodeports"] == {}


def test_external_traffic_policy_local_without_local_endpoint_drops():
    s = svc("web", type="NodePort", nodePort=30080, externalTrafficPolicy="Local")
    rs = desired_ruleset([s], [eps("web", ep("10.50.2.2", "n2"))], NODE)
    assert chains_of(rs, "local-") == []
    assert not any(r.startswith("goto local-") for r in only(rs, "external-").rules)
    assert rs.elements["no-endpoint-nodeports"] == {"tcp . 30080": "drop"}
    # ClusterIP traffic still goes everywhere.
    assert rs.elements["service-ips"]["10.60.0.10 . tcp . 80"].startswith("goto service-")


def test_internal_traffic_policy_local():
    s = svc("web", internalTrafficPolicy="Local")
    rs = desired_ruleset([s], [eps("web", ep("10.50.1.2", "n1"), ep("10.50.2.2", "n2"))], NODE)
    local = only(rs, "local-")
    assert rs.elements["service-ips"]["10.60.0.10 . tcp . 80"] == f"goto {local.name}"
    assert chains_of(rs, "service-") == []
    assert len(chains_of(rs, "endpoint-")) == 1
    other = desired_ruleset([s], [eps("web", ep("10.50.2.2", "n2"))], NODE)
    assert other.elements["no-endpoint-services"] == {"10.60.0.10 . tcp . 80": "drop"}


def test_no_endpoints_rejects_everywhere():
    s = svc("web", type="LoadBalancer", nodePort=30080, status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}})
    rs = desired_ruleset([s], [eps("web")], NODE)
    assert rs.elements["no-endpoint-services"] == {
        "10.60.0.10 . tcp . 80": "goto reject-chain",
        "203.0.113.9 . tcp . 80": "goto reject-chain",
    }
    assert rs.elements["no-endpoint-nodeports"] == {"tcp . 30080": "goto reject-chain"}
    assert rs.elements["service-ips"] == {}
    assert chains_of(rs, "service-") == [] and chains_of(rs, "endpoint-") == []
    assert rs.chains["reject-chain"].rules == ("meta l4proto tcp reject with tcp reset", "reject")


def test_endpoint_conditions_and_terminating_fallback():
    endpoints = [
        ep("10.50.1.2", ready=False, serving=True, terminating=True),
        ep("10.50.1.3", ready=False, serving=False, terminating=True),
        ep("10.50.1.4", ready=False),
    ]
    rs = desired_ruleset([svc("web")], [eps("web", *endpoints)], NODE)
    assert [c.name.split("__")[1] for c in chains_of(rs, "endpoint-")] == ["10.50.1.2/8080"]
    endpoints.append(ep("10.50.1.9"))  # once one endpoint is ready, terminating ones are not used
    rs = desired_ruleset([svc("web")], [eps("web", *endpoints)], NODE)
    assert [c.name.split("__")[1] for c in chains_of(rs, "endpoint-")] == ["10.50.1.9/8080"]
    # Missing conditions mean ready.
    rs = desired_ruleset([svc("web")], [eps("web", {"addresses": ["10.50.1.5"]})], NODE)
    assert len(chains_of(rs, "endpoint-")) == 1


def test_slices_matched_by_label_port_name_and_deduplicated():
    other_port = eps("web", ep("10.50.1.7"))
    other_port["ports"][0]["name"] = "metrics"
    dup = eps("web", ep("10.50.1.2"))
    dup["metadata"]["name"] = "web-2"
    wrong_ns = copy.deepcopy(dup)
    wrong_ns["metadata"]["namespace"] = "elsewhere"
    ipv6 = eps("web", ep("fd00::1"))
    ipv6["addressType"] = "IPv6"
    rs = desired_ruleset([svc("web")], [eps("web", ep("10.50.1.2")), dup, other_port, wrong_ns, ipv6], NODE)
    assert [c.name.split("__")[1] for c in chains_of(rs, "endpoint-")] == ["10.50.1.2/8080"]


def test_headless_and_external_name_are_skipped():
    headless = svc("h", ip="None")
    ext = {"metadata": {"namespace": "ns", "name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.org"}}
    rs = desired_ruleset([headless, ext], [eps("h", ep("10.50.1.2"))], NODE)
    assert rs.elements["service-ips"] == {} and rs.elements["cluster-ips"] == {}


def test_load_balancer_source_ranges():
    s = svc(
        "web", type="LoadBalancer", nodePort=30080, loadBalancerSourceRanges=["192.0.2.0/24", " 198.51.100.0/24 "],
        status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
    )
    rs = desired_ruleset([s], [eps("web", ep("10.50.1.2"))], NODE)
    fw = only(rs, "firewall-")
    assert fw.rules == ("ip saddr != { 192.0.2.0/24, 198.51.100.0/24 } drop",)
    assert rs.elements["firewall-ips"] == {"203.0.113.9 . tcp . 80": f"goto {fw.name}"}
    assert rs.chains["filter-prerouting-pre-dnat"].rules == ("ct state new jump firewall-check",)


def test_render_is_deterministic_and_declares_before_use():
    services = [svc("b", ip="10.60.0.11"), svc("a")]
    slices = [eps("a", ep("10.50.1.2")), eps("b", ep("10.50.1.3"))]
    one = render_full(desired_ruleset(services, slices, NODE), "skiff-proxy")
    two = render_full(desired_ruleset(list(reversed(services)), list(reversed(slices)), NODE), "skiff-proxy")
    assert one == two
    lines = one.splitlines()
    assert lines[:3] == ["add table ip skiff-proxy", "delete table ip skiff-proxy", "add table ip skiff-proxy"]
    last_chain = max(i for i, line in enumerate(lines) if line.startswith("add chain"))
    first_rule = min(i for i, line in enumerate(lines) if line.startswith("add rule"))
    first_elem = min(i for i, line in enumerate(lines) if line.startswith("add element"))
    assert last_chain < first_rule < first_elem


def _two_services(web_eps: list[dict]) -> tuple[list[dict], list[dict]]:
    services = [svc("web", type="NodePort", nodePort=30080), svc("api", ip="10.60.0.11")]
    slices = [eps("web", *web_eps), eps("api", ep("10.50.1.9"), ep("10.50.1.10"))]
    return services, slices


def test_partial_sync_touches_only_the_changed_service():
    old = desired_ruleset(*_two_services([ep("10.50.1.2"), ep("10.50.1.3")]), NODE)
    new = desired_ruleset(*_two_services([ep("10.50.1.2"), ep("10.50.1.4")]), NODE)
    d = diff(old, new)
    assert d is not None and not d.is_empty()
    touched = [n for n in d.new_chains + d.changed_chains + d.stale_chains]
    assert touched and all("/web/" in n for n in touched), touched
    assert any("10.50.1.4" in n for n in d.new_chains)
    assert any("10.50.1.3" in n for n in d.stale_chains)
    assert not d.element_adds and not d.element_deletes  # the service chain name did not change
    text = render_diff(d, new, "skiff-proxy")
    assert "/api/" not in text and "add table" not in text
    assert "flush chain ip skiff-proxy service-" in text
    # Stale chains are deleted after everything that referenced them was rewritten.
    assert text.index("delete chain") > text.rindex("add rule")


def test_partial_sync_elements_for_endpoints_appearing_and_disappearing():
    old = desired_ruleset(*_two_services([]), NODE)
    new = desired_ruleset(*_two_services([ep("10.50.1.2")]), NODE)
    d = diff(old, new)
    assert d.element_deletes == {
        "no-endpoint-nodeports": ["tcp . 30080"],
        "no-endpoint-services": ["10.60.0.10 . tcp . 80"],
    }
    assert set(d.element_adds) == {"service-ips", "service-nodeports"}
    back = diff(new, old)
    assert set(back.element_deletes) == {"service-ips", "service-nodeports"}
    assert all("/web/" in n for n in back.stale_chains)
    assert diff(new, new).is_empty()


def test_diff_requires_full_sync_when_set_shape_changes():
    s1 = svc("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}})
    s2 = svc("web", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 20}})
    slices = [eps("web", ep("10.50.1.2"))]
    assert diff(desired_ruleset([s1], slices, NODE), desired_ruleset([s2], slices, NODE)) is None


def _versioned_two_services() -> tuple[list[dict], list[dict], RulesetBuilder, Ruleset]:
    services, slices = _two_services([ep("10.50.1.2")])
    for obj in services + slices:
        obj["metadata"]["resourceVersion"] = "1"
    builder = RulesetBuilder(NODE)
    return services, slices, builder, builder.build(services, slices)


def test_builder_reuses_unchanged_services_by_resource_version():
    services, slices, builder, first = _versioned_two_services()
    api_chain = next(c for c in chains_of(first, "service-") if "/api/" in c.name)
    slices[0] = copy.deepcopy(slices[0])
    slices[0]["endpoints"].append(ep("10.50.1.3"))
    slices[0]["metadata"]["resourceVersion"] = "2"
    second = builder.build(services, slices)
    assert second.chains[api_chain.name] is api_chain  # reused object: the diff skips it cheaply
    assert second.chains.keys() == desired_ruleset(services, slices, NODE).chains.keys()
    assert len([c for c in chains_of(second, "endpoint-") if "/web/" in c.name]) == 2


def _random_world(rng: random.Random, n: int) -> tuple[dict, dict]:
    services, slices = {}, {}
    for i in range(n):
        services[i] = _random_service(rng, i)
        slices[i] = _random_slice(rng, i)
    return services, slices


def _random_service(rng: random.Random, i: int) -> dict:
    kind = rng.choice(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])
    spec: dict = {"type": kind}
    if kind != "ClusterIP":
        spec["nodePort"] = 30000 + i
    if kind == "LoadBalancer":
        # Two Services may share an LB address and port: the builder must then still agree
        # with a from-scratch build (the later Service wins the element).
        spec["status"] = {"loadBalancer": {"ingress": [{"ip": f"172.30.9.{rng.randint(1, 4)}"}]}}
    if rng.random() < 0.3:
        spec["sessionAffinity"] = "ClientIP"
    if kind != "ClusterIP" and rng.random() < 0.3:
        spec["externalTrafficPolicy"] = "Local"
    s = svc(f"s{i}", ip=f"10.60.0.{10 + i}", proto=rng.choice(["TCP", "UDP"]), **spec)
    s["metadata"]["resourceVersion"] = str(rng.randint(1, 10**9))
    return s


def _random_slice(rng: random.Random, i: int) -> dict:
    endpoints = [ep(f"10.50.{rng.randint(1, 2)}.{rng.randint(2, 40)}", rng.choice(["n1", "n2"]),
                    ready=rng.random() < 0.8, serving=True, terminating=rng.random() < 0.2)
                 for _ in range(rng.randint(0, 4))]
    es = eps(f"s{i}", *endpoints)
    es["metadata"]["resourceVersion"] = str(rng.randint(1, 10**9))
    return es


def _strip(rs: Ruleset) -> tuple:
    return (rs.chains, rs.sets, {k: v for k, v in rs.elements.items()}, rs.udp_destinations)


def test_incremental_builder_matches_a_full_build_and_a_full_diff():
    """update() patches the last ruleset and diff() then looks only at its Delta: after every
    random change both must agree with building from scratch and comparing everything."""
    rng = random.Random(7)
    services, slices = _random_world(rng, 12)
    builder = RulesetBuilder(NODE)
    prev = builder.build(list(services.values()), list(slices.values()))
    for _ in range(150):
        dirty = set()
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(12)
            action = rng.random()
            if action < 0.5:
                slices[i] = _random_slice(rng, i)
            elif action < 0.8:
                services[i] = _random_service(rng, i)
            elif action < 0.9:
                services.pop(i, None)
            else:
                slices.pop(i, None)
            dirty.add(("ns", f"s{i}"))
        by_key = {("ns", s["metadata"]["name"]): s for s in services.values()}
        slice_by_key = {("ns", es["metadata"]["labels"]["kubernetes.io/service-name"]): [es] for es in slices.values()}
        new = builder.update(dirty, by_key.get, lambda k, index=slice_by_key: index.get(k, []))
        scratch = desired_ruleset(list(services.values()), list(slices.values()), NODE)
        assert _strip(new) == _strip(scratch)
        fast = diff(prev, new)
        new_delta, new.delta = new.delta, None
        slow = diff(prev, new)
        new.delta = new_delta
        assert (fast is None) == (slow is None)
        if fast is not None:
            assert render_diff(fast, new, "t") == render_diff(slow, new, "t")
        prev = new


def test_builder_update_without_changes_returns_the_same_ruleset():
    services, slices, builder, first = _versioned_two_services()
    by_key = {("ns", s["metadata"]["name"]): s for s in services}
    again = builder.update([("ns", "web")], by_key.get, lambda k: [es for es in slices if es["metadata"]["labels"]["kubernetes.io/service-name"] == k[1]])
    assert again is first
    assert diff(first, again).is_empty()


def test_stale_udp_conntrack_flows():
    before = {("10.60.0.10", 53): frozenset({"10.50.1.2", "10.50.1.3"}), ("*", 30053): frozenset({"10.50.1.2"})}
    after = {("10.60.0.10", 53): frozenset({"10.50.1.3"}), ("*", 30053): frozenset(), ("10.60.0.12", 53): frozenset({"10.50.1.5"})}
    flows = stale_udp_flows(before, after)
    assert flows == [
        StaleFlow(None, 30053, "10.50.1.2"),
        StaleFlow("10.60.0.10", 53, "10.50.1.2"),
        StaleFlow("10.60.0.12", 53, None),  # gained endpoints: flush flows made while it had none
    ]
    assert flows[1].argv() == [
        "conntrack", "-D", "-p", "udp", "--orig-dst", "10.60.0.10", "--orig-port-dst", "53", "--reply-src", "10.50.1.2",
    ]
    assert stale_udp_flows(before, before) == []
