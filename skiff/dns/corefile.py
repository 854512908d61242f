"""The Corefile of kube-system/coredns, read into what the cluster DNS server does (pure).

kubeadm and kind install CoreDNS with a ConfigMap holding its Corefile, and the Kubernetes docs
("Customizing DNS Service", "Debugging DNS Resolution") change it: a stub domain in a server
block of its own, a different upstream, `hosts` entries, `log` to see the queries. Skiff's server
reads the same file and does what these plugins do:

- kubernetes: the cluster's names (its zone is the cluster domain; `ttl` and `pods` are honoured);
- forward FROM TO...: names under FROM to the TO resolvers (`IP[:PORT]`, or a resolv.conf path);
- hosts [FILE] { IP NAME...; ttl; fallthrough }: fixed names;
- log: one line per query, in CoreDNS's format;
- errors, health, ready, prometheus, cache, loop, reload, loadbalance: accepted; they need nothing
  here (health and readiness are always served, there are no metrics, and nothing is cached).

Anything else is refused in CoreDNS's words, with the line, so a typo fails as it does on a
cluster (a running server keeps its previous Corefile then, as CoreDNS's reload does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.name

from skiff.dns.resolvconf import nameservers

ACCEPTED = {"errors", "health", "ready", "prometheus", "cache", "loop", "reload", "loadbalance"}
_KUBERNETES_IGNORED = {"endpoint", "tls", "kubeconfig", "namespaces", "labels", "namespace_labels",
                       "endpoint_pod_names", "ignore", "noendpoints", "multicluster", "startup_timeout",
                       "apiserver"}


class CorefileError(ValueError):
    """A Corefile Skiff cannot serve; the message is CoreDNS's when it has one."""


@dataclass(frozen=True)
class Forward:
    zone: dns.name.Name
    upstreams: tuple[str, ...]
    max_concurrent: int | None = None


@dataclass(frozen=True)
class Hosts:
    entries: dict[dns.name.Name, tuple[str, ...]]
    ttl: int = 3600
    fallthrough: bool = False

    def lookup(self, name: dns.name.Name) -> tuple[str, ...] | None:
        return self.entries.get(name)


@dataclass(frozen=True)
class Kubernetes:
    zones: tuple[dns.name.Name, ...]
    ttl: int = 5
    pods: str = "disabled"


@dataclass(frozen=True)
class ServerBlock:
    zones: tuple[dns.name.Name, ...]
    kubernetes: Kubernetes | None = None
    forward: Forward | None = None
    hosts: Hosts | None = None
    log: bool = False


@dataclass(frozen=True)
class Corefile:
    blocks: tuple[ServerBlock, ...] = field(default_factory=tuple)

    def block_for(self, name: dns.name.Name) -> ServerBlock | None:
        """The server block that serves `name`: the one with the most specific zone holding it."""
        best: tuple[int, ServerBlock] | None = None
        for block in self.blocks:
            for zone in block.zones:
                if name.is_subdomain(zone) and (best is None or len(zone) > best[0]):
                    best = (len(zone), block)
        return best[1] if best else None


@dataclass
class _Directive:
    line: int
    name: str
    args: list[str]
    body: list[_Directive] = field(default_factory=list)


def _tokens(text: str) -> list[tuple[int, list[str]]]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].replace("{", " { ").replace("}", " } ")
        words = line.split()
        if words:
            lines.append((number, words))
    return lines


def _parse_blocks(text: str, source: str) -> list[_Directive]:
    """Server blocks as directives named by their keys, each holding its plugins."""
    stack: list[_Directive] = [_Directive(0, "", [])]
    for number, words in _tokens(text):
        while words:
            if words[0] == "}":
                if len(stack) == 1:
                    raise CorefileError(f"{source}:{number} - Error during parsing: Unexpected '}}' because no "
                                        "matching opening brace")
                stack.pop()
                words = words[1:]
                continue
            opens = "{" in words
            head = words[:words.index("{")] if opens else words
            rest = words[words.index("{") + 1:] if opens else []
            directive = _Directive(number, head[0] if head else "", head[1:] if head else [])
            if len(stack) == 1 and not opens:
                raise CorefileError(f"{source}:{number} - Error during parsing: Wrong argument count or unexpected "
                                    f"line ending after '{words[-1]}'")
            stack[-1].body.append(directive)
            if opens:
                stack.append(directive)
            words = rest
    if len(stack) != 1:
        raise CorefileError(f"{source}:{stack[-1].line} - Error during parsing: Unexpected EOF")
    return stack[0].body


def _zone(key: str, source: str, line: int) -> dns.name.Name:
    key = key.removeprefix("dns://")
    host, _, port = key.rpartition(":") if ":" in key and key.rsplit(":", 1)[1].isdigit() else (key, "", "")
    if port and port != "53":
        raise CorefileError(f"{source}:{line} - Skiff's cluster DNS serves port 53 only, not {port}")
    try:
        return dns.name.from_text(host or ".")
    except dns.exception.DNSException as e:
        raise CorefileError(f"{source}:{line} - Error during parsing: invalid zone {key!r}: {e}") from None


