"""The NetworkPolicy ruleset function: objects in, one node's nftables table out (no root needed)."""

from __future__ import annotations

from skiff.netpol.rules import EGRESS_MAP, INGRESS_MAP, desired_ruleset, pod_info
from skiff.proxy.render import render_full

NS_LABELS = {"x": {"kubernetes.io/metadata.name": "x", "team": "blue"},
             "y": {"kubernetes.io/metadata.name": "y", "team": "red"}}


def pod(ns: str, name: str, ip: str, node: str = "n1", ports=(), **extra) -> dict:
    spec = {"nodeName": node, "containers": [{"name": "c", "ports": [
        {"name": pname, "containerPort": number, "protocol": proto} for pname, proto, number in ports]}]}
    spec.update(extra.pop("spec", {}))
    status = {"podIP": ip, "phase": "Running", **extra.pop("status", {})}
    return {"metadata": {"namespace": ns, "name": name, "labels": {"pod": name, **extra}}, "spec": spec,
            "status": status}


PODS = [
    pod("x", "a", "10.1.1.2", ports=[("http", "TCP", 80), ("dns", "UDP", 53)]),
    pod("x", "b", "10.1.1.3"),
    pod("x", "c", "10.1.2.4", node="n2", ports=[("http", "TCP", 8080)]),
    pod("y", "a", "10.1.2.5", node="n2", ports=[("http", "TCP", 9090)]),
    pod("y", "b", "10.1.1.6"),
]


def policy(name: str, selector: dict | None = None, types: list[str] | None = None, ns: str = "x",
           **rules) -> dict:
    spec: dict = {"podSelector": selector if selector is not None else {}}
    if types is not None:
        spec["policyTypes"] = types
    spec.update(rules)
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def build(policies: list[dict], node: str = "n1", pods: list[dict] = PODS):
    infos = [i for i in (pod_info(p) for p in pods) if i is not None]
    return desired_ruleset(policies, infos, NS_LABELS, node)


def chain_of(rs, ip: str, direction: str) -> list[str]:
    """The rules of the chain the verdict map sends `ip`'s new connections to, without comments."""
    verdict = rs.elements[INGRESS_MAP if direction == "ingress" else EGRESS_MAP][ip]
    rules = rs.chains[verdict.removeprefix("jump ")].rules
    return [r.split(' comment "')[0] for r in rules]


def test_no_policy_or_no_selected_local_pod_means_no_chain_at_all():
    assert build([]).chains == {}
    # Selects only y/a, which runs on n2.
    assert build([policy("p", {"matchLabels": {"pod": "a"}}, ns="y")]).chains == {}
    assert build([policy("p", {"matchLabels": {"pod": "a"}}, ns="y")], node="n2").chains != {}


def test_default_deny_ingress_isolates_every_local_pod_of_the_namespace_only():
    rs = build([policy("deny", {}, ["Ingress"])])
    assert set(rs.elements[INGRESS_MAP]) == {"10.1.1.2", "10.1.1.3"}  # x/a and x/b; not y/b, not n2's
    assert rs.elements[EGRESS_MAP] == {}
    assert chain_of(rs, "10.1.1.2", "ingress") == ["ip saddr 10.1.1.2 accept", "drop"]
    base = rs.chains["forward"]
    assert base.hook == "type filter hook forward priority 0"
    assert base.rules == ("ct state established,related accept", f"ip saddr vmap @{EGRESS_MAP}",
                          f"ip daddr vmap @{INGRESS_MAP}")


def test_policy_types_default_from_the_rules():
    # No policyTypes and an egress section: Ingress and Egress (what the API server would set).
    rs = build([policy("p", {"matchLabels": {"pod": "a"}}, egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])])
    assert "10.1.1.2" in rs.elements[INGRESS_MAP] and "10.1.1.2" in rs.elements[EGRESS_MAP]
    rs = build([policy("p", {"matchLabels": {"pod": "a"}}, ["Egress"])])
    assert "10.1.1.2" not in rs.elements[INGRESS_MAP]


def test_allow_all_and_rules_without_peers_or_ports():
    rs = build([policy("all", {}, ["Ingress", "Egress"], ingress=[{}], egress=[{}])])
    assert chain_of(rs, "10.1.1.3", "ingress") == ["ip saddr 10.1.1.3 accept", "accept", "drop"]
    assert chain_of(rs, "10.1.1.3", "egress") == ["ip daddr 10.1.1.3 return", "return", "drop"]


def test_pod_selector_peers_stay_in_the_policy_namespace_and_namespace_selectors_cross():
    same_ns = policy("p", {"matchLabels": {"pod": "b"}}, ["Ingress"],
                     ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}])
    assert chain_of(build([same_ns]), "10.1.1.3", "ingress")[1] == "ip saddr 10.1.1.2 accept"  # x/a, not y/a
    # One peer with both selectors: pods labelled pod=a in namespaces labelled team=red (AND).
    both = policy("p", {"matchLabels": {"pod": "b"}}, ["Ingress"], ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "red"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}])
    assert chain_of(build([both]), "10.1.1.3", "ingress")[1] == "ip saddr 10.1.2.5 accept"
    # Two peers: either (OR).
    either = policy("p", {"matchLabels": {"pod": "b"}}, ["Ingress"], ingress=[{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["red"]}]}},
        {"podSelector": {"matchLabels": {"pod": "c"}}}]}])
    assert chain_of(build([either]), "10.1.1.3", "ingress")[1:3] == [
        "ip saddr { 10.1.1.6, 10.1.2.5 } accept", "ip saddr 10.1.2.4 accept"]


