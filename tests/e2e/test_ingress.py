"""Ingress: the seed's routing and the public Ingress conformance scenarios (issue: Ingress).

Like the conformance harness, every scenario runs in a fresh namespace that is deleted afterwards,
so one scenario's default backend never answers for another. Backends are `traefik/whoami`, which
reports the pod's name, the request line and the headers it received.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import SEED, Cluster, curl, unique_name, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")



def backends(names: list[str], port_name: str | None = "http") -> str:
    docs = []
    for n in names:
        port = f"{{name: {port_name}, port: 8080, targetPort: 3000}}" if port_name else "{port: 8080, targetPort: 3000}"
        docs.append(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {n}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {n}}}}}
  template:
    metadata: {{labels: {{app: {n}}}}}
    spec:
      containers:
      - name: echo
        image: traefik/whoami
        args: ["--port", "3000"]
        ports: [{{containerPort: 3000}}]
        readinessProbe: {{httpGet: {{path: /health, port: 3000}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {n}}}
spec:
  type: NodePort
  selector: {{app: {n}}}
  ports: [{port}]
""")
    return "---".join(docs)


class Scenario:
    def __init__(self, cluster: Cluster):
        self.k = cluster.kubectl
        self.ns = unique_name("icc")

    def __enter__(self) -> Scenario:
        self.k("create", "namespace", self.ns)
        return self

    def __exit__(self, *exc) -> None:
        self.k("delete", "namespace", self.ns, "--timeout=60s", check=False)

    def apply(self, manifest: str) -> None:
        self.k("apply", "-n", self.ns, "-f", "-", input=manifest)

    def ready(self, deployments: list[str]) -> None:
        def ok() -> bool:
            items = json.loads(self.k("get", "deploy", "-n", self.ns, "-o", "json"))["items"]
            got = {d["metadata"]["name"]: d for d in items}
            return all(n in got and got[n]["status"].get("readyReplicas") == got[n]["spec"]["replicas"]
                       for n in deployments)
        wait_for(ok, 30, 0.1)

    def address(self, ingress: str) -> str:
        addr = wait_for(lambda: (json.loads(self.k("get", "ingress", ingress, "-n", self.ns, "-o", "json"))
                                 ["status"].get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip"), 15, 0.1)

        def accepting() -> bool:
            try:
                socket.create_connection((addr, 80), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, 15, 0.1)  # the controller's pod may still be starting
        return addr


def served_by(r: subprocess.CompletedProcess) -> str | None:
    m = re.search(r"^Hostname: (\S+)$", r.stdout, re.M)
    return m.group(1).rsplit("-", 2)[0] if m else None


def request(addr: str, host: str | None, path: str, method: str = "GET", https: bool = False) -> tuple[int, str, str]:
    scheme = "https" if https else "http"
    args = ["-o", "-", "-w", "\n%{http_code}", "-X", method, "-k"]
    if host and https:
        args += ["--resolve", f"{host}:443:{addr}"]
        url = f"https://{host}{path}"
    else:
        if host:
            args += ["-H", f"Host: {host}"]
        url = f"{scheme}://{addr}{path}"
    r = curl(url, *args)
    body, _, code = r.stdout.rpartition("\n")
    svc = served_by(subprocess.CompletedProcess([], 0, body, ""))
    return int(code or 0), svc or "", body


def test_seed_ingress_routes_by_host_and_path(cluster):
    with Scenario(cluster) as s:
        s.k("apply", "-n", s.ns, "-f", str(SEED))
        s.ready(["backend", "frontend", "my-app"])
        addr = s.address("demo")
        row = s.k("get", "ingress", "demo", "-n", s.ns).splitlines()[1].split()
        # NAME CLASS HOSTS ADDRESS PORTS AGE; the seed names no class, so the default one is filled in
        assert row[0] == "demo" and row[1] == "skiff" and row[3] == addr
        r = curl(f"http://{addr}/api/hostname", "-H", "Host: shop.example.test")
        assert r.stdout.startswith("NOW: "), r.stdout  # agnhost netexec's answer for a path it does not serve
        r = curl(f"http://{addr}/hostname", "-H", "Host: shop.example.test")
        assert r.stdout.strip() == "hello from the frontend"
        r = curl(f"http://{addr}/", "-H", "Host: anything.else")
        assert "Hostname: my-app-" in r.stdout


def test_default_backend(cluster):
    with Scenario(cluster) as s:
        s.apply(backends(["echo-service"], None) + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: default-backend}
spec:
  defaultBackend: {service: {name: echo-service, port: {number: 8080}}}
""")
        s.ready(["echo-service"])
        addr = s.address("default-backend")
        for method, host, path in [("GET", "my-host", "/"), ("GET", "my-host", "/sub-path"), ("POST", "some-host", "/"),
                                   ("PUT", None, "/resource"), ("DELETE", "some-host", "/resource"),
                                   ("PATCH", "my-host", "/resource")]:
            code, svc, body = request(addr, host, path, method)
            assert (code, svc) == (200, "echo-service"), (method, host, path, body)
            assert f"{method} {path} HTTP/1.1" in body
        r = curl(f"http://{addr}/", "-D", "-", "-o", "/dev/null", "-H", "Host: my-host")
        for header in ("Content-Length", "Content-Type", "Date", "Server"):
            assert re.search(rf"^{header}:", r.stdout, re.M | re.I), r.stdout


def _tls_secret(host: str, directory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, k = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    open(crt, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(k, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return crt, k


def _served_san(addr: str, sni: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, 443), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)[0]


def test_host_rules_with_tls(cluster, tmp_path):
    with Scenario(cluster) as s:
        crt, key = _tls_secret("foo.bar.com", tmp_path)
        s.k("create", "secret", "tls", "conformance-tls", f"--cert={crt}", f"--key={key}", "-n", s.ns)
        s.apply(backends(["wildcard-foo-com", "foo-bar-com"]) + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: host-rules}
spec:
  tls: [{hosts: [foo.bar.com], secretName: conformance-tls}]
  rules:
  - host: "*.foo.com"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: wildcard-foo-com, port: {number: 8080}}}}]}
  - host: foo.bar.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: foo-bar-com, port: {name: http}}}}]}
""")
        s.ready(["wildcard-foo-com", "foo-bar-com"])
        addr = s.address("host-rules")
        wait_for(lambda: _served_san(addr, "foo.bar.com") == "foo.bar.com", 10, 0.2)
        code, svc, body = request(addr, "foo.bar.com", "/", https=True)
        assert (code, svc) == (200, "foo-bar-com") and "Host: foo.bar.com" in body
        code, svc, body = request(addr, "foo.bar.com", "/")
        assert (code, svc) == (200, "foo-bar-com")
        assert request(addr, "subdomain.bar.com", "/")[0] == 404
        code, svc, body = request(addr, "bar.foo.com", "/")
        assert (code, svc) == (200, "wildcard-foo-com") and "Host: bar.foo.com" in body
        assert request(addr, "baz.bar.foo.com", "/")[0] == 404
        assert request(addr, "foo.com", "/")[0] == 404
        row = s.k("get", "ingress", "host-rules", "-n", s.ns).splitlines()[1]
        assert "80, 443" in row


def test_ingress_class_of_another_controller_is_ignored(cluster):
    with Scenario(cluster) as s:
        s.apply(backends(["ingress-class-prefix"]) + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ingress-class}
spec:
  ingressClassName: some-invalid-class-name
  rules:
  - host: ingress-class
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}]}
""")
        s.ready(["ingress-class-prefix"])
        time.sleep(2)
        ing = json.loads(s.k("get", "ingress", "ingress-class", "-n", s.ns, "-o", "json"))
        assert not ing["status"].get("loadBalancer", {}).get("ingress")
        lb = json.loads(s.k("get", "svc", "skiff-ingress", "-n", "skiff-system", "-o", "json"))
        addr = lb["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert request(addr, "ingress-class", "/")[0] == 404


def test_an_ingress_nginx_tutorial_works_once_its_class_names_skiff(cluster):
    # Tutorials written for ingress-nginx say `ingressClassName: nginx`; an IngressClass of that name
    # pointing at Skiff's controller is all it takes, as with any controller on a real cluster.
    with Scenario(cluster) as s:
        s.apply(backends(["nginx-tutorial"]) + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: tutorial}
spec:
  ingressClassName: nginx
  rules:
  - host: tutorial.example.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: nginx-tutorial, port: {number: 8080}}}}]}
""")
        s.ready(["nginx-tutorial"])
        cluster.kubectl("apply", "-f", "-", input="""
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: skiff.dev/ingress-controller}
""")
        try:
            addr = s.address("tutorial")
            assert wait_for(lambda: request(addr, "tutorial.example.test", "/")[1] == "nginx-tutorial", 10)
            row = s.k("get", "ingress", "tutorial", "-n", s.ns).splitlines()[1].split()
            assert row[1] == "nginx" and row[3] == addr
        finally:
            cluster.kubectl("delete", "ingressclass", "nginx")


