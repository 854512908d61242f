"""The cluster DNS zone: Kubernetes objects in, DNS answers out (no sockets here).

Follows the Kubernetes DNS-based service discovery specification (schema 1.1.0) and, where the
spec leaves room, what CoreDNS's `kubernetes` plugin does (kubeadm's Corefile: `pods insecure`,
reverse zones answered for the cluster): the same names, TTLs, SRV weights, SOA values and the
same NXDOMAIN-versus-NODATA choices, because resolvers (musl especially) walk the search list
differently depending on which one they get.

The zone is indexed by owner name, so a query is one dict lookup; a change to a Service or one of
its EndpointSlices rebuilds only that Service's names.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from typing import NamedTuple

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

DEFAULT_TTL = 5
SCHEMA_VERSION = "1.1.0"
# CoreDNS hard-codes this TTL for dns-version, whatever the zone's TTL is.
DNS_VERSION_TTL = 28800
# SOA timers CoreDNS uses for the cluster zone (refresh, retry, expire).
SOA_TIMERS = (7200, 1800, 86400)

IN = dns.rdataclass.IN
_A, _AAAA, _SRV, _PTR = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.PTR
_CNAME, _TXT, _SOA, _NS = dns.rdatatype.CNAME, dns.rdatatype.TXT, dns.rdatatype.SOA, dns.rdatatype.NS
_ANY = dns.rdatatype.ANY
NOERROR, NXDOMAIN, SERVFAIL, REFUSED = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL,
                                        dns.rcode.REFUSED)
_IN_ADDR = dns.name.from_text("in-addr.arpa.")
_IP6_ARPA = dns.name.from_text("ip6.arpa.")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class Answer(NamedTuple):
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]


class _Node:
    """Everything owned by one name: its RRsets by type and, for SRV, the target addresses."""

    __slots__ = ("rrsets", "additional")

    def __init__(self) -> None:
        self.rrsets: dict[int, dns.rrset.RRset] = {}
        self.additional: list[dns.rrset.RRset] = []


def dashed(ip: str) -> str:
    """The label CoreDNS gives an endpoint without a hostname: 10.1.2.3 → 10-1-2-3, ::1 → --1."""
    label = ip.replace(".", "-").replace(":", "-")
    return label + "0" if label.endswith("-") else label


def undashed(label: str) -> str | None:
    """The IP a pod-record label stands for (`10-1-2-3`, `2001-db8--1`), or None if it is none."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _addr_rdata(ip: str) -> A | AAAA:
    return AAAA(IN, _AAAA, ip) if ":" in ip else A(IN, _A, ip)


def _rrset(name: dns.name.Name, rdtype: int, ttl: int, rdatas: Iterable) -> dns.rrset.RRset:
    rr = dns.rrset.RRset(name, IN, rdtype)
    for rd in rdatas:
        rr.add(rd, ttl)
    return rr


def _owned_by(rr: dns.rrset.RRset, qname: dns.name.Name) -> dns.rrset.RRset:
    """The RRset under the query's own spelling: answers keep the letter case of the question."""
    if rr.name.labels == qname.labels:
        return rr
    copy = rr.copy()
    copy.name = qname
    return copy


