"""Cluster DNS from inside pods (issue: services by name).

Forwarding is tested against a small DNS server this test starts on the host's address on the
cluster's node bridge, configured with `skiff up --dns-upstream`; never the machine's resolver.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import dns.message
import dns.rcode
import dns.rrset
import pytest

from skiff.net import names
from tests.support import SEED, Cluster, free_ranges, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

UPSTREAM_PORT = 5353


class Upstream:
    """Answers `outside.test.` A 192.0.2.7 (a documentation address, never contacted); NXDOMAIN otherwise."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.host = host
        self.queries: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def start(self) -> None:
        self.sock.bind((self.host, UPSTREAM_PORT))
        self.sock.settimeout(0.2)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            q = dns.message.from_wire(data)
            name = q.question[0].name.to_text()
            self.queries.append(name)
            r = dns.message.make_response(q)
            if name == "outside.test.":
                r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "192.0.2.7"))
            else:
                r.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(r.to_wire(), addr)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def cluster():
    octet, _ = free_ranges()
    host = f"172.29.{octet}.1"
    c = Cluster(nodes=2, **{"node-cidr": f"172.29.{octet}.0/24",
                            "lb-pool": f"172.29.{octet}.200-172.29.{octet}.230",
                            "dns-upstream": f"{host}:{UPSTREAM_PORT}"})
    c.up(wait=True)
    assert "System components ready" in c.up_output
    up = Upstream(host)
    try:
        up.start()
        c.upstream = up
        c.kubectl("apply", "-f", str(SEED / "clusterip.yaml"))
        c.kubectl("apply", "-f", "-", input=HEADLESS)
        yield c
    finally:
        up.close()
        c.down()


HEADLESS = """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: backend}
  ports: [{name: http, port: 8080}]
"""



def client_pod(k) -> str:
    def ready():
        items = json.loads(k("get", "pods", "-l", "app=frontend", "-o", "json"))["items"]
        return [p["metadata"]["name"] for p in items if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]
    wait_for(lambda: ready() and json.loads(k("get", "deploy", "coredns", "-n", "kube-system", "-o", "json"))
             ["status"].get("readyReplicas"), 15)
    return ready()[0]


def test_resolv_conf_cluster_first(cluster):
    k = cluster.kubectl
    pod = client_pod(k)
    rc = k("exec", pod, "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in rc
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in rc
    assert "options ndots:5" in rc


def test_a_pod_with_hostname_and_subdomain_under_a_headless_service(cluster):
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: named-db}
spec:
  clusterIP: None
  selector: {app: named}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: named, labels: {app: named}}
spec:
  hostname: web-0
  subdomain: named-db
  setHostnameAsFQDN: true
  containers: [{name: c, image: registry.k8s.io/pause:3.9}]
""")
    try:
        wait_for(lambda: k("get", "pod", "named", "-o", "jsonpath={.status.phase}") == "Running", 10)
        fqdn = "web-0.named-db.default.svc.cluster.local"
        assert k("exec", "named", "--", "cat", "/proc/sys/kernel/hostname").strip() == fqdn
        assert f"\t{fqdn}\tweb-0" in k("exec", "named", "--", "cat", "/etc/hosts")
        ip = k("get", "pod", "named", "-o", "jsonpath={.status.podIP}")
        out = wait_for(lambda: k.run("exec", client_pod(k), "--", "dig", "+short", fqdn, check=False).stdout.strip()
                       or None, 5)
        assert out == ip
    finally:
        k("delete", "pod/named", "service/named-db", "--now")


def test_the_dns_debugging_page_of_the_kubernetes_docs(cluster):
    k = cluster.kubectl
    k("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: dnsutils, namespace: default}
spec:
  containers:
  - name: dnsutils
    image: registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3
    command: [sleep, infinity]
    imagePullPolicy: IfNotPresent
  restartPolicy: Always
""")
    try:
        wait_for(lambda: k("get", "pod", "dnsutils", "-o", "jsonpath={.status.phase}") == "Running", 10)
        out = k("exec", "-i", "dnsutils", "--", "nslookup", "kubernetes.default")
        assert "Server:\t\t10.96.0.10" in out
        assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in out
        # The TTL of a kubeadm or kind cluster's Corefile.
        answer = k("exec", "dnsutils", "--", "dig", "+noall", "+answer", "kubernetes.default.svc.cluster.local")
        assert answer.split()[1:] == ["30", "IN", "A", "10.96.0.1"], answer
    finally:
        k("delete", "pod", "dnsutils", "--now")


