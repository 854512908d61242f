"""A pod's /etc/resolv.conf and /etc/hosts, as the kubelet composes them (pure functions).

resolv.conf follows the pod's dnsPolicy (ClusterFirst, ClusterFirstWithHostNet, Default, None),
appends spec.dnsConfig, then enforces the kubelet's limits: 3 nameservers, 32 search domains
and 2048 characters of search list, no single domain over 253 characters. The lines come out in
the order containerd writes them (search, nameserver, options).
"""

from __future__ import annotations

import ipaddress

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_DOMAIN_LENGTH = 253
MAX_HOSTNAME_LENGTH = 63
CLUSTER_OPTIONS = ["ndots:5"]


class HostResolv:
    """The parts of a resolv.conf the kubelet reads: nameservers, the last search line, options."""

    def __init__(self, text: str):
        self.nameservers: list[str] = []
        self.searches: list[str] = []
        self.options: list[str] = []
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].split(";", 1)[0].strip()
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "nameserver" and len(fields) >= 2:
                try:
                    ipaddress.ip_address(fields[1])
                except ValueError:
                    continue
                self.nameservers.append(fields[1])
            elif fields[0] == "search":
                # Like libc, the last search line wins; a trailing dot is dropped so that the same
                # domain written both ways counts once against the limits.
                self.searches = [s.rstrip(".") for s in fields[1:] if s != "."]
            elif fields[0] == "options":
                self.options = _merge_options(self.options, fields[1:])


def nameservers(text: str) -> list[str]:
    """The `nameserver` addresses of a resolv.conf's text."""
    return [parts[1] for parts in (line.split() for line in text.splitlines())
            if len(parts) >= 2 and parts[0] == "nameserver"]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], extra: list[str]) -> list[str]:
    merged: dict[str, str | None] = {}
    for opt in existing + extra:
        name, sep, value = opt.partition(":")
        merged[name] = value if sep else None
    return [name if value is None else f"{name}:{value}" for name, value in merged.items()]


def dns_policy_kind(pod: dict) -> str:
    """'cluster', 'host' or 'none': what the pod's dnsPolicy amounts to on this pod."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst" and not spec.get("hostNetwork"):
        return "cluster"
    return "host"  # Default, and ClusterFirst on a hostNetwork pod


def fit_search_limits(searches: list[str]) -> list[str]:
    """Trim a search list to the kubelet's limits (it raises a DNSConfigForming event then)."""
    searches = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_DOMAIN_LENGTH]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return searches


def resolv_config(pod: dict, cluster_dns_ip: str | list[str], cluster_domain: str,
                  host_resolv: str | None) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) for the pod. host_resolv is the node's resolv.conf text;
    None means the kubelet has no resolv.conf configured (`resolvConf: ""`)."""
    cluster_ips = [cluster_dns_ip] if isinstance(cluster_dns_ip, str) else list(cluster_dns_ip)
    cluster_ips = [ip for ip in cluster_ips if ip]
    host = HostResolv(host_resolv or "")
    kind = dns_policy_kind(pod)
    if kind == "cluster" and not cluster_ips:
        kind = "host"  # the kubelet falls back to Default (event MissingClusterDNS)
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    if kind == "none":
        servers, searches, options = [], [], []
    elif kind == "cluster":
        servers = cluster_ips
        domain = cluster_domain.strip(".")
        cluster_search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain] if domain else []
        searches = _unique(cluster_search + host.searches)
        options = list(CLUSTER_OPTIONS)
    elif host_resolv is None:
        servers, searches, options = ["127.0.0.1"], ["."], []
    else:
        servers, searches, options = list(host.nameservers), list(host.searches), list(host.options)

    extra = (pod.get("spec") or {}).get("dnsConfig") or {}
    if extra:
        servers = _unique(servers + list(extra.get("nameservers") or []))
        searches = _unique(searches + list(extra.get("searches") or []))
        options = _merge_options(options, [o["name"] if o.get("value") is None else f"{o['name']}:{o['value']}"
                                           for o in extra.get("options") or [] if o.get("name")])
    return servers[:MAX_NAMESERVERS], fit_search_limits(searches), options


def resolv_conf(pod: dict, cluster_dns_ip: str | list[str], cluster_domain: str, host_resolv: str | None) -> str:
    """The /etc/resolv.conf text for the pod (see resolv_config for the arguments)."""
    servers, searches, options = resolv_config(pod, cluster_dns_ip, cluster_domain, host_resolv)
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def pod_hostname(pod: dict, cluster_domain: str = "cluster.local") -> tuple[str, str]:
    """(hostname, domain) as the kubelet sets them: spec.hostname or the pod name (cut to 63
    characters), and `<subdomain>.<ns>.svc.<domain>` when spec.subdomain is set, else ''."""
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    hostname = spec.get("hostname") or md.get("name", "")
    if len(hostname) > MAX_HOSTNAME_LENGTH:
        hostname = hostname[:MAX_HOSTNAME_LENGTH].rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{md.get('namespace') or 'default'}.svc.{cluster_domain.strip('.')}"
    return hostname, domain


def kernel_hostname(pod: dict, cluster_domain: str = "cluster.local") -> str:
    """The hostname the pod's containers see: its hostname, or with `setHostnameAsFQDN` and a
    subdomain its fully qualified name. ValueError, in the kubelet's words, when that is longer than
    the kernel allows (64)."""
    hostname, domain = pod_hostname(pod, cluster_domain)
    if not (pod.get("spec") or {}).get("setHostnameAsFQDN") or not domain:
        return hostname
    fqdn = f"{hostname}.{domain}"
    if len(fqdn) > MAX_KERNEL_HOSTNAME:
        raise ValueError(f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
                         f"({MAX_KERNEL_HOSTNAME} characters is the max, {len(fqdn)} characters requested)")
    return fqdn


MAX_KERNEL_HOSTNAME = 64

_LOCAL_LINES = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def _host_aliases(pod: dict) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) for a in aliases]
    return "\n".join(lines) + "\n"


def hosts_file(pod: dict, ip: str | list[str], cluster_domain: str = "cluster.local",
               host_hosts: str | None = None) -> str:
    """The kubelet-managed /etc/hosts. ip is the pod IP (or all of status.podIPs). A hostNetwork
    pod gets the node's file (host_hosts) instead of the pod entries, plus its hostAliases."""
    if (pod.get("spec") or {}).get("hostNetwork") and host_hosts is not None:
        return "# Kubernetes-managed hosts file (host network).\n" + host_hosts + _host_aliases(pod)
    ips = [ip] if isinstance(ip, str) else list(ip)
    hostname, domain = pod_hostname(pod, cluster_domain)
    out = ["# Kubernetes-managed hosts file.\n", _LOCAL_LINES]
    for addr in ips:
        out.append(f"{addr}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{addr}\t{hostname}\n")
    out.append(_host_aliases(pod))
    return "".join(out)
