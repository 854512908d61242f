"""The cluster network as data: which `ip` commands build it, per namespace (pure, no kernel).

Shape: a bridge in the host namespace carries the node network; the host owns its first address.
Each node is a network namespace whose ``eth0`` is a veth into the bridge. Each node owns a pod
CIDR; its first address (the pods' gateway) sits on the node's loopback, and every pod gets a
/32 route on its own veth (see skiff.node.sandbox). Pod CIDRs of other nodes are routed via their
node IPs, both on the host and on every node, so the host, every node and every pod reach every
pod through the bridge with forwarding enabled only inside node namespaces; the host's
ip_forward is left alone.

Nothing leads out of the machine: nodes have no default route, and the host routes the service
range to an `unreachable` route, so packets to a ClusterIP never follow the host's default route.
Nodes do route the service range towards the host: kube-proxy rewrites those packets (DNAT) in
the node before they ever leave, and a local connect() needs some route to reach that rewrite.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from skiff.config import ClusterConfig
from skiff.net import names

# NodePort and LoadBalancer traffic to an endpoint on another node leaves through the interface
# it arrived on; a router then sends the client an ICMP redirect (rate-limited, but looked up per
# packet). The client cannot use one (it addressed the node, not the pod), so nodes don't send them.
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0"}


@dataclass
class NodePlan:
    index: int
    name: str
    netns: str
    ip: str
    pod_cidr: str
    pod_gateway: str
    host_veth: str
    lines: list[str] = field(default_factory=list)  # `ip -n <netns> -batch` input
    sysctls: dict[str, str] = field(default_factory=dict)


@dataclass
class ClusterNetworkPlan:
    cluster: str
    bridge: str
    host_lines: list[str]  # `ip -batch` input for the host namespace
    nodes: list[NodePlan]


def pod_gateway(pod_cidr: str) -> str:
    """The address pods use as their default gateway: the first host address of the node's range."""
    net = ipaddress.ip_network(pod_cidr)
    return str(net.network_address + 1) if net.num_addresses > 2 else str(net.network_address)


def plan_cluster_network(cfg: ClusterConfig) -> ClusterNetworkPlan:
    node_net = ipaddress.ip_network(cfg.node_cidr)
    plen = node_net.prefixlen
    bridge = names.bridge_name(cfg.name)
    alias = names.link_alias(cfg.name)
    proto = names.ROUTE_PROTO

    nodes = [
        NodePlan(
            index=i,
            name=cfg.node_name(i),
            netns=names.node_netns_name(cfg.node_name(i)),
            ip=cfg.node_ip(i),
            pod_cidr=cfg.node_pod_cidr(i),
            pod_gateway=pod_gateway(cfg.node_pod_cidr(i)),
            host_veth=names.node_veth_name(cfg.name, i),
        )
        for i in range(cfg.nodes)
    ]

    host = [f"netns add {n.netns}" for n in nodes]
    host += [
        # No STP and no forward delay: ports forward as soon as they are up.
        f"link add {bridge} type bridge forward_delay 0 stp_state 0",
        f'link set {bridge} alias "{alias}"',
        f"addr add {cfg.host_ip}/{plen} dev {bridge}",
        f"link set {bridge} up",
    ]
    for n in nodes:
        host += [
            f"link add {n.host_veth} type veth peer name eth0 netns {n.netns}",
            f'link set {n.host_veth} alias "{alias}"',
            f"link set {n.host_veth} master {bridge} up",
        ]
    for n in nodes:
        host.append(f"route add {n.pod_cidr} via {n.ip} dev {bridge} proto {proto}")
    host.append(
        f"route add unreachable {cfg.service_cidr} metric {names.service_route_metric(cfg.name)} proto {proto}"
    )

    for n in nodes:
        n.lines = [
            "link set lo up",
            f"addr add {n.ip}/{plen} dev eth0",
            "link set eth0 up",
            f"addr add {n.pod_gateway}/32 dev lo",
        ]
        n.lines += [
            f"route add {other.pod_cidr} via {other.ip} dev eth0 proto {proto}"
            for other in nodes
            if other is not n
        ]
        n.lines.append(f"route add {cfg.service_cidr} via {cfg.host_ip} dev eth0 proto {proto}")
        n.sysctls = dict(NODE_SYSCTLS)

    return ClusterNetworkPlan(cluster=cfg.name, bridge=bridge, host_lines=host, nodes=nodes)


def overlapping_routes(cfg: ClusterConfig, routes: list[dict]) -> list[str]:
    """Existing host routes (``ip -j route`` objects) that collide with the cluster's ranges.

    Another cluster's unreachable service route is no conflict (the service range is virtual and
    each cluster keeps its own route); anything else overlapping the node or pod range would make
    the host send cluster traffic somewhere else.
    """
    ranges = {
        "node network": ipaddress.ip_network(cfg.node_cidr),
        "pod network": ipaddress.ip_network(cfg.pod_cidr),
        "service network": ipaddress.ip_network(cfg.service_cidr),
    }
    conflicts = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or ":" in dst:
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        for what, rng in ranges.items():
            if not net.overlaps(rng):
                continue
            if what == "service network" and route.get("type") == "unreachable":
                continue
            where = f"dev {route['dev']}" if route.get("dev") else route.get("type", "")
            conflicts.append(f"the {what} {rng} overlaps the existing route {dst} {where}".rstrip())
    return conflicts
