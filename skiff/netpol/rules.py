"""NetworkPolicies + pods + namespaces -> one node's nftables table (pure: no kernel, no API).

Semantics (networking.k8s.io/v1, as the upstream e2e suite checks them):
- A pod is isolated for a direction when some policy in its namespace selects it and lists that
  direction in policyTypes; then only what one of those policies' rules allows gets through, and
  the policies add up (the union of their rules). A connection needs the source pod's egress
  *and* the destination pod's ingress to allow it.
- Policies judge connections, not packets: replies and the rest of an allowed connection pass.
- The check runs on the forward hook of the node that holds the pod, which is after the Service
  DNAT of prerouting and before the masquerade of postrouting: a policy sees the backend pod's IP
  and port, and the original client, as on Kubernetes.
- The node's own traffic (the kubelet's probes, hostNetwork pods) is local output or input, never
  forwarded, so it is always allowed, as the documentation promises. A pod reaching itself, also
  through its own Service, is allowed too: a pod cannot block access to itself.

Layout: the base chain sends a new connection from an isolated local pod to that pod's egress
chain and one to an isolated local pod to its ingress chain (verdict maps keyed by pod IP). An
egress chain `return`s when a rule allows, so that the destination's ingress is checked next on
the same node; both chains end in drop. A node with no isolated pod has an empty ruleset.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skiff.api.validation.workloads import selector_matches
from skiff.proxy.model import NamedSet, Ruleset
from skiff.proxy.rules import chain_name

TABLE = "skiff-netpol"
FORWARD_HOOK = "type filter hook forward priority 0"
INGRESS_MAP = "ingress-pods"
EGRESS_MAP = "egress-pods"

_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class PodInfo:
    """What policies look at in a pod. ports holds (name, protocol, number) of its container ports."""

    namespace: str
    name: str
    ip: str
    node: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def pod_info(pod: dict) -> PodInfo | None:
    """The policy view of a pod, or None for one policies do not apply to.

    hostNetwork pods share their node's address, so they count as the node; a pod without an IP,
    or one that has finished (its IP may already belong to another pod), has no traffic to judge.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ip = status.get("podIP") or ""
    if spec.get("hostNetwork") or not ip or status.get("phase") in ("Succeeded", "Failed"):
        return None
    try:
        if not isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address):
            return None
    except ValueError:
        return None
    meta = pod.get("metadata") or {}
    ports = []
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                ports.append((p.get("name") or "", p.get("protocol") or "TCP", int(p["containerPort"])))
    return PodInfo(meta.get("namespace") or "default", meta.get("name") or "", ip, spec.get("nodeName") or "",
                   tuple(sorted((meta.get("labels") or {}).items())), tuple(sorted(set(ports))))


def _selected(policy: dict, pod: PodInfo, direction: str) -> bool:
    meta = policy.get("metadata") or {}
    spec = policy.get("spec") or {}
    if (meta.get("namespace") or "default") != pod.namespace:
        return False
    if direction not in _policy_types(spec):
        return False
    return selector_matches(spec.get("podSelector") or {}, pod.label_map)


def _policy_types(spec: dict) -> list[str]:
    # The API server defaults policyTypes; this repeats the default for objects that skipped it.
    return list(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else [])))


def _peer_pods(peer: dict, policy_ns: str, pods: Iterable[PodInfo],
               namespaces: Mapping[str, Mapping[str, str]]) -> list[PodInfo] | None:
    """The pods a selector peer stands for, or None when the peer is not a selector peer."""
    ns_sel = peer.get("namespaceSelector")
    pod_sel = peer.get("podSelector")
    if ns_sel is None and pod_sel is None:
        return None
    found = []
    for p in pods:
        if ns_sel is None:
            if p.namespace != policy_ns:
                continue
        elif p.namespace not in namespaces or not selector_matches(ns_sel, dict(namespaces[p.namespace])):
            continue
        if pod_sel is not None and not selector_matches(pod_sel, p.label_map):
            continue
        found.append(p)
    return found


