"""Ingress objects -> a route table: the pure core of the Ingress controller.

Inputs are plain Kubernetes JSON objects (Ingresses, IngressClasses, Services, EndpointSlices,
Secrets); the output is a `RouteTable` the proxy consults once per request. Nothing here does I/O,
so every matching rule of networking.k8s.io/v1 is unit-tested without a cluster.

Matching, as the Ingress API defines it:
- The Host header (port stripped, case-insensitive) picks one set of rules: an exact host first,
  then a single-label wildcard (`*.foo.com` matches `bar.foo.com` only), then the hostless rules.
  Like ingress-nginx's one-server-per-host, a host that matched never falls through to another
  host's rules: unmatched paths go to the default backend, else 404.
- Within a host, the longest matching path wins and Exact beats Prefix on a tie. Prefix matches
  whole path elements (`/foo` matches `/foo/bar`, not `/foobar`), and a trailing slash on the rule
  is ignored. ImplementationSpecific is treated as Prefix.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Endpoint = tuple[str, int]


@dataclass(eq=False)
class Backend:
    """One Service port of one Ingress backend, resolved to its ready endpoints."""

    namespace: str
    service: str
    port: str  # the number or name as written in the Ingress, for logs
    endpoints: tuple[Endpoint, ...] = ()
    _next: int = field(default=0, repr=False)

    @property
    def name(self) -> str:
        """The upstream name ingress-nginx logs: namespace-service-port."""
        return f"{self.namespace}-{self.service}-{self.port}"

    def pick(self) -> Endpoint | None:
        """Round-robin over the endpoints, so every pod gets its share even over pooled connections."""
        eps = self.endpoints
        if not eps:
            return None
        i = self._next
        self._next = i + 1 if i + 1 < len(eps) else 0
        return eps[i % len(eps)]


@dataclass(frozen=True, eq=False)
class NoMatch:
    """What the proxy answers when there is nowhere to send the request."""

    status: int  # 404: no rule and no default backend; 503: the backend has no ready endpoints
    reason: str


@dataclass(eq=False)
class Route:
    ingress: str  # namespace/name
    host: str  # the rule's host ("" for hostless rules and the default backend)
    path: str  # the rule's path as written ("" for the default backend)
    path_type: str  # Exact, Prefix, ImplementationSpecific, or "" for the default backend
    backend: Backend
    unavailable: NoMatch = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.unavailable = NoMatch(503, f"no ready endpoints for service {self.backend.namespace}/"
                                        f"{self.backend.service}")


NOT_FOUND = NoMatch(404, "no Ingress rule matches and there is no default backend")


@dataclass
class HostRules:
    exact: dict[str, Route] = field(default_factory=dict)
    prefix: dict[str, Route] = field(default_factory=dict)  # keyed by the normalised rule path

    def match(self, path: str) -> Route | None:
        # An Exact match is as long as the request path, and a Prefix rule can be no longer than
        # that once normalised, so an Exact hit always wins (ties go to Exact too).
        r = self.exact.get(path)
        if r is not None:
            return r
        prefix = self.prefix
        if not prefix:
            return None
        p = path[:-1] if len(path) > 1 and path[-1] == "/" else path
        while True:
            r = prefix.get(p)
            if r is not None:
                return r
            if p == "/":
                return None
            i = p.rfind("/")
            p = p[:i] if i > 0 else "/"


@dataclass(frozen=True)
class TLSCert:
    cert_pem: bytes
    key_pem: bytes
    secret: str  # namespace/name, for logs and for caching SSL contexts by identity


@dataclass
class RouteTable:
    hosts: dict[str, HostRules] = field(default_factory=dict)
    wildcards: dict[str, HostRules] = field(default_factory=dict)  # "*.foo.com" stored as "foo.com"
    hostless: HostRules | None = None
    default: Route | None = None
    tls: dict[str, TLSCert] = field(default_factory=dict)  # exact hosts, and "*.foo.com" verbatim
    tls_default: TLSCert | None = None  # from a spec.tls entry without hosts
    served: frozenset[str] = frozenset()  # namespace/name of every Ingress we serve
    generation: int = 0

    def lookup(self, host: str, path: str) -> Route | NoMatch:
        """Route a request by its Host header (may carry a port) and path (no query string)."""
        rules = None
        if host:
            h = normalize_host(host)
            rules = self.hosts.get(h)
            if rules is None and self.wildcards:
                dot = h.find(".")
                if dot > 0:
                    rules = self.wildcards.get(h[dot + 1:])
        if rules is None:
            rules = self.hostless
        route = rules.match(path) if rules is not None else None
        if route is None:
            route = self.default
            if route is None:
                return NOT_FOUND
        if not route.backend.endpoints:
            return route.unavailable
        return route

    def certificate_for(self, server_name: str | None) -> TLSCert | None:
        """The certificate for an SNI name: exact host, then a wildcard entry, then the default."""
        if server_name:
            name = server_name.lower().rstrip(".")
            cert = self.tls.get(name)
            if cert is not None:
                return cert
            dot = name.find(".")
            if dot > 0:
                cert = self.tls.get("*" + name[dot:])
                if cert is not None:
                    return cert
        return self.tls_default

    def backends(self) -> list[Backend]:
        seen: dict[int, Backend] = {}
        for rules in [*self.hosts.values(), *self.wildcards.values(),
                      *([self.hostless] if self.hostless else [])]:
            for r in [*rules.exact.values(), *rules.prefix.values()]:
                seen[id(r.backend)] = r.backend
        if self.default:
            seen[id(self.default.backend)] = self.default.backend
        return list(seen.values())


def normalize_host(host: str) -> str:
    """Host header -> the name rules are written with: no port, lower case, no trailing dot."""
    if host[0] == "[":  # IPv6 literal; never matches a rule host, but must not be cut at a colon
        end = host.find("]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.find(":")
    if colon >= 0:
        host = host[:colon]
    if host and host[-1] == ".":
        host = host[:-1]
    return host.lower()


def normalize_prefix(path: str) -> str:
    """`/aaa/bbb/` and `/aaa/bbb` are the same Prefix rule; `/` stays `/`."""
    p = path.rstrip("/")
    return p or "/"


# ---- which Ingresses are ours ------------------------------------------------------------------

def _is_true(v: object) -> bool:
    return isinstance(v, str) and v.lower() == "true"


def our_class_names(ingress_classes: Iterable[dict], class_name: str, controller: str
                    ) -> tuple[set[str], bool]:
    """Names of the IngressClasses that point at our controller, and whether one is the default.

    `class_name` counts as ours even before its IngressClass object is seen, unless an object of
    that name names another controller."""
    names = {class_name}
    default = False
    for ic in ingress_classes:
        md = ic.get("metadata") or {}
        name = md.get("name", "")
        ctl = (ic.get("spec") or {}).get("controller", "")
        if ctl == controller:
            names.add(name)
            if _is_true((md.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)):
                default = True
        elif name == class_name:
            names.discard(name)
    return names, default


def is_ours(ingress: dict, classes: set[str], default_is_ours: bool) -> bool:
    md = ingress.get("metadata") or {}
    legacy = (md.get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:  # the older API doc gives the annotation precedence over the field
        return legacy in classes
    cls = (ingress.get("spec") or {}).get("ingressClassName")
    if cls:
        return cls in classes
    return default_is_ours


def owned_ingresses(ingresses: Iterable[dict], ingress_classes: Iterable[dict], class_name: str = "skiff",
                    controller: str = "skiff.dev/ingress-controller") -> list[dict]:
    """Our Ingresses, oldest first (the order that settles conflicts, as ingress-nginx does)."""
    classes, default = our_class_names(ingress_classes, class_name, controller)
    mine = [i for i in ingresses if not (i.get("metadata") or {}).get("deletionTimestamp")
            and is_ours(i, classes, default)]
    mine.sort(key=lambda i: (i["metadata"].get("creationTimestamp") or "", i["metadata"].get("namespace", ""),
                             i["metadata"].get("name", "")))
    return mine


# ---- backends ----------------------------------------------------------------------------------

def _key(obj: dict) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


class _Resolver:
    """Service backend -> endpoints, with the lookups indexed once per table build."""

    def __init__(self, services: Iterable[dict], slices: Iterable[dict]):
        self.services = {_key(s): s for s in services}
        self.slices: dict[str, list[dict]] = {}
        for sl in slices:
            md = sl.get("metadata") or {}
            svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if svc and sl.get("addressType", "IPv4") in ("IPv4", "IPv6"):
                self.slices.setdefault(f"{md.get('namespace', '')}/{svc}", []).append(sl)
        self.cache: dict[tuple[str, str, str], Backend] = {}

    def backend(self, namespace: str, spec: dict | None) -> Backend:
        svc_ref = (spec or {}).get("service")
        if not svc_ref:  # a `resource` backend: no controller-independent meaning, so unavailable
            res = (spec or {}).get("resource") or {}
            return Backend(namespace, f"{res.get('kind', 'resource')}/{res.get('name', '')}", "")
        name = svc_ref.get("name", "")
        port_ref = svc_ref.get("port") or {}
        port_key = str(port_ref["number"]) if port_ref.get("number") is not None else port_ref.get("name", "")
        ck = (namespace, name, port_key)
        b = self.cache.get(ck)
        if b is None:
            b = Backend(namespace, name, port_key, self._endpoints(namespace, name, port_ref))
            self.cache[ck] = b
        return b

    def _endpoints(self, namespace: str, name: str, port_ref: dict) -> tuple[Endpoint, ...]:
        svc = self.services.get(f"{namespace}/{name}")
        if svc is None:
            return ()
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return ()
        svc_port = None
        for p in spec.get("ports") or []:
            if p.get("protocol", "TCP") != "TCP":
                continue
            if port_ref.get("number") is not None and p.get("port") == port_ref["number"]:
                svc_port = p
                break
            if port_ref.get("name") and p.get("name") == port_ref["name"]:
                svc_port = p
                break
        if svc_port is None:
            return ()
        # EndpointSlice ports carry the Service port's name ("" when unnamed) and the resolved
        # target port, which differs per pod when targetPort is a named container port.
        port_name = svc_port.get("name") or ""
        ready: list[Endpoint] = []
        terminating: list[Endpoint] = []
        for sl in self.slices.get(f"{namespace}/{name}", ()):
            number = None
            for sp in sl.get("ports") or []:
                if (sp.get("name") or "") == port_name and sp.get("protocol", "TCP") == "TCP":
                    number = sp.get("port")
                    break
            if number is None:
                continue
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                is_ready = cond.get("ready") is not False  # nil means ready, per the API docs
                serving = cond.get("serving")
                serving = is_ready if serving is None else serving
                target = ready if is_ready else terminating if (serving and cond.get("terminating")) else None
                if target is None:
                    continue
                for addr in ep.get("addresses") or []:
                    target.append((addr, int(number)))
        # As kube-proxy does: serving-but-terminating endpoints only when nothing is ready.
        chosen = ready or terminating
        return tuple(dict.fromkeys(chosen))


# ---- the table ---------------------------------------------------------------------------------

def _secret_pem(secret: dict, key: str) -> bytes | None:
    raw = (secret.get("data") or {}).get(key)
    if raw:
        try:
            return base64.b64decode(raw)
        except ValueError:
            return None
    s = (secret.get("stringData") or {}).get(key)
    return s.encode() if s else None


def build_route_table(ingresses: Iterable[dict], services: Iterable[dict], slices: Iterable[dict],
                      secrets: Iterable[dict], ingress_classes: Iterable[dict], class_name: str = "skiff",
                      controller: str = "skiff.dev/ingress-controller") -> RouteTable:
    """Merge every Ingress we own into one table. Conflicts (same host, path and type, or two default
    backends, or two certificates for a host) go to the oldest Ingress."""
    mine = owned_ingresses(ingresses, ingress_classes, class_name, controller)
    resolver = _Resolver(services, slices)
    secrets_by_key = {_key(s): s for s in secrets}
    table = RouteTable(served=frozenset(_key(i) for i in mine))
    for ing in mine:
        md = ing["metadata"]
        ns = md.get("namespace", "")
        ikey = _key(ing)
        spec = ing.get("spec") or {}
        if spec.get("defaultBackend") and table.default is None:
            table.default = Route(ikey, "", "", "", resolver.backend(ns, spec["defaultBackend"]))
        for rule in spec.get("rules") or []:
            host = (rule.get("host") or "").lower()
            if not host:
                rules = table.hostless = table.hostless or HostRules()
            elif host.startswith("*."):
                rules = table.wildcards.setdefault(host[2:], HostRules())
            else:
                rules = table.hosts.setdefault(host, HostRules())
            for p in (rule.get("http") or {}).get("paths") or []:
                ptype = p.get("pathType") or "ImplementationSpecific"
                path = p.get("path") or "/"
                route = Route(ikey, host, path, ptype, resolver.backend(ns, p.get("backend")))
                if ptype == "Exact":
                    rules.exact.setdefault(path, route)
                else:
                    rules.prefix.setdefault(normalize_prefix(path), route)
        for t in spec.get("tls") or []:
            sname = t.get("secretName")
            if not sname:
                continue
            secret = secrets_by_key.get(f"{ns}/{sname}")
            if secret is None or secret.get("type", "kubernetes.io/tls") != "kubernetes.io/tls":
                continue
            cert, key = _secret_pem(secret, "tls.crt"), _secret_pem(secret, "tls.key")
            if not cert or not key:
                continue
            tc = TLSCert(cert, key, f"{ns}/{sname}")
            hosts = t.get("hosts") or []
            if not hosts and table.tls_default is None:
                table.tls_default = tc
            for h in hosts:
                table.tls.setdefault(h.lower(), tc)
    return table
