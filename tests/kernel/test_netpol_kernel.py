"""NetworkPolicy tables against real packets, beside the Service proxy's table (root needed).

The topology is the proxy kernel tests' one (two node namespaces on a bridge, pods a1..a3 on
node A and b1..b2 on node B, each echoing "<name> <client address>" on TCP and UDP 8080), with
both the proxy's and the policy table programmed on each node, as a node agent does.
"""

from __future__ import annotations

import os

import pytest

from skiff.netpol.rules import TABLE, PodInfo, desired_ruleset
from skiff.proxy.nft import NftApplier
from skiff.proxy.rules import desired_ruleset as proxy_ruleset
from tests.kernel.test_proxy_kernel import Topology, endpoint_slice, in_ns, names, running, service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")

NS = "default"


class PolicyTopology(Topology):
    def __init__(self) -> None:
        super().__init__()
        self.policy_appliers: dict[str, NftApplier] = {}
        self.namespaces = {NS: {"kubernetes.io/metadata.name": NS}}

    def setup(self) -> None:
        super().setup()
        for node, ns in self.nodes.items():
            self.policy_appliers[node] = NftApplier(TABLE, netns=ns)

    def pod_infos(self) -> list[PodInfo]:
        return [PodInfo(NS, name, p["ip"], p["node"], (("app", name[0]), ("pod", name)),
                        (("echo", "TCP", 8080), ("echo-udp", "UDP", 8080)))
                for name, p in sorted(self.pods.items())]

    async def enforce(self, policies: list[dict]) -> None:
        for node, applier in self.policy_appliers.items():
            await applier.sync(desired_ruleset(policies, self.pod_infos(), self.namespaces, node))


@pytest.fixture(scope="module")
def topo():
    yield from running(PolicyTopology())


@pytest.fixture
async def cluster(topo):
    # Service "to-b1" (ClusterIP .20) has b1 behind it, "to-a2" (.21) has a2, "self-a1" (.22) a1.
    services = [service("to-b1", topo.svc_ip(20)), service("to-a2", topo.svc_ip(21)),
                service("self-a1", topo.svc_ip(22)), service("to-b1-udp", topo.svc_ip(23), proto="UDP")]
    slices = [endpoint_slice(topo, "to-b1", ["b1"]), endpoint_slice(topo, "to-a2", ["a2"]),
              endpoint_slice(topo, "self-a1", ["a1"]), endpoint_slice(topo, "to-b1-udp", ["b1"], proto="UDP")]
    for node, applier in topo.appliers.items():
        await applier.sync(proxy_ruleset(services, slices, topo.context(node)))
    yield topo
    await topo.enforce([])


def policy(name: str, selector: dict, types: list[str], ingress: list | None = None,
           egress: list | None = None) -> dict:
    spec: dict = {"podSelector": selector, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"metadata": {"namespace": NS, "name": name}, "spec": spec}


def reach(t: PolicyTopology, src: str, ip: str, port: int = 8080, proto: str = "tcp") -> str:
    """The name of the pod that answered, or the error ("timeout" when a policy dropped it)."""
    return names(t.client(src, proto, ip, port, timeout=0.3))[0]


async def test_default_deny_ingress_drops_pod_ip_and_cluster_ip_but_not_the_node(cluster):
    t = cluster
    await t.enforce([policy("deny", {"matchLabels": {"pod": "b1"}}, ["Ingress"])])
    assert reach(t, "a1", t.pods["b1"]["ip"]) == "timeout"
    assert reach(t, "a1", t.svc_ip(20), 80) == "timeout"  # judged after the Service's DNAT
    assert reach(t, "b2", t.pods["b1"]["ip"]) == "timeout"  # same node
    assert reach(t, "node-b", t.pods["b1"]["ip"]) == "b1"  # the node's own traffic (probes)
    assert reach(t, "a1", t.pods["b2"]["ip"]) == "b2"  # b2 is not selected
    await t.enforce([])
    assert reach(t, "a1", t.svc_ip(20), 80) == "b1"


async def test_allow_from_selected_pods_and_ports_only(cluster):
    t = cluster
    allow = policy("allow", {"matchLabels": {"pod": "b1"}}, ["Ingress"],
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                             "ports": [{"port": "echo", "protocol": "TCP"}]}])
    await t.enforce([allow])
    assert reach(t, "a2", t.svc_ip(20), 80) == "b1"
    assert reach(t, "b2", t.svc_ip(20), 80) == "timeout"  # not an app=a pod
    # The named port "echo" is TCP only: the same peer's UDP is not opened by it.
    assert reach(t, "a2", t.svc_ip(23), 80, proto="udp") == "timeout"
    udp = policy("udp", {"matchLabels": {"pod": "b1"}}, ["Ingress"], ingress=[{"ports": [{"protocol": "UDP"}]}])
    await t.enforce([allow, udp])  # policies add up
    assert reach(t, "b2", t.svc_ip(23), 80, proto="udp") == "b1"
    assert reach(t, "b2", t.svc_ip(20), 80) == "timeout"