def test_load_balancing_reaches_all_ten_pods(cluster):
    with Scenario(cluster) as s:
        s.apply(backends(["echo-service"], None) + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: load-balancing}
spec:
  defaultBackend: {service: {name: echo-service, port: {number: 8080}}}
""")
        s.k("scale", "deployment/echo-service", "--replicas=10", "-n", s.ns)
        s.ready(["echo-service"])
        addr = s.address("load-balancing")
        pods = set()
        time.sleep(0.3)
        for _ in range(100):
            r = curl(f"http://{addr}/", "-H", "Host: load-balancing")
            assert r.returncode == 0
            m = re.search(r"^Hostname: (\S+)$", r.stdout, re.M)
            pods.add(m.group(1))
        assert len(pods) == 10, pods


def test_path_rules(cluster):
    with Scenario(cluster) as s:
        names = ["foo-exact", "foo-prefix", "aaa-slash-bbb-prefix", "aaa-prefix", "aaa-slash-bbb-slash-prefix",
                 "foo-slash-exact"]

        def p(path, kind, svc):
            return f"{{path: {path}, pathType: {kind}, backend: {{service: {{name: {svc}, port: {{number: 8080}}}}}}}}"
        s.apply(backends(names) + f"""
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: path-rules}}
spec:
  rules:
  - host: exact-path-rules
    http: {{paths: [{p('/foo', 'Exact', 'foo-exact')}]}}
  - host: prefix-path-rules
    http: {{paths: [{p('/foo', 'Prefix', 'foo-prefix')}, {p('/aaa/bbb', 'Prefix', 'aaa-slash-bbb-prefix')},
                   {p('/aaa', 'Prefix', 'aaa-prefix')}]}}
  - host: mixed-path-rules
    http: {{paths: [{p('/foo', 'Prefix', 'foo-prefix')}, {p('/foo', 'Exact', 'foo-exact')}]}}
  - host: trailing-slash-path-rules
    http: {{paths: [{p('/aaa/bbb/', 'Prefix', 'aaa-slash-bbb-slash-prefix')}, {p('/foo/', 'Exact', 'foo-slash-exact')}]}}
