"""The proxy's desired state: a structured nftables table that renders deterministically.

Kept separate from both the Kubernetes semantics (rules.py) and the kernel (nft.py) so that the
partial-sync diff can compare two rulesets chain by chain and element by element.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Key used in Ruleset.udp_destinations for NodePorts, which match any node IP.
NODEPORT_ANY_IP = "*"


@dataclass(frozen=True)
class NodeContext:
    """What the proxy needs to know about the node it programs.

    pod_cidr is the cluster-wide pod range: traffic to a ClusterIP from outside it is masqueraded
    (kube-proxy's "local detector"). service_cidr, when given, makes unallocated ClusterIPs drop.
    """

    node_name: str
    node_ips: tuple[str, ...]
    pod_cidr: str
    masquerade_all: bool = False
    service_cidr: str | None = None


@dataclass(frozen=True)
class Chain:
    """A chain and its rules in order. hook is e.g. "type nat hook prerouting priority -100"."""

    name: str
    rules: tuple[str, ...] = ()
    hook: str | None = None


@dataclass(frozen=True)
class NamedSet:
    """A named set (value_type None) or map (value_type e.g. "verdict"); elements live in Ruleset."""

    name: str
    key_type: str
    value_type: str | None = None
    flags: tuple[str, ...] = ()
    timeout: int | None = None
    comment: str | None = None

    @property
    def is_map(self) -> bool:
        return self.value_type is not None

    def body(self) -> str:
        typ = self.key_type if self.value_type is None else f"{self.key_type} : {self.value_type}"
        parts = [f"type {typ} ;"]
        if self.flags:
            parts.append(f"flags {','.join(self.flags)} ;")
        if self.timeout is not None:
            parts.append(f"timeout {self.timeout}s ;")
        if self.comment:
            parts.append(f'comment "{self.comment}" ;')
        return "{ " + " ".join(parts) + " }"


@dataclass
class Delta:
    """What a Ruleset changed relative to `base`, the ruleset it was patched from.

    It lets diff() look only at the names listed here instead of every chain and element, which is
    what makes one endpoint change O(that Service) at 30,000 chains. Names listed may turn out
    unchanged; names not listed are guaranteed identical to base's.
    """

    base: Ruleset
    chains: set[str] = field(default_factory=set)
    sets: set[str] = field(default_factory=set)
    elements: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Ruleset:
    """Everything one node's proxy table should contain.

    elements maps a set/map name to {key: value}; value is "" for plain sets. udp_destinations is
    not rendered: it records, per (service IP or NODEPORT_ANY_IP, port), which endpoint IPs UDP
    traffic can reach, so that conntrack cleanup can find flows to endpoints that went away.
    delta, when set, says which names differ from the ruleset this one was patched from.
    """

    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NamedSet] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    udp_destinations: dict[tuple[str, int], frozenset[str]] = field(default_factory=dict)
    delta: Delta | None = field(default=None, compare=False, repr=False)

    def add_chain(self, name: str, rules: list[str] | tuple[str, ...] = (), hook: str | None = None) -> None:
        if name in self.chains:
            raise ValueError(f"duplicate chain {name}")
        self.chains[name] = Chain(name, tuple(rules), hook)

    def add_set(self, s: NamedSet) -> None:
        if s.name in self.sets:
            raise ValueError(f"duplicate set {s.name}")
        self.sets[s.name] = s
        self.elements[s.name] = {}

    def add_element(self, set_name: str, key: str, value: str = "") -> None:
        self.elements.setdefault(set_name, {})[key] = value

    def merge(self, part: Ruleset) -> bool:
        """Add another (per-service) part; chain and set names must not collide.

        Returns False when an element key or UDP destination was already present (two Services
        claiming the same address and port): the later part wins, as dict.update does.
        """
        for name, chain in part.chains.items():
            if name in self.chains:
                raise ValueError(f"duplicate chain {name}")
            self.chains[name] = chain
        for name, s in part.sets.items():
            if name in self.sets:
                raise ValueError(f"duplicate set {name}")
            self.sets[name] = s
        disjoint = True
        for name, elems in part.elements.items():
            target = self.elements.setdefault(name, {})
            before = len(target)
            target.update(elems)
            disjoint = disjoint and len(target) == before + len(elems)
        before = len(self.udp_destinations)
        self.udp_destinations.update(part.udp_destinations)
        return disjoint and len(self.udp_destinations) == before + len(part.udp_destinations)