def test_a_peer_that_matches_no_pod_allows_nothing():
    rs = build([policy("p", {"matchLabels": {"pod": "b"}}, ["Ingress"],
                       ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "nobody"}}}]}])])
    assert chain_of(rs, "10.1.1.3", "ingress") == ["ip saddr 10.1.1.3 accept", "drop"]


def test_ports_numbers_ranges_protocols_and_named_ports_on_the_target():
    rs = build([policy("p", {"matchLabels": {"pod": "a"}}, ["Ingress"], ingress=[{"ports": [
        {"port": 81, "protocol": "TCP"}, {"port": 1000, "endPort": 1010, "protocol": "UDP"},
        {"protocol": "SCTP"}, {"port": "http", "protocol": "TCP"}, {"port": "dns", "protocol": "TCP"},
        {"port": "dns", "protocol": "UDP"}]}])])
    assert chain_of(rs, "10.1.1.2", "ingress")[1:-1] == [
        "tcp dport 81 accept", "udp dport 1000-1010 accept", "meta l4proto sctp accept",
        "tcp dport 80 accept",  # x/a's port "http"
        # "dns" is a UDP port of x/a: as TCP it names nothing, so opens nothing
        "udp dport 53 accept"]


def test_named_egress_ports_take_each_destination_pods_own_number():
    rs = build([policy("p", {"matchLabels": {"pod": "b"}}, ["Egress"], egress=[
        {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http", "protocol": "TCP"}]}])])
    assert chain_of(rs, "10.1.1.3", "egress")[1] == (
        "ip daddr . meta l4proto . th dport { 10.1.1.2 . tcp . 80, 10.1.2.4 . tcp . 8080, 10.1.2.5 . tcp . 9090 } return")


def test_ip_blocks_with_holes_and_ipv6_blocks():
    rs = build([policy("p", {"matchLabels": {"pod": "a"}}, ["Ingress", "Egress"],
                       ingress=[{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}],
                       egress=[{"to": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24", "10.1.1.3/32"]}}],
                                "ports": [{"port": "http", "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}])])
    # The pod network is IPv4: an IPv6 block can match no packet here, and still isolates.
    assert chain_of(rs, "10.1.1.2", "ingress") == ["ip saddr 10.1.1.2 accept", "drop"]
    assert chain_of(rs, "10.1.1.2", "egress")[1:-1] == [
        # the named port: only pods inside the block (x/a itself, not the excepted ones on 10.1.2.0/24)
        "ip daddr . meta l4proto . th dport { 10.1.1.2 . tcp . 80 } return",
        "ip daddr 10.1.0.0/16 ip daddr != { 10.1.1.3/32, 10.1.2.0/24 } tcp dport 443 return"]


def test_policies_add_up_and_same_rules_appear_once():
    p1 = policy("p1", {"matchLabels": {"pod": "a"}}, ["Ingress"], ingress=[{"ports": [{"port": 80, "protocol": "TCP"}]}])
    p2 = policy("p2", {}, ["Ingress"], ingress=[{"ports": [{"port": 79}, {"port": "http", "protocol": "TCP"},
                                                           {"port": 81}]}])
    rs = build([p2, p1])
    # p1 first (policies are taken in name order); p2's named port "http" is x/a's 80 again.
    assert chain_of(rs, "10.1.1.2", "ingress") == [
        "ip saddr 10.1.1.2 accept", "tcp dport 80 accept", "tcp dport 79 accept", "tcp dport 81 accept", "drop"]
    assert rs.chains[rs.elements[INGRESS_MAP]["10.1.1.2"].removeprefix("jump ")].rules[1].endswith('"x/p1 ingress[0]"')


def test_pods_that_policies_do_not_judge():
    extra = [
        pod("x", "host", "192.168.0.9", spec={"hostNetwork": True}),  # counts as its node
        pod("x", "pending", "", status={"podIP": ""}),
        pod("x", "done", "10.1.1.9", status={"phase": "Succeeded"}),
    ]
    rs = build([policy("deny", {}, ["Ingress"])], pods=PODS + extra)
    assert set(rs.elements[INGRESS_MAP]) == {"10.1.1.2", "10.1.1.3"}


def test_rendered_table_names_the_policy_rule_behind_each_line():
    rs = build([policy("web", {"matchLabels": {"pod": "a"}}, ["Ingress"], ingress=[{"ports": [{"port": 80}]}])])
    text = render_full(rs, "skiff-netpol")
    assert 'tcp dport 80 accept comment "x/web ingress[0]"' in text
    assert 'drop comment "x/a: isolated for ingress"' in text
