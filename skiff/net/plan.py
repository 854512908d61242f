"""The cluster network as data: which `ip` commands build it, per namespace (pure, no kernel).

Shape: the node network is one layer-2 segment of macvlan links in bridge mode on a port-less
bridge device in the host namespace. The host has one of them and owns the network's first
address; each node is a network namespace whose ``eth0`` is another. Each node owns a pod CIDR;
its first address (the pods' gateway) sits on the node's loopback, and every pod gets a /32
route on its own veth (see skiff.node.sandbox). Pod CIDRs of other nodes are routed via their
node IPs, both on the host and on every node, so the host, every node and every pod reach every
pod with forwarding enabled only inside node namespaces; the host's ip_forward is left alone.

Why macvlan rather than veths on the bridge: macvlan delivers a frame between two of its links
directly, once, where a veth pair into a bridge costs two device hops, the bridge itself and the
host's bridge netfilter hooks (br_netfilter is often on for Docker). NodePort and LoadBalancer
traffic to an endpoint on another node crosses the node network twice, so that path gained the
most (bench/service_traffic.py). The bridge only gives the links a parent that is always up; it
has no ports, so nothing the links send to an unknown address goes anywhere.

Nothing leads out of the machine: nodes have no default route, and the host routes the service
range to an `unreachable` route, so packets to a ClusterIP never follow the host's default route.
Nodes do route the service range towards the host: kube-proxy rewrites those packets (DNAT) in
the node before they ever leave, and a local connect() needs some route to reach that rewrite.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from skiff.config import ClusterConfig, pool_networks
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
    lines: list[str] = field(default_factory=list)  # `ip -n <netns> -batch` input
    sysctls: dict[str, str] = field(default_factory=dict)


@dataclass
class ClusterNetworkPlan:
    cluster: str
    bridge: str
    host_link: str  # the host's macvlan on the node network, which holds the host's address
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
    host_link = names.host_link_name(cfg.name)
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
        )
        for i in range(cfg.nodes)
    ]

    host = [f"netns add {n.netns}" for n in nodes]
    host += [
        f"link add {bridge} type bridge",
        f'link set {bridge} alias "{alias}"',
        f"link set {bridge} up",
        f"link add {host_link} link {bridge} type macvlan mode bridge",
        f'link set {host_link} alias "{alias}"',
        f"addr add {cfg.host_ip}/{plen} dev {host_link}",
        f"link set {host_link} up",
    ]
    # Created straight inside the node's namespace: no host-side end to name, clean up or leak.
    host += [f"link add eth0 link {bridge} netns {n.netns} type macvlan mode bridge" for n in nodes]
    for n in nodes:
        host.append(f"route add {n.pod_cidr} via {n.ip} dev {host_link} proto {proto}")
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

    return ClusterNetworkPlan(cluster=cfg.name, bridge=bridge, host_link=host_link, host_lines=host, nodes=nodes)


def overlapping_routes(cfg: ClusterConfig, routes: list[dict]) -> list[str]:
    """Existing host routes (``ip -j route`` objects) that collide with the cluster's ranges.

    Another cluster's unreachable service route is no conflict (the service range is virtual and
    each cluster keeps its own route); anything else overlapping the node or pod range, or a
    LoadBalancer pool outside the node network, would make the host send cluster traffic somewhere
    else (or take over another network's addresses, since each LB address gets a host route).
    """
    node_net = ipaddress.ip_network(cfg.node_cidr)
    ranges = {
        "node network": [node_net],
        "pod network": [ipaddress.ip_network(cfg.pod_cidr)],
        "service network": [ipaddress.ip_network(cfg.service_cidr)],
        "LoadBalancer pool": [p for p in pool_networks(cfg.lb_pool) if not p.subnet_of(node_net)],
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
        for what, nets in ranges.items():
            if not any(net.overlaps(rng) for rng in nets):
                continue
            if what == "service network" and route.get("type") == "unreachable":
                continue
            where = f"dev {route['dev']}" if route.get("dev") else route.get("type", "")
            rng = cfg.lb_pool if what == "LoadBalancer pool" else nets[0]
            conflicts.append(f"the {what} {rng} overlaps the existing route {dst} {where}".rstrip())
    return conflicts