def test_service_names_resolve_and_route(cluster):
    k = cluster.kubectl
    pod = client_pod(k)
    ip = json.loads(k("get", "svc", "backend-service", "-o", "json"))["spec"]["clusterIP"]
    out = k("exec", pod, "--", "getent", "hosts", "backend-service")
    assert out.split()[0] == ip
    out = k("exec", pod, "--", "curl", "-s", "--max-time", "3", "http://example-clusterip-service/")
    assert out.strip() == "hello from the frontend"
    fq = k("exec", pod, "--", "getent", "hosts", "example-clusterip-service.default.svc.cluster.local")
    assert fq.split()[0] == json.loads(k("get", "svc", "example-clusterip-service", "-o", "json"))["spec"]["clusterIP"]


def test_headless_and_srv(cluster):
    k = cluster.kubectl
    pod = client_pod(k)
    want = sorted(p["status"]["podIP"] for p in json.loads(k("get", "pods", "-l", "app=backend", "-o", "json"))["items"])
    out = wait_for(lambda: (lambda o: o if sorted(o.split()) == want else None)(
        k("exec", pod, "--", "dig", "+short", "db.default.svc.cluster.local")), 5)
    assert sorted(out.split()) == want
    srv = k("exec", pod, "--", "dig", "+short", "SRV", "_http._tcp.db.default.svc.cluster.local")
    lines = [line.split() for line in srv.strip().splitlines()]
    assert len(lines) == 2 and all(parts[2] == "8080" for parts in lines), srv


def test_new_service_resolves_within_a_second_and_deleted_gives_nxdomain(cluster):
    k = cluster.kubectl
    pod = client_pod(k)
    k("create", "service", "clusterip", "fresh", "--tcp=80:80")
    t0 = time.monotonic()
    ip = json.loads(k("get", "svc", "fresh", "-o", "json"))["spec"]["clusterIP"]
    wait_for(lambda: ip in k("exec", pod, "--", "dig", "+short", "fresh.default.svc.cluster.local"), 3, 0.02)
    assert time.monotonic() - t0 < 1.0 + 0.6  # kubectl exec's own cost is included
    k("delete", "service", "fresh")
    out = wait_for(lambda: (lambda o: o if "NXDOMAIN" in o else None)(
        k("exec", pod, "--", "dig", "fresh.default.svc.cluster.local")), 3)
    assert "status: NXDOMAIN" in out


def test_forwards_other_names_to_the_configured_upstream(cluster):
    k = cluster.kubectl
    pod = client_pod(k)
    out = k("exec", pod, "--", "getent", "hosts", "outside.test")
    assert out.split()[0] == "192.0.2.7"
    assert "outside.test." in cluster.upstream.queries
    # Names under the cluster domain are answered by the cluster DNS itself, never forwarded.
    k("exec", pod, "--", "dig", "+short", "nosuch.default.svc.cluster.local")
    assert not any(q.endswith("cluster.local.") for q in cluster.upstream.queries)


