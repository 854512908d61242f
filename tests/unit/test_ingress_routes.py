"""The Ingress route table as pure lookups: every rule of the API docs and the conformance cases."""

from __future__ import annotations

import base64
import pickle

import pytest

from skiff.ingress.routes import NOT_FOUND, NoMatch, Route, build_route_table, owned_ingresses

CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "skiff"}, "spec": {"controller": "skiff.dev/ingress-controller"}}
DEFAULT_CLASS = {**CLASS, "metadata": {"name": "skiff", "annotations": {
    "ingressclass.kubernetes.io/is-default-class": "true"}}}


def backend(svc: str, port: int | str = 8080) -> dict:
    return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, svc: str, ptype: str = "Prefix", port: int | str = 8080) -> dict:
    return {"path": p, "pathType": ptype, "backend": backend(svc, port)}


def ingress(name: str, rules: list[dict] | None = None, default: dict | None = None, ns: str = "ns",
            cls: str | None = "skiff", created: str = "2024-01-01T00:00:00Z", annotations: dict | None = None,
            tls: list[dict] | None = None) -> dict:
    spec: dict = {}
    if cls:
        spec["ingressClassName"] = cls
    if rules is not None:
        spec["rules"] = rules
    if default:
        spec["defaultBackend"] = default
    if tls:
        spec["tls"] = tls
    md: dict = {"name": name, "namespace": ns, "creationTimestamp": created}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": md, "spec": spec}


def rule(host: str | None, *paths: dict) -> dict:
    r: dict = {"http": {"paths": list(paths)}}
    if host:
        r["host"] = host
    return r


def service(name: str, ports: list[dict] | None = None, ns: str = "ns") -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"ports": ports or [{"port": 8080, "targetPort": 3000, "protocol": "TCP"}]}}


def eps(svc: str, ips: list[str], port: int = 3000, port_name: str = "", ns: str = "ns",
        ready: bool | None = True, serving: bool | None = None, terminating: bool | None = None) -> dict:
    cond: dict = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"metadata": {"name": f"{svc}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": cond} for ip in ips]}


def table_for(ingresses: list[dict], svcs: list[str], classes: list[dict] | None = None, secrets=()):
    services = [service(s) for s in svcs]
    slices = [eps(s, [f"10.0.{i}.1"]) for i, s in enumerate(svcs)]
    return build_route_table(ingresses, services, slices, list(secrets), classes if classes is not None
                             else [CLASS])


def served_by(table, host: str, p: str) -> str | int:
    r = table.lookup(host, p)
    if isinstance(r, NoMatch):
        return r.status
    return r.backend.service


# ---- path types: the table in the Kubernetes docs ---------------------------------------------