""")
        s.ready(names)
        addr = s.address("path-rules")
        cases = [("exact-path-rules", "/foo", 200, "foo-exact"), ("exact-path-rules", "/foo/", 404, None),
                 ("exact-path-rules", "/FOO", 404, None), ("exact-path-rules", "/bar", 404, None),
                 ("prefix-path-rules", "/foo", 200, "foo-prefix"), ("prefix-path-rules", "/foo/", 200, "foo-prefix"),
                 ("prefix-path-rules", "/FOO", 404, None),
                 ("prefix-path-rules", "/aaa/bbb", 200, "aaa-slash-bbb-prefix"),
                 ("prefix-path-rules", "/aaa/bbb/ccc", 200, "aaa-slash-bbb-prefix"),
                 ("prefix-path-rules", "/aaa/ccc", 200, "aaa-prefix"), ("prefix-path-rules", "/aaaccc", 404, None),
                 ("mixed-path-rules", "/foo", 200, "foo-exact"),
                 ("trailing-slash-path-rules", "/aaa/bbb", 200, "aaa-slash-bbb-slash-prefix"),
                 ("trailing-slash-path-rules", "/aaa/bbb/", 200, "aaa-slash-bbb-slash-prefix"),
                 ("trailing-slash-path-rules", "/foo", 404, None)]
        for host, path, code, svc in cases:
            got_code, got_svc, body = request(addr, host, path)
            assert got_code == code, (host, path, got_code, body)
            if svc:
                assert got_svc == svc, (host, path, got_svc)
