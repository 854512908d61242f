"""A cluster's settings: its name, its address ranges and where its state lives.

Written once by `skiff up` to `<state dir>/cluster.json` and read back by every component, so
that the control plane, the node agents and `skiff down` agree on what the cluster owns.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$")
# kube-apiserver refuses a larger IPv4 service range ("the mask must be >= 12").
MIN_SERVICE_PREFIX = 12


def pool_range(pool: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The first and last address of a LoadBalancer pool, `a.b.c.d-e.f.g.h` or a CIDR (whose network
    and broadcast addresses are left out). ValueError if it is neither."""
    if "-" in pool:
        lo, hi = (ipaddress.IPv4Address(p.strip()) for p in pool.split("-", 1))
        if hi < lo:
            raise ValueError(f"{pool}: the last address comes before the first")
        return lo, hi
    net = ipaddress.IPv4Network(pool.strip(), strict=False)
    if net.num_addresses > 2:
        return net[1], net[-2]
    return net[0], net[-1]


def pool_networks(pool: str) -> list[ipaddress.IPv4Network]:
    return list(ipaddress.summarize_address_range(*pool_range(pool)))


def skiff_home() -> Path:
    """Root of all clusters' state. SKIFF_HOME overrides it (tests use a temporary one)."""
    return Path(os.environ.get("SKIFF_HOME") or Path.home() / ".skiff")


@dataclass
class ClusterConfig:
    name: str = "skiff"
    nodes: int = 3
    # Node network: the host is .1 (on its macvlan); node i (1-based) is .(i+1).
    node_cidr: str = "172.18.0.0/16"
    # Each node owns one /24 of this: node i gets 10.244.(i-1).0/24.
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    node_port_range: str = "30000-32767"
    # LoadBalancer pool, inside the node network like kind + cloud-provider-kind.
    lb_pool: str = "172.18.255.200-172.18.255.250"
    cluster_domain: str = "cluster.local"
    # Upstream resolvers for names outside the cluster domain; empty means the host's.
    dns_upstreams: list[str] = field(default_factory=list)
    # Seconds without a Lease renewal before a node is NotReady.
    node_grace_seconds: float = 4.0
    api_port: int = 0  # chosen at `skiff up`
    token: str = ""  # bearer token, generated at `skiff up`

    # ---- derived addresses -------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        return str(ipaddress.ip_network(self.node_cidr)[1])

    def node_name(self, index: int) -> str:
        """index is 0-based. Node 0 is the control-plane node, as in kind."""
        return f"{self.name}-control-plane" if index == 0 else f"{self.name}-worker{'' if index == 1 else index}"

    def node_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.node_cidr)[index + 2])

    def node_pod_cidr(self, index: int) -> str:
        net = ipaddress.ip_network(self.pod_cidr)
        return str(list(net.subnets(new_prefix=24))[index]) if net.prefixlen <= 24 else str(net)

    @property
    def kubernetes_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[10])

    @property
    def state_dir(self) -> Path:
        return skiff_home() / self.name

    @property
    def server_url(self) -> str:
        """How clients on the host reach the API server."""
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def in_cluster_server_url(self) -> str:
        """How node agents and system pods reach it: the host's address on the node network."""
        return f"https://{self.host_ip}:{self.api_port}"

    # ---- validation --------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is wrong with these settings, each naming the `skiff up` flag to change; empty if
        nothing. Checked before anything is created, so a bad flag costs nothing."""
        out: list[str] = []
        nets: dict[str, ipaddress.IPv4Network] = {}
        for flag, value in (("--node-cidr", self.node_cidr), ("--pod-cidr", self.pod_cidr),
                            ("--service-cidr", self.service_cidr)):
            try:
                nets[flag] = ipaddress.IPv4Network(value)
            except ValueError as e:
                hint = " (host bits set: use the network address)" if "host bits" in str(e) else ""
                out.append(f"{flag} {value}: not an IPv4 network in CIDR notation{hint}, e.g. "
                           f"{getattr(ClusterConfig, flag[2:].replace('-', '_'))}")
        if self.nodes < 1:
            out.append("--nodes must be at least 1")
        node, pod, svc = nets.get("--node-cidr"), nets.get("--pod-cidr"), nets.get("--service-cidr")
        if node is not None and node.num_addresses - 3 < self.nodes:  # network, host, broadcast
            out.append(f"--node-cidr {node} has room for {max(node.num_addresses - 3, 0)} nodes, not "
                       f"{self.nodes}: use a larger range (a /24 holds 253)")
        if pod is not None:
            slots = 2 ** (24 - pod.prefixlen) if pod.prefixlen <= 24 else 0
            if slots < self.nodes:
                out.append(f"--pod-cidr {pod} has {slots} /24 range{'' if slots == 1 else 's'}, and each node needs one "
                           f"for its pods: "
                           f"use a /{max(24 - (self.nodes - 1).bit_length(), 8)} or larger for {self.nodes} nodes")
        if svc is not None and svc.prefixlen < MIN_SERVICE_PREFIX:
            out.append(f"--service-cidr {svc} is too large: the mask must be >= {MIN_SERVICE_PREFIX}")
        elif svc is not None and svc.num_addresses < 16:
            out.append(f"--service-cidr {svc} is too small: cluster DNS takes its 10th address; use a /28 or larger")
        named = [(f, n) for f, n in nets.items()]
        for i, (fa, a) in enumerate(named):
            for fb, b in named[i + 1:]:
                if a.overlaps(b):
                    out.append(f"{fa} {a} and {fb} {b} overlap: give each its own range")
        try:
            first, last = pool_range(self.lb_pool)
        except ValueError:
            out.append(f"--lb-pool {self.lb_pool}: not an address range (first-last) or a CIDR, e.g. "
                       f"{ClusterConfig.lb_pool}")
        else:
            pool = list(ipaddress.summarize_address_range(first, last))
            for flag in ("--pod-cidr", "--service-cidr"):
                if flag in nets and any(p.overlaps(nets[flag]) for p in pool):
                    out.append(f"--lb-pool {self.lb_pool} overlaps {flag} {nets[flag]}: choose addresses outside it")
            if node is not None and any(p.overlaps(node) for p in pool):
                taken = {node.network_address, node.broadcast_address, ipaddress.IPv4Address(self.host_ip)}
                taken |= {node[i + 2] for i in range(self.nodes) if i + 2 < node.num_addresses}
                clash = sorted(a for a in taken if first <= a <= last)
                if clash:
                    out.append(f"--lb-pool {self.lb_pool} includes {clash[0]}, which the host or a node uses: "
                               f"start the pool above {node[self.nodes + 1]}")
        if self.node_grace_seconds <= 0:
            out.append("--node-grace must be more than 0 seconds")
        if self.dns_upstreams:
            from skiff.dns.server import parse_upstream

            for upstream in self.dns_upstreams:
                try:
                    host, port = parse_upstream(upstream)
                    ipaddress.ip_address(host)
                    if not 0 < port < 65536:
                        raise ValueError(port)
                except ValueError:
                    out.append(f"--dns-upstream {upstream}: not IP[:PORT] (a resolver's address, not its name)")
        return out

    # ---- persistence -------------------------------------------------------------------
    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "cluster.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, name: str) -> ClusterConfig:
        path = skiff_home() / name / "cluster.json"
        return cls(**json.loads(path.read_text()))

    @classmethod
    def load_dir(cls, state_dir: str | Path) -> ClusterConfig:
        return cls(**json.loads((Path(state_dir) / "cluster.json").read_text()))