DOC_EXAMPLES = [
    # (rules [(path, type)], request path, expected matching rule path or None)
    ([("/", "Prefix")], "/anything/at/all", "/"),
    ([("/foo", "Exact")], "/foo", "/foo"),
    ([("/foo", "Exact")], "/bar", None),
    ([("/foo", "Exact")], "/foo/", None),
    ([("/foo/", "Exact")], "/foo", None),
    ([("/foo", "Prefix")], "/foo", "/foo"),
    ([("/foo", "Prefix")], "/foo/", "/foo"),
    ([("/foo/", "Prefix")], "/foo", "/foo/"),
    ([("/foo/", "Prefix")], "/foo/", "/foo/"),
    ([("/aaa/bb", "Prefix")], "/aaa/bbb", None),
    ([("/aaa/bbb", "Prefix")], "/aaa/bbb", "/aaa/bbb"),
    ([("/aaa/bbb/", "Prefix")], "/aaa/bbb", "/aaa/bbb/"),
    ([("/aaa/bbb", "Prefix")], "/aaa/bbb/", "/aaa/bbb"),
    ([("/aaa/bbb", "Prefix")], "/aaa/bbb/ccc", "/aaa/bbb"),
    ([("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", None),
    ([("/", "Prefix"), ("/aaa", "Prefix")], "/aaa/ccc", "/aaa"),
    ([("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")], "/aaa/bbb", "/aaa/bbb"),
    ([("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")], "/ccc", "/"),
    ([("/aaa", "Prefix")], "/ccc", None),
    ([("/foo", "Prefix"), ("/foo", "Exact")], "/foo", "/foo:Exact"),
    ([("/foo", "Exact"), ("/foo", "Prefix")], "/foo", "/foo:Exact"),
    ([("/foo", "ImplementationSpecific")], "/foo/bar", "/foo"),
    ([("/foo", "ImplementationSpecific")], "/foobar", None),
    ([("/foo", "Prefix")], "/FOO", None),
    ([("/foo/bar", "Exact"), ("/foo", "Prefix")], "/foo/bar", "/foo/bar:Exact"),
    ([("/foo/bar", "Exact"), ("/foo", "Prefix")], "/foo/bar/", "/foo"),
    ([("/foo", "Exact"), ("/foo/bar", "Prefix")], "/foo/bar/x", "/foo/bar"),
]


@pytest.mark.parametrize("rules,request_path,expected", DOC_EXAMPLES)
def test_path_matching_examples(rules, request_path, expected):
    paths = [{**path(p, "svc"), "pathType": t} for p, t in rules]
    table = table_for([ingress("i", [rule("h", *paths)])], ["svc"])
    r = table.lookup("h", request_path)
    if expected is None:
        assert r is NOT_FOUND
    else:
        assert isinstance(r, Route)
        want_path, _, want_type = expected.partition(":")
        assert r.path == want_path
        if want_type:
            assert r.path_type == want_type


# ---- hosts ----------------------------------------------------------------------------------

def test_wildcard_covers_exactly_one_label_and_exact_beats_wildcard():
    table = table_for([ingress("i", [rule("*.foo.com", path("/", "wild")),
                                     rule("bar.foo.com", path("/", "exact")),
                                     rule(None, path("/", "hostless"))])], ["wild", "exact", "hostless"])
    assert served_by(table, "bar.foo.com", "/") == "exact"
    assert served_by(table, "baz.foo.com", "/") == "wild"
    assert served_by(table, "baz.bar.foo.com", "/") == "hostless"
    assert served_by(table, "foo.com", "/") == "hostless"
    assert served_by(table, "", "/") == "hostless"


def test_host_header_port_case_and_trailing_dot_are_ignored():
    table = table_for([ingress("i", [rule("foo.bar.com", path("/", "a"))])], ["a"])
    for h in ("foo.bar.com", "foo.bar.com:80", "FOO.Bar.com:8443", "foo.bar.com."):
        assert served_by(table, h, "/") == "a", h
    assert served_by(table, "[::1]:80", "/") == 404
    assert served_by(table, "other", "/") == 404


def test_matched_host_does_not_fall_through_to_hostless_rules_but_to_default_backend():
    rules = [rule("a.com", path("/api", "api")), rule(None, path("/", "catchall"))]
    assert served_by(table_for([ingress("i", rules)], ["api", "catchall"]), "a.com", "/web") == 404
    t2 = table_for([ingress("i", rules, default=backend("dflt"))], ["api", "catchall", "dflt"])
    assert served_by(t2, "a.com", "/web") == "dflt"
    assert served_by(t2, "b.com", "/web") == "catchall"


def test_rules_merge_across_ingresses_and_oldest_wins_conflicts():
    old = ingress("old", [rule("h", path("/a", "a"), path("/same", "old"))], created="2024-01-01T00:00:00Z")
    new = ingress("new", [rule("h", path("/b", "b"), path("/same", "new"))], created="2024-02-01T00:00:00Z")
    for order in ([old, new], [new, old]):
        t = table_for(order, ["a", "b", "old", "new"])
        assert served_by(t, "h", "/a") == "a"
        assert served_by(t, "h", "/b/x") == "b"
        assert served_by(t, "h", "/same") == "old"
        assert t.served == {"ns/old", "ns/new"}


def test_default_backend_is_the_oldest_ingress_s():
    a = ingress("a", default=backend("first"), created="2024-01-01T00:00:00Z")
    b = ingress("b", default=backend("second"), created="2023-01-01T00:00:00Z")
    assert served_by(table_for([a, b], ["first", "second"]), "x", "/") == "second"


# ---- classes ----------------------------------------------------------------------------------

def test_ingress_classes():
    by_field = ingress("field", [rule("field", path("/", "s"))])
    by_annotation = ingress("anno", [rule("anno", path("/", "s"))], cls=None,
                            annotations={"kubernetes.io/ingress.class": "skiff"})
    other = ingress("other", [rule("other", path("/", "s"))], cls="nginx")
    other_anno = ingress("otheranno", [rule("otheranno", path("/", "s"))],
                         annotations={"kubernetes.io/ingress.class": "nginx"})
    classless = ingress("classless", [rule("classless", path("/", "s"))], cls=None)
    alias = ingress("alias", [rule("alias", path("/", "s"))], cls="skiff-alias")
    alias_class = {"metadata": {"name": "skiff-alias"}, "spec": {"controller": "skiff.dev/ingress-controller"}}
    objs = [by_field, by_annotation, other, other_anno, classless, alias]
    names = lambda classes: {i["metadata"]["name"] for i in owned_ingresses(objs, classes)}  # noqa: E731
    assert names([CLASS]) == {"field", "anno"}
    assert names([DEFAULT_CLASS]) == {"field", "anno", "classless"}
    assert names([CLASS, alias_class]) == {"field", "anno", "alias"}
    hijacked = {"metadata": {"name": "skiff"}, "spec": {"controller": "example.com/other"}}
    assert names([hijacked]) == set()
    t = table_for(objs, ["s"])
    assert served_by(t, "other", "/") == 404 and served_by(t, "field", "/") == "s"


def test_conformance_ingress_class_invalid_is_not_served():
    ing = ingress("ingress-class", [rule("ingress-class", path("/", "ingress-class-prefix"))],
                  cls="some-invalid-class-name")
    t = table_for([ing], ["ingress-class-prefix"], classes=[DEFAULT_CLASS])
    assert t.served == frozenset()
    assert served_by(t, "ingress-class", "/") == 404


def test_deleting_ingress_is_not_served():
    ing = ingress("gone", [rule("h", path("/", "s"))])
    ing["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert table_for([ing], ["s"]).served == frozenset()


# ---- backends and endpoints ---------------------------------------------------------------------

def test_port_by_name_resolves_through_service_to_slice_port():
    svc = service("web", [{"name": "metrics", "port": 9090, "targetPort": 9090},
                          {"name": "http", "port": 8080, "targetPort": "web"}])
    sl = {"metadata": {"name": "web-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
          "addressType": "IPv4",
          "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}, {"name": "http", "port": 3000}],
          "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": True}},
                        {"addresses": ["10.1.0.6"]}]}
    for port in ("http", 8080):
        ing = ingress("i", [rule("h", path("/", "web", port=port))])
        r = build_route_table([ing], [svc], [sl], [], [CLASS]).lookup("h", "/")
        assert isinstance(r, Route)
        assert r.backend.endpoints == (("10.1.0.5", 3000), ("10.1.0.6", 3000))
    ing = ingress("i", [rule("h", path("/", "web", port=1234))])
    r = build_route_table([ing], [svc], [sl], [], [CLASS]).lookup("h", "/")
    assert isinstance(r, NoMatch) and r.status == 503


def test_ready_endpoints_then_serving_terminating_fallback():
    svc = [service("s")]
    ing = [ingress("i", default=backend("s"))]
    mixed = [eps("s", ["10.0.0.1"]), eps("s", ["10.0.0.2"], ready=False, serving=True, terminating=True),
             eps("s", ["10.0.0.3"], ready=False)]
    r = build_route_table(ing, svc, mixed, [], [CLASS]).lookup("x", "/")
    assert r.backend.endpoints == (("10.0.0.1", 3000),)
    only_terminating = mixed[1:]
    r = build_route_table(ing, svc, only_terminating, [], [CLASS]).lookup("x", "/")
    assert r.backend.endpoints == (("10.0.0.2", 3000),)
    r = build_route_table(ing, svc, mixed[2:], [], [CLASS]).lookup("x", "/")
    assert isinstance(r, NoMatch) and r.status == 503


def test_missing_service_or_no_endpoints_is_503_and_no_rule_is_404():
    ing = ingress("i", [rule("h", path("/gone", "missing"), path("/empty", "empty"))])
    t = build_route_table([ing], [service("empty")], [], [], [CLASS])
    assert served_by(t, "h", "/gone") == 503
    assert served_by(t, "h", "/empty/x") == 503
    assert served_by(t, "h", "/nothing") == 404


def test_round_robin_visits_every_endpoint_and_table_pickles():
    ips = [f"10.0.0.{i}" for i in range(1, 11)]
    t = build_route_table([ingress("i", default=backend("s"))], [service("s")], [eps("s", ips)], [], [CLASS])
    t = pickle.loads(pickle.dumps(t))
    r = t.lookup("any", "/")
    seen = [r.backend.pick()[0] for _ in range(20)]
    assert seen[:10] == ips and seen[10:] == ips


# ---- TLS ----------------------------------------------------------------------------------------

def test_tls_certificates_by_host_from_tls_secrets_in_the_same_namespace():
    def secret(name, cert, ns="ns", typ="kubernetes.io/tls"):
        return {"metadata": {"name": name, "namespace": ns}, "type": typ,
                "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(b"KEY").decode()}}
    ing = ingress("i", [rule("a.com", path("/", "s"))], tls=[
        {"hosts": ["a.com"], "secretName": "a"}, {"hosts": ["*.w.com"], "secretName": "w"},
        {"hosts": ["b.com"], "secretName": "elsewhere"}, {"hosts": ["c.com"], "secretName": "opaque"},
        {"secretName": "dflt"}])
    secrets = [secret("a", b"A"), secret("w", b"W"), secret("elsewhere", b"X", ns="other"),
               secret("opaque", b"O", typ="Opaque"), secret("dflt", b"D")]
    t = table_for([ing], ["s"], secrets=secrets)
    assert t.certificate_for("a.com").cert_pem == b"A"
    assert t.certificate_for("A.com").key_pem == b"KEY"
    assert t.certificate_for("x.w.com").cert_pem == b"W"
    assert t.certificate_for("y.x.w.com").cert_pem == b"D"
    assert t.certificate_for("b.com").cert_pem == b"D"
    assert t.certificate_for("c.com").cert_pem == b"D"
    assert t.certificate_for(None).cert_pem == b"D"


# ---- the ingress-controller-conformance scenarios, as lookups ------------------------------------

def test_conformance_default_backend():
    t = table_for([ingress("default-backend", default=backend("echo-service"))], ["echo-service"])
    for host, p in [("my-host", "/"), ("my-host", "/sub-path"), ("some-host", "/"), ("", "/resource"),
                    ("10.0.0.1", "/resource")]:
        assert served_by(t, host, p) == "echo-service"


def test_conformance_host_rules():
    ing = ingress("host-rules", [rule("*.foo.com", path("/", "wildcard-foo-com")),
                                 rule("foo.bar.com", path("/", "foo-bar-com", port="http"))],
                  tls=[{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}])
    svcs = [service("wildcard-foo-com"), service("foo-bar-com", [{"name": "http", "port": 8080,
                                                                 "targetPort": 3000}])]
    slices = [eps("wildcard-foo-com", ["10.0.0.1"]), eps("foo-bar-com", ["10.0.0.2"], port_name="http")]
    t = build_route_table([ing], svcs, slices, [], [CLASS])
    assert served_by(t, "foo.bar.com", "/") == "foo-bar-com"
    assert served_by(t, "subdomain.bar.com", "/") == 404
    assert served_by(t, "bar.foo.com", "/") == "wildcard-foo-com"
    assert served_by(t, "baz.bar.foo.com", "/") == 404
    assert served_by(t, "foo.com", "/") == 404


def test_conformance_path_rules():
    ing = ingress("path-rules", [
        rule("exact-path-rules", path("/foo", "foo-exact", "Exact")),
        rule("prefix-path-rules", path("/foo", "foo-prefix"), path("/aaa/bbb", "aaa-slash-bbb-prefix"),
             path("/aaa", "aaa-prefix")),
        rule("mixed-path-rules", path("/foo", "foo-prefix"), path("/foo", "foo-exact", "Exact")),
        rule("trailing-slash-path-rules", path("/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
             path("/foo/", "foo-slash-exact", "Exact")),
    ])
    t = table_for([ing], ["foo-exact", "foo-prefix", "aaa-slash-bbb-prefix", "aaa-prefix",
                          "aaa-slash-bbb-slash-prefix", "foo-slash-exact"])
    cases = [
        ("exact-path-rules", "/foo", "foo-exact"), ("exact-path-rules", "/foo/", 404),
        ("exact-path-rules", "/FOO", 404), ("exact-path-rules", "/bar", 404),
        ("prefix-path-rules", "/foo", "foo-prefix"), ("prefix-path-rules", "/foo/", "foo-prefix"),
        ("prefix-path-rules", "/FOO", 404), ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),
        ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"),
        ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"), ("prefix-path-rules", "/aaaccc", 404),
        ("mixed-path-rules", "/foo", "foo-exact"),
        ("trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-slash-prefix"),
        ("trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
        ("trailing-slash-path-rules", "/foo", 404),
    ]
    for host, p, want in cases:
        assert served_by(t, host, p) == want, (host, p)


def test_conformance_load_balancing_ten_pods():
    ips = [f"10.0.1.{i}" for i in range(10)]
    t = build_route_table([ingress("load-balancing", default=backend("echo-service"))],
                          [service("echo-service")], [eps("echo-service", ips)], [], [CLASS])
    seen = set()
    for _ in range(100):
        r = t.lookup("load-balancing", "/")
        seen.add(r.backend.pick())
    assert len(seen) == 10


# ---- status and manifests -------------------------------------------------------------------------

def test_status_patches_publish_our_service_address_and_clear_dropped_ingresses():
    from skiff.ingress.status import published_addresses, status_patches
    lb = {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}}
    addrs = published_addresses(lb)
    assert addrs == [{"ip": "172.18.255.200"}]
    assert published_addresses(None) == [] and published_addresses({"status": {}}) == []

    def ing(name, ips=()):
        return {"metadata": {"name": name, "namespace": "ns"},
                "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
    ingresses = [ing("new"), ing("done", ["172.18.255.200"]), ing("dropped", ["172.18.255.200"]),
                 ing("foreign", ["10.1.1.1"]), ing("was-ours", ["10.9.9.9"]), ing("never")]
    patches = status_patches(ingresses, {"ns/new", "ns/done"}, addrs, previously_served={"ns/was-ours"})
    assert patches == [
        ("ns", "new", {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}}),
        ("ns", "dropped", {"status": {"loadBalancer": {"ingress": None}}}),
        ("ns", "was-ours", {"status": {"loadBalancer": {"ingress": None}}}),
    ]


def test_system_objects():
    from skiff.ingress.manifests import system_objects
    objs = {(o["kind"], o["metadata"]["name"]): o for o in system_objects(None)}
    ic = objs[("IngressClass", "skiff")]
    assert ic["spec"]["controller"] == "skiff.dev/ingress-controller"
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    dep = objs[("Deployment", "skiff-ingress")]
    assert dep["metadata"]["namespace"] == "skiff-system"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "skiff/ingress-controller"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 10254, "scheme": "HTTP"}
    svc = objs[("Service", "skiff-ingress")]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, 80), ("https", 443, 443)]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] \
        == dep["spec"]["template"]["metadata"]["labels"]
    assert ("Namespace", "skiff-system") in objs