@dataclass(frozen=True)
class _Block:
    cidr: ipaddress.IPv4Network
    excepts: tuple[ipaddress.IPv4Network, ...]

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return addr in self.cidr and not any(addr in e for e in self.excepts)

    def match(self, field: str) -> str:
        text = f"{field} {self.cidr}"
        if self.excepts:
            text += f" {field} != {{ {', '.join(str(e) for e in self.excepts)} }}"
        return text


def _ip_block(block: dict) -> _Block | None:
    try:
        cidr = ipaddress.ip_network(block.get("cidr") or "", strict=False)
    except ValueError:
        return None
    if not isinstance(cidr, ipaddress.IPv4Network):
        return None  # the pod network is IPv4 only: an IPv6 block matches nothing here
    excepts = []
    for e in block.get("except") or []:
        try:
            net = ipaddress.ip_network(e, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            excepts.append(net)
    return _Block(cidr, tuple(sorted(excepts)))


def _ip_set(ips: Iterable[str]) -> str:
    ordered = sorted(set(ips), key=ipaddress.ip_address)
    return ordered[0] if len(ordered) == 1 else "{ " + ", ".join(ordered) + " }"


def _port_range(port: dict) -> str:
    start = int(port["port"])
    end = port.get("endPort")
    return f"{start}-{int(end)}" if end and int(end) > start else str(start)


def _named_numbers(pod: PodInfo, name: str, protocol: str) -> list[int]:
    return sorted({n for (pname, proto, n) in pod.ports if pname == name and proto == protocol})


def _ingress_rules(rule: dict, target: PodInfo, policy_ns: str, pods: list[PodInfo],
                   namespaces: Mapping[str, Mapping[str, str]], comment: str) -> list[str]:
    """accept rules for one ingress rule of a policy that selects `target`."""
    remotes: list[str] = []
    if not rule.get("from"):
        remotes = [""]
    for peer in rule.get("from") or []:
        if peer.get("ipBlock"):
            block = _ip_block(peer["ipBlock"])
            if block is not None:
                remotes.append(block.match("ip saddr"))
            continue
        peer_pods = _peer_pods(peer, policy_ns, pods, namespaces)
        if peer_pods:
            remotes.append(f"ip saddr {_ip_set(p.ip for p in peer_pods)}")
    ports: list[str] = []
    if not rule.get("ports"):
        ports = [""]
    for port in rule.get("ports") or []:
        proto = _PROTOCOLS.get(port.get("protocol") or "TCP")
        if proto is None:
            continue
        value = port.get("port")
        if value is None:
            ports.append(f"meta l4proto {proto}")
        elif isinstance(value, int) or str(value).isdigit():
            ports.append(f"{proto} dport {_port_range(port)}")
        else:
            # A named port means the number the destination pod (here: the target) gives that name.
            for number in _named_numbers(target, str(value), port.get("protocol") or "TCP"):
                ports.append(f"{proto} dport {number}")
    return [_rule(r, p, "accept", comment) for r in remotes for p in ports]


def _egress_rules(rule: dict, policy_ns: str, pods: list[PodInfo],
                  namespaces: Mapping[str, Mapping[str, str]], comment: str) -> list[str]:
    """return rules (allowed: go on to the destination's ingress check) for one egress rule."""
    # Each peer: a match on the destination address, and the pods it can stand for (whose
    # container ports give named ports their numbers).
    peers: list[tuple[str, list[PodInfo]]] = []
    if not rule.get("to"):
        peers = [("", pods)]
    for peer in rule.get("to") or []:
        if peer.get("ipBlock"):
            block = _ip_block(peer["ipBlock"])
            if block is not None:
                peers.append((block.match("ip daddr"), [p for p in pods if block.contains(p.ip)]))
            continue
        peer_pods = _peer_pods(peer, policy_ns, pods, namespaces)
        if peer_pods:
            peers.append((f"ip daddr {_ip_set(p.ip for p in peer_pods)}", peer_pods))
    out: list[str] = []
    port_list = rule.get("ports") or [None]
    for remote, remote_pods in peers:
        for port in port_list:
            if port is None:
                out.append(_rule(remote, "", "return", comment))
                continue
            protocol = port.get("protocol") or "TCP"
            proto = _PROTOCOLS.get(protocol)
            if proto is None:
                continue
            value = port.get("port")
            if value is None:
                out.append(_rule(remote, f"meta l4proto {proto}", "return", comment))
            elif isinstance(value, int) or str(value).isdigit():
                out.append(_rule(remote, f"{proto} dport {_port_range(port)}", "return", comment))
            else:
                # Named: each destination pod's own number for that name, so address and port together.
                keys = sorted({f"{p.ip} . {proto} . {n}" for p in remote_pods
                               for n in _named_numbers(p, str(value), protocol)},
                              key=lambda k: (ipaddress.ip_address(k.split(" ")[0]), k))
                if keys:
                    out.append(_rule("", f"ip daddr . meta l4proto . th dport {{ {', '.join(keys)} }}",
                                     "return", comment))
    return out


def _rule(remote: str, port: str, verdict: str, comment: str) -> str:
    return " ".join(x for x in (remote, port, verdict, f'comment "{comment}"') if x)


def _policy_key(policy: dict) -> tuple[str, str]:
    meta = policy.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


def desired_ruleset(policies: Iterable[dict], pods: Iterable[PodInfo],
                    namespaces: Mapping[str, Mapping[str, str]], node_name: str) -> Ruleset:
    """The table for node `node_name`: the policies that isolate the pods it holds.

    namespaces maps each namespace's name to its labels (for namespaceSelector peers).
    """
    all_pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    ordered = sorted(policies, key=_policy_key)
    rs = Ruleset()
    ingress: dict[str, str] = {}
    egress: dict[str, str] = {}
    for pod in all_pods:
        if pod.node != node_name:
            continue
        pod_key = f"{pod.namespace}/{pod.name}"
        for direction, verdicts, prefix in (("Ingress", ingress, "ingress"), ("Egress", egress, "egress")):
            selecting = [p for p in ordered if _selected(p, pod, direction)]
            if not selecting:
                continue
            if direction == "Ingress":
                rules = [f'ip saddr {pod.ip} accept comment "a pod can always reach itself"']
            else:
                rules = [f'ip daddr {pod.ip} return comment "a pod can always reach itself"']
            for policy in selecting:
                ns, name = _policy_key(policy)
                spec = policy.get("spec") or {}
                for i, rule in enumerate(spec.get(direction.lower()) or []):
                    comment = f"{ns}/{name} {direction.lower()}[{i}]"
                    if direction == "Ingress":
                        rules += _ingress_rules(rule or {}, pod, ns, all_pods, namespaces, comment)
                    else:
                        rules += _egress_rules(rule or {}, ns, all_pods, namespaces, comment)
            # A named and a numbered port, or two policies, can give the same match: keep the first.
            first: dict[str, str] = {}
            for r in rules:
                first.setdefault(r.split(' comment "')[0], r)
            rules = list(first.values())
            rules.append(f'drop comment "{pod_key}: isolated for {direction.lower()}"')
            chain = chain_name(prefix, pod_key.replace("/", "-"))
            rs.add_chain(chain, rules)
            verdicts[pod.ip] = f"jump {chain}"
    if not ingress and not egress:
        return rs
    base = ["ct state established,related accept"]
    for set_name, field, verdicts in ((EGRESS_MAP, "ip saddr", egress), (INGRESS_MAP, "ip daddr", ingress)):
        rs.add_set(NamedSet(set_name, "ipv4_addr", "verdict"))
        for ip, verdict in verdicts.items():
            rs.add_element(set_name, ip, verdict)
        base.append(f"{field} vmap @{set_name}")
    rs.add_chain("forward", base, FORWARD_HOOK)
    return rs