def _int(value: str, what: str, source: str, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise CorefileError(f"{source}:{line} - Error during parsing: {what}: {value!r} is not a number") from None


def _upstreams(targets: list[str], source: str, line: int) -> tuple[str, ...]:
    out: list[str] = []
    for t in targets:
        t = t.removeprefix("dns://")
        if t.startswith("/"):  # a resolv.conf, as `forward . /etc/resolv.conf`
            try:
                with open(t) as f:
                    out += nameservers(f.read())
            except OSError as e:
                raise CorefileError(f"{source}:{line} - Error during parsing: {t}: {e.strerror}") from None
            continue
        host = t.rsplit(":", 1)[0] if t.count(":") == 1 else t.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise CorefileError(f"{source}:{line} - Error during parsing: not an IP address or file: {t!r}") from None
        out.append(t)
    if not out:
        raise CorefileError(f"{source}:{line} - Error during parsing: forward: no upstreams")
    return tuple(out)


def _forward(d: _Directive, source: str) -> Forward:
    if len(d.args) < 2:
        raise CorefileError(f"{source}:{d.line} - Error during parsing: Wrong argument count or unexpected line "
                            "ending after 'forward'")
    max_concurrent = None
    for option in d.body:
        if option.name == "max_concurrent" and option.args:
            max_concurrent = _int(option.args[0], "max_concurrent", source, option.line)
    return Forward(_zone(d.args[0], source, d.line), _upstreams(d.args[1:], source, d.line), max_concurrent)


def _hosts(d: _Directive, source: str) -> Hosts:
    entries: dict[dns.name.Name, list[str]] = {}
    ttl, fallthrough = 3600, False
    lines: list[tuple[int, list[str]]] = []
    if d.args and d.args[0].startswith("/"):
        try:
            with open(d.args[0]) as f:
                lines += [(d.line, words) for _, words in _tokens(f.read())]
        except OSError:
            pass  # CoreDNS's hosts plugin also starts without its file and reads it once it exists
    for option in d.body:
        if option.name == "ttl":
            ttl = _int(option.args[0] if option.args else "", "ttl", source, option.line)
        elif option.name == "fallthrough":
            fallthrough = True
        elif option.name in ("reload", "no_reverse"):
            continue
        else:
            lines.append((option.line, [option.name, *option.args]))
    for line, words in lines:
        try:
            ipaddress.ip_address(words[0])
        except ValueError:
            raise CorefileError(f"{source}:{line} - Error during parsing: hosts: {words[0]!r} is not an IP "
                                "address") from None
        for host in words[1:]:
            entries.setdefault(dns.name.from_text(host), []).append(words[0])
    return Hosts({k: tuple(v) for k, v in entries.items()}, ttl, fallthrough)


def _kubernetes(d: _Directive, zones: tuple[dns.name.Name, ...], source: str) -> Kubernetes:
    ttl, pods = 5, "disabled"
    for option in d.body:
        if option.name == "ttl":
            ttl = _int(option.args[0] if option.args else "", "ttl", source, option.line)
        elif option.name == "pods":
            if not option.args or option.args[0] not in ("disabled", "insecure", "verified"):
                raise CorefileError(f"{source}:{option.line} - Error during parsing: pods: invalid value "
                                    f"{' '.join(option.args)!r}")
            pods = option.args[0]
        elif option.name in _KUBERNETES_IGNORED or option.name == "fallthrough":
            continue
        else:
            raise CorefileError(f"{source}:{option.line} - Error during parsing: unknown property "
                                f"'{option.name}'")
    own = tuple(_zone(z, source, d.line) for z in d.args) or zones
    return Kubernetes(own, ttl, pods)


def parse(text: str, source: str = "Corefile") -> Corefile:
    """The Corefile's server blocks; raises CorefileError."""
    blocks = []
    for server in _parse_blocks(text, source):
        zones = tuple(_zone(k, source, server.line) for k in [server.name, *server.args])
        kubernetes = forward = hosts = None
        log = False
        for plugin in server.body:
            if plugin.name == "kubernetes":
                kubernetes = _kubernetes(plugin, zones, source)
            elif plugin.name == "forward":
                forward = _forward(plugin, source)
            elif plugin.name == "hosts":
                hosts = _hosts(plugin, source)
            elif plugin.name == "log":
                log = True
            elif plugin.name not in ACCEPTED:
                raise CorefileError(f"{source}:{plugin.line} - Error during parsing: Unknown directive "
                                    f"'{plugin.name}'")
        blocks.append(ServerBlock(zones, kubernetes, forward, hosts, log))
    if not blocks:
        raise CorefileError(f"{source}: no server blocks")
    return Corefile(tuple(blocks))