async def test_egress_isolation_needs_both_ends(cluster):
    t = cluster
    egress = policy("egress", {"matchLabels": {"pod": "a1"}}, ["Egress"],
                    egress=[{"to": [{"podSelector": {"matchLabels": {"pod": "b1"}}}]}])
    await t.enforce([egress])
    assert reach(t, "a1", t.svc_ip(20), 80) == "b1"
    assert reach(t, "a1", t.svc_ip(21), 80) == "timeout"  # a2, same node, not allowed
    assert reach(t, "a1", t.pods["b2"]["ip"]) == "timeout"
    # b1's own ingress policy also has to allow: the client's egress alone is not enough.
    deny_b1 = policy("deny", {"matchLabels": {"pod": "b1"}}, ["Ingress"])
    await t.enforce([egress, deny_b1])
    assert reach(t, "a1", t.svc_ip(20), 80) == "timeout"


async def test_a_pod_reaches_itself_through_its_service_under_deny_all(cluster):
    t = cluster
    await t.enforce([policy("deny-all", {}, ["Ingress", "Egress"])])
    assert reach(t, "a1", t.svc_ip(22), 80) == "a1"
    assert reach(t, "a1", t.svc_ip(21), 80) == "timeout"


async def test_ip_block_with_except_matches_pod_ips_after_dnat(cluster):
    t = cluster
    r = t.r
    block = policy("block", {"matchLabels": {"pod": "a1"}}, ["Egress"],
                   egress=[{"to": [{"ipBlock": {"cidr": f"10.{r}.0.0/16", "except": [f"{t.pods['a2']['ip']}/32"]}}]}])
    await t.enforce([block])
    assert reach(t, "a1", t.svc_ip(20), 80) == "b1"
    assert reach(t, "a1", t.svc_ip(21), 80) == "timeout"


async def test_established_connections_keep_flowing_and_the_table_goes_when_unused(cluster):
    t = cluster
    await t.enforce([policy("only-a1", {"matchLabels": {"pod": "b1"}}, ["Ingress", "Egress"],
                            ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "a1"}}}]}])])
    # b1 may open no connection at all, yet its replies to a1 pass: only new connections are judged.
    assert reach(t, "a1", t.svc_ip(20), 80) == "b1"
    assert reach(t, "b1", t.pods["a2"]["ip"]) == "timeout"
    listing = in_ns(t.nodes["node-b"], "nft", "list", "table", "ip", TABLE).stdout
    assert "ct state established,related accept" in listing and "isolated for ingress" in listing
    # No policy left selects a pod: the table holds no chain, so packets meet no hook of it.
    await t.enforce([])
    listing = in_ns(t.nodes["node-b"], "nft", "list", "table", "ip", TABLE).stdout
    assert "chain" not in listing


def blocks(listing: str) -> list[str]:
    """The maps and chains of an `nft list table`, in a fixed order (nft lists chains by age)."""
    body = listing.strip().removeprefix(f"table ip {TABLE} {{").removesuffix("}")
    return sorted(b.strip() for b in body.split("\n\n"))


async def test_partial_syncs_leave_the_kernel_as_a_full_sync_would(cluster):
    t = cluster
    steps = [
        [policy("p1", {"matchLabels": {"pod": "b1"}}, ["Ingress"])],
        [policy("p1", {"matchLabels": {"pod": "b1"}}, ["Ingress"],
                ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]),
         policy("p2", {}, ["Egress"], egress=[{"ports": [{"port": 8080}]}])],
        [policy("p2", {}, ["Egress"], egress=[{"ports": [{"port": 8080}]}])],
    ]
    applier = t.policy_appliers["node-b"]
    for policies in steps:
        rs = desired_ruleset(policies, t.pod_infos(), t.namespaces, "node-b")
        await applier.sync(rs)
        incremental = blocks(await applier.list_table())
        fresh = NftApplier(TABLE, netns=t.nodes["node-b"])
        await fresh.sync(rs)
        assert blocks(await fresh.list_table()) == incremental
    assert reach(t, "a1", t.svc_ip(20), 80) == "b1"
    assert reach(t, "b1", t.svc_ip(21), 80) == "a2"
    assert reach(t, "b1", t.pods["a2"]["ip"], 9) == "timeout"  # egress allows port 8080 only