class Zone:
    """Answers for `<domain>` plus the PTR names of cluster addresses.

    Feed it objects with `update(event, obj)` (or the upsert/delete methods); ask with `answer()`.
    """

    def __init__(self, domain: str = "cluster.local", ttl: int = DEFAULT_TTL, pods: str = "insecure",
                 reverse_cidrs: Iterable[str] = (), dns_ips: Iterable[str] = (), synced: bool = True):
        if pods not in ("disabled", "insecure", "verified"):
            raise ValueError(f"pods mode must be disabled, insecure or verified, not {pods!r}")
        self.domain = domain.strip(".").lower()
        self.origin = dns.name.from_text(self.domain + ".")
        self.ttl = ttl
        self.pods = pods
        self.reverse_cidrs = [ipaddress.ip_network(c, strict=False) for c in reverse_cidrs]
        # Until the informers have listed everything, "no such name" may just mean "not seen
        # yet": CoreDNS answers SERVFAIL instead of NXDOMAIN then, and so do we.
        self.synced = synced
        self.serial = int(time.time())
        self._services: dict[tuple[str, str], dict] = {}
        self._slices: dict[tuple[str, str], tuple[str, dict]] = {}  # (ns, slice) -> (service, slice)
        self._slices_by_service: dict[tuple[str, str], dict[str, dict]] = {}
        self._namespaces: set[str] = set()
        self._services_per_ns: dict[str, int] = {}
        self._pod_ips: dict[str, dict[str, int]] = {}  # ns -> ip -> number of pods with it
        self._pod_ip_of: dict[tuple[str, str], list[str]] = {}
        self._names: dict[dns.name.Name, _Node] = {}
        self._owned: dict[tuple[str, str], list[dns.name.Name]] = {}
        # reverse name -> service -> (targets, from a ClusterIP?)
        self._ptr: dict[dns.name.Name, dict[tuple[str, str], tuple[list[dns.name.Name], bool]]] = {}
        self._owned_ptr: dict[tuple[str, str], list[dns.name.Name]] = {}
        self._soa: tuple[int, dns.rrset.RRset] | None = None
        self._dns_ips = list(dns_ips)
        self._static_names(self._dns_ips)

    def set_ttl(self, ttl: int) -> None:
        """Serve every record with `ttl` from now on (a changed Corefile): records are built with
        the TTL they carry, so all of them are built again."""
        if ttl == self.ttl:
            return
        self.ttl = ttl
        self._soa = None
        self._static_names(self._dns_ips)  # replaces the names it made before
        for key in list(self._services):
            self._rebuild(key)

    # ---- feeding -----------------------------------------------------------------------------
    def update(self, event: str, obj: dict) -> None:
        """Apply one watch event (ADDED, MODIFIED or DELETED) for a Service, EndpointSlice,
        Namespace or Pod; other kinds are ignored."""
        kind = obj.get("kind", "")
        deleted = event == "DELETED"
        if kind == "Service":
            self.delete_service(obj) if deleted else self.upsert_service(obj)
        elif kind == "EndpointSlice":
            self.delete_endpoint_slice(obj) if deleted else self.upsert_endpoint_slice(obj)
        elif kind == "Namespace":
            name = obj["metadata"]["name"]
            self._namespaces.discard(name) if deleted else self._namespaces.add(name)
            self._touch()
        elif kind == "Pod":
            self.delete_pod(obj) if deleted else self.upsert_pod(obj)

    @classmethod
    def from_objects(cls, objects: Iterable[dict], **kwargs) -> Zone:
        zone = cls(**kwargs)
        for obj in objects:
            zone.update("ADDED", obj)
        return zone

    def upsert_service(self, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        if key not in self._services:
            self._services_per_ns[key[0]] = self._services_per_ns.get(key[0], 0) + 1
        self._services[key] = svc
        self._rebuild(key)

    def delete_service(self, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        if self._services.pop(key, None) is not None:
            left = self._services_per_ns[key[0]] - 1
            if left:
                self._services_per_ns[key[0]] = left
            else:
                del self._services_per_ns[key[0]]
        self._rebuild(key)

    def upsert_endpoint_slice(self, eps: dict) -> None:
        md = eps["metadata"]
        ns, name = md["namespace"], md["name"]
        service = (md.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
        previous = self._slices.get((ns, name))
        if previous is not None and previous[0] != service:
            self.delete_endpoint_slice(eps)
        if not service:
            return
        self._slices[(ns, name)] = (service, eps)
        self._slices_by_service.setdefault((ns, service), {})[name] = eps
        self._rebuild((ns, service))

    def delete_endpoint_slice(self, eps: dict) -> None:
        md = eps["metadata"]
        ns, name = md["namespace"], md["name"]
        previous = self._slices.pop((ns, name), None)
        if previous is None:
            return
        key = (ns, previous[0])
        per_service = self._slices_by_service.get(key, {})
        per_service.pop(name, None)
        if not per_service:
            self._slices_by_service.pop(key, None)
        self._rebuild(key)

    def upsert_pod(self, pod: dict) -> None:
        """Only `pods verified` needs pods: a pod name answers only if a pod has that IP."""
        self.delete_pod(pod)
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        status = pod.get("status") or {}
        ips = [p["ip"] for p in status.get("podIPs") or [] if p.get("ip")]
        if not ips and status.get("podIP"):
            ips = [status["podIP"]]
        if not ips or (pod.get("spec") or {}).get("hostNetwork"):
            return
        per_ns = self._pod_ips.setdefault(key[0], {})
        for ip in ips:
            per_ns[ip] = per_ns.get(ip, 0) + 1
        self._pod_ip_of[key] = ips
        self._touch()

    def delete_pod(self, pod: dict) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        ips = self._pod_ip_of.pop(key, None)
        if not ips:
            return
        per_ns = self._pod_ips[key[0]]
        for ip in ips:
            per_ns[ip] -= 1
            if not per_ns[ip]:
                del per_ns[ip]
        self._touch()

    def namespace_exists(self, ns: str) -> bool:
        return ns in self._namespaces or ns in self._services_per_ns

    # ---- building ----------------------------------------------------------------------------
    def _touch(self) -> None:
        self.serial = int(time.time())

    def _static_names(self, dns_ips: list[str]) -> None:
        version = dns.name.Name((b"dns-version",) + self.origin.labels)
        node = _Node()
        node.rrsets[_TXT] = _rrset(version, _TXT, DNS_VERSION_TTL, [TXT(IN, _TXT, [SCHEMA_VERSION.encode()])])
        self._names[version] = node
        ns_name = dns.name.Name((b"ns", b"dns") + self.origin.labels)
        apex = _Node()
        apex.rrsets[_NS] = _rrset(self.origin, _NS, self.ttl, [NS(IN, _NS, ns_name)])
        if dns_ips:
            # The apex NS needs an address to be useful: the kube-dns Service IP, as CoreDNS gives.
            server = _Node()
            for ip in dns_ips:
                t = _AAAA if ":" in ip else _A
                rr = server.rrsets.get(t) or server.rrsets.setdefault(t, dns.rrset.RRset(ns_name, IN, t))
                rr.add(_addr_rdata(ip), self.ttl)
            self._names[ns_name] = server
            apex.additional = list(server.rrsets.values())
        self._apex = apex

    def _rebuild(self, key: tuple[str, str]) -> None:
        for name in self._owned.pop(key, ()):
            self._names.pop(name, None)
        for rev in self._owned_ptr.pop(key, ()):
            entries = self._ptr.get(rev)
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del self._ptr[rev]
        self._touch()
        svc = self._services.get(key)
        if svc is None:
            return
        nodes, ptrs = self._service_records(key, svc)
        for name, node in nodes.items():
            self._names[name] = node
        self._owned[key] = list(nodes)
        for rev, (targets, from_cluster_ip) in ptrs.items():
            self._ptr.setdefault(rev, {})[key] = (targets, from_cluster_ip)
        self._owned_ptr[key] = list(ptrs)

    def _ready_endpoints(self, key: tuple[str, str]) -> tuple[dict[str, list[str]], list[tuple[str, list[dict]]]]:
        """label -> IPs of the ready endpoints, and per-endpoint (label, slice ports) for SRV.

        Ready means `conditions.ready` is true or unset. The EndpointSlice controller already
        folded publishNotReadyAddresses into that condition, so nothing else is consulted."""
        labels: dict[str, list[str]] = {}
        backends: list[tuple[str, list[dict]]] = []
        for eps in self._slices_by_service.get(key, {}).values():
            if eps.get("addressType") == "FQDN":
                continue
            ports = eps.get("ports") or []
            for ep in eps.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in ep.get("addresses") or []:
                    label = (ep.get("hostname") or dashed(ip)).lower()
                    ips = labels.setdefault(label, [])
                    if ip not in ips:
                        ips.append(ip)
                        backends.append((label, ports))
        return labels, backends

    def _service_records(self, key: tuple[str, str], svc: dict):
        ns, name = key
        spec = svc.get("spec") or {}
        svc_name = dns.name.Name((name.lower().encode(), ns.lower().encode(), b"svc") + self.origin.labels)
        records: dict[dns.name.Name, dict[int, list]] = {}
        additional: dict[dns.name.Name, list[dns.name.Name]] = {}
        ptrs: dict[dns.name.Name, tuple[list[dns.name.Name], bool]] = {}

        def add(owner: dns.name.Name, rdata) -> None:
            records.setdefault(owner, {}).setdefault(rdata.rdtype, []).append(rdata)

        if spec.get("type") == "ExternalName":
            # The type decides, not a leftover spec.externalName after a switch to ClusterIP.
            target = (spec.get("externalName") or "").strip()
            if target and not _is_ip(target):
                add(svc_name, CNAME(IN, _CNAME, dns.name.from_text(target.rstrip(".") + ".")))
            return self._finish(records, additional), ptrs

        cluster_ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP") or ""]) if ip]
        headless = cluster_ips == ["None"] or not cluster_ips
        labels, backends = self._ready_endpoints(key)

        # Every ready endpoint has a name under the Service (CoreDNS serves these for ClusterIP
        # Services too), and a PTR back to it.
        for label, ips in labels.items():
            ep_name = dns.name.Name((label.encode(),) + svc_name.labels)
            for ip in ips:
                add(ep_name, _addr_rdata(ip))
                rev = dns.reversename.from_address(ip)
                targets = ptrs.setdefault(rev, ([], False))[0]
                if ep_name not in targets:
                    targets.append(ep_name)

        srv: list[tuple[str, str, int, dns.name.Name]] = []  # (port name, protocol, port, target)
        if headless:
            for ips in labels.values():
                for ip in ips:
                    add(svc_name, _addr_rdata(ip))
            for label, ports in backends:
                target = dns.name.Name((label.encode(),) + svc_name.labels)
                for p in ports:
                    if p.get("port") is not None:
                        srv.append((p.get("name") or "", p.get("protocol") or "TCP", p["port"], target))
        else:
            for ip in cluster_ips:
                add(svc_name, _addr_rdata(ip))
                ptrs[dns.reversename.from_address(ip)] = ([svc_name], True)
            for p in spec.get("ports") or []:
                srv.append((p.get("name") or "", p.get("protocol") or "TCP", p["port"], svc_name))

        by_owner: dict[dns.name.Name, list[tuple[int, dns.name.Name]]] = {}
        for port_name, proto, port, target in srv:
            # The bare Service name answers SRV for every port; `_port._proto` only for named ones.
            owners = [svc_name]
            if port_name:
                owners.append(dns.name.Name((f"_{port_name}".lower().encode(),
                                             f"_{proto}".lower().encode()) + svc_name.labels))
            for owner in owners:
                entries = by_owner.setdefault(owner, [])
                if (port, target) not in entries:
                    entries.append((port, target))
        for owner, entries in by_owner.items():
            # Priority 0, weight floor(100 / number of targets), as CoreDNS computes them.
            weight = 100 // len(entries)
            for port, target in entries:
                add(owner, SRV(IN, _SRV, 0, weight, port, target))
                targets = additional.setdefault(owner, [])
                if target not in targets:
                    targets.append(target)
        return self._finish(records, additional), ptrs

    def _finish(self, records: dict[dns.name.Name, dict[int, list]],
                additional: dict[dns.name.Name, list[dns.name.Name]]) -> dict[dns.name.Name, _Node]:
        nodes: dict[dns.name.Name, _Node] = {}
        for owner, by_type in records.items():
            node = nodes[owner] = _Node()
            for rdtype, rdatas in by_type.items():
                node.rrsets[rdtype] = _rrset(owner, rdtype, self.ttl, rdatas)
        for owner, targets in additional.items():
            node = nodes[owner]
            for target in targets:
                tnode = nodes.get(target)
                if tnode is not None:
                    node.additional.extend(rr for t, rr in tnode.rrsets.items() if t in (_A, _AAAA))
        return nodes

    # ---- answering ---------------------------------------------------------------------------
    def soa(self) -> dns.rrset.RRset:
        if self._soa is None or self._soa[0] != self.serial:
            rd = SOA(IN, _SOA, dns.name.Name((b"ns", b"dns") + self.origin.labels),
                     dns.name.Name((b"hostmaster",) + self.origin.labels), self.serial, *SOA_TIMERS, self.ttl)
            self._soa = (self.serial, _rrset(self.origin, _SOA, min(self.ttl, 300), [rd]))
        return self._soa[1]

    def _negative(self, rcode: int, soa_owner: dns.name.Name | None = None) -> Answer:
        if rcode == NXDOMAIN and not self.synced:
            return Answer(SERVFAIL, [], [], [])
        soa = self.soa()
        if soa_owner is not None:
            soa = _owned_by(soa, soa_owner)
        return Answer(rcode, [], [soa], [])

    def is_authoritative(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.origin)

    def answer(self, qname: dns.name.Name | str, qtype: int) -> Answer | None:
        """The answer for one question, or None when the name is not ours to answer (outside the
        cluster domain, or a reverse name for an address outside the cluster ranges that the zone
        knows nothing about), meaning: forward it."""
        if isinstance(qname, str):
            qname = dns.name.from_text(qname)
        node = self._names.get(qname)
        if node is not None:
            return self._from_node(qname, qtype, node)
        if qname.is_subdomain(_IN_ADDR) or qname.is_subdomain(_IP6_ARPA):
            return self._reverse(qname, qtype)
        if not qname.is_subdomain(self.origin):
            return None
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return Answer(REFUSED, [], [], [])
        labels = [lb.lower() for lb in qname.relativize(self.origin).labels]
        n = len(labels)
        if n == 0:
            return self._apex_answer(qname, qtype)
        kind = labels[-1]
        if kind not in (b"svc", b"pod"):
            return self._negative(NXDOMAIN)
        if n == 1:
            return self._negative(NOERROR)
        ns = labels[-2].decode()
        if not self.namespace_exists(ns):
            return self._negative(NXDOMAIN)
        if n == 2:
            return self._negative(NOERROR)
        if kind == b"pod" and n == 3:
            return self._pod_answer(qname, qtype, ns, labels[0].decode())
        # Everything that exists below <ns>.svc is in the index; anything else does not exist.
        return self._negative(NXDOMAIN)

    def _from_node(self, qname: dns.name.Name, qtype: int, node: _Node) -> Answer:
        rr = node.rrsets.get(qtype)
        if rr is not None:
            return Answer(NOERROR, [_owned_by(rr, qname)], [],
                          node.additional if qtype == _SRV else [])
        if qtype == _ANY:
            return Answer(NOERROR, [_owned_by(r, qname) for r in node.rrsets.values()], [], [])
        cname = node.rrsets.get(_CNAME)
        if cname is not None and qtype != _SRV:
            answer = [_owned_by(cname, qname)]
            target = cname[0].target
            if target.is_subdomain(self.origin):
                # A CNAME into the cluster domain is ours to finish; others the server chases. As in
                # CoreDNS, it is only given with what it leads to: a target with no records of the
                # type asked for makes the answer NODATA, not a dangling CNAME.
                follow = self.answer(target, qtype)
                if follow is not None and follow.rcode == NOERROR and follow.answer:
                    answer.extend(r for r in follow.answer if r not in answer)
                    return Answer(NOERROR, answer, [], follow.additional)
                return self._negative(NOERROR)
            return Answer(NOERROR, answer, [], [])
        return self._negative(NOERROR)

    def _apex_answer(self, qname: dns.name.Name, qtype: int) -> Answer:
        if qtype == _SOA:
            return Answer(NOERROR, [_owned_by(self.soa(), qname)], [], [])
        if qtype == _NS:
            return Answer(NOERROR, [_owned_by(self._apex.rrsets[_NS], qname)], [], self._apex.additional)
        return self._negative(NOERROR)

    def _pod_answer(self, qname: dns.name.Name, qtype: int, ns: str, label: str) -> Answer:
        ip = undashed(label)
        if ip is None or self.pods == "disabled":
            return self._negative(NXDOMAIN)
        if self.pods == "verified" and ip not in self._pod_ips.get(ns, {}):
            return self._negative(NXDOMAIN)
        rdata = _addr_rdata(ip)
        if qtype == rdata.rdtype or qtype == _ANY:
            return Answer(NOERROR, [_rrset(qname, rdata.rdtype, self.ttl, [rdata])], [], [])
        return self._negative(NOERROR)

    def _reverse(self, qname: dns.name.Name, qtype: int) -> Answer | None:
        entries = self._ptr.get(qname)
        if entries:
            if qtype not in (_PTR, _ANY):
                return self._negative(NOERROR, self._reverse_origin(qname))
            cluster = [t for targets, from_ip in entries.values() if from_ip for t in targets]
            targets = cluster or [t for targets, _ in entries.values() for t in targets]
            return Answer(NOERROR, [_rrset(qname, _PTR, self.ttl, [PTR(IN, _PTR, t) for t in targets])], [], [])
        try:
            ip = ipaddress.ip_address(dns.reversename.to_address(qname))
        except Exception:  # a partial reverse name such as 10.in-addr.arpa: not a host address
            return None
        if any(ip in net for net in self.reverse_cidrs):
            return self._negative(NXDOMAIN, self._reverse_origin(qname))
        return None

    @staticmethod
    def _reverse_origin(qname: dns.name.Name) -> dns.name.Name:
        return _IN_ADDR if qname.is_subdomain(_IN_ADDR) else _IP6_ARPA
