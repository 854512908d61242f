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