def test_an_upstream_out_of_reach_fails_lookups_at_once():
    """With the default upstream (the host's resolver) the nodes usually have no route to it: the
    node answers "network unreachable", and the cluster DNS turns that into SERVFAIL at once. So a
    name the search list walks past the cluster (glibc asks for AAAA too, down to
    `kubernetes.default.`) costs milliseconds, not the forward timeout twice over."""
    out_of_reach = "198.51.100.53"  # a documentation address: no node has a route there
    c = Cluster(nodes=1, **{"dns-upstream": out_of_reach})
    c.up(wait=True)
    try:
        k = c.kubectl
        k("run", "client", "--image=busybox", "--", "sleep", "3600")
        k("wait", "--for=condition=Ready", "pod/client", "--timeout=30s")
        t0 = time.monotonic()
        out = k("exec", "client", "--", "getent", "hosts", "kubernetes.default")
        assert out.split()[0] == json.loads(k("get", "svc", "kubernetes", "-o", "json"))["spec"]["clusterIP"]
        assert time.monotonic() - t0 < 1.5, "a lookup of a cluster name waited for the out-of-reach upstream"
        # More than the kernel's burst of ICMP errors (about five, then one a second): each still
        # fails at once, the upstream being skipped for a while once called out of reach.
        t0 = time.monotonic()
        r = k.run("exec", "client", "--", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do "
                  "dig +tries=1 +time=5 +noall +comments example$i.com | grep -o 'status: [A-Z]*'; done", check=False)
        assert r.stdout.split("\n")[:10] == ["status: SERVFAIL"] * 10, r.stdout
        assert time.monotonic() - t0 < 3.0, f"10 lookups took {time.monotonic() - t0:.1f} s"
        # Nothing left the machine for it: the node has no route there.
        node_ns = names.node_netns_name(c.cfg.node_name(0))
        assert "unreachable" in c.in_netns(node_ns, "ip", "route", "get", out_of_reach).stderr
    finally:
        c.down()


def test_the_corefile_configmap_changes_the_server_as_the_docs_describe(cluster):
    """kube-system/coredns holds the Corefile kubeadm installs; editing it (as "Customizing DNS
    Service" and "Debugging DNS Resolution" do) changes the running servers within seconds: a
    hosts entry answers, `log` shows the queries in `kubectl logs`, and a Corefile with a typo is
    refused with CoreDNS's words while the previous one keeps serving."""
    k = cluster.kubectl
    pod = client_pod(k)
    cm = json.loads(k("get", "configmap", "coredns", "-n", "kube-system", "-o", "json"))
    original = cm["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in original and "forward . " in original

    def put(corefile: str) -> None:
        k("patch", "configmap", "coredns", "-n", "kube-system", "--type=merge", "-p",
          json.dumps({"data": {"Corefile": corefile}}))

    def logs() -> str:
        return k("logs", "-n", "kube-system", "-l", "k8s-app=kube-dns", "--tail=-1", "--prefix")

    try:
        put(original.replace("    errors\n", "    errors\n    log\n    hosts {\n       192.0.2.9 printer.lab\n"
                                               "       fallthrough\n    }\n", 1))
        # Both replicas reload (each when its node has updated the volume): then the name answers
        # whichever one the Service picks.
        printer = "for i in 1 2 3 4 5 6; do dig +short printer.lab; done"
        wait_for(lambda: k("exec", pod, "--", "sh", "-c", printer).split() == ["192.0.2.9"] * 6, 20, 0.5)
        # The cluster's names still come from the kubernetes plugin, and outside names still go upstream.
        assert k("exec", pod, "--", "dig", "+short", "kubernetes.default.svc.cluster.local").strip()
        assert "outside.test" in k("exec", pod, "--", "getent", "hosts", "outside.test")
        wait_for(lambda: '"A IN printer.lab. udp ' in logs(), 10, 0.5)
        put(original.replace("    errors\n", "    errors\n    frobnicate\n", 1))
        wait_for(lambda: "Unknown directive 'frobnicate'" in logs(), 15, 0.5)
        assert k("exec", pod, "--", "sh", "-c", printer).split() == ["192.0.2.9"] * 6  # the old Corefile
    finally:
        put(original)
    wait_for(lambda: k("exec", pod, "--", "sh", "-c", "for i in 1 2 3 4 5 6; do dig +short printer.lab; done")
             .split() == [], 20, 0.5)
