"""The proxy's nftables rules against real packets, in a private topology (root needed).

Topology (all names carry a random suffix; every address is inside namespaces created here):
  outside ns: bridge br0 172.31.R.1/24, routes LoadBalancer IPs to node A
  node A / node B ns: eth0 172.31.R.2 / .3 on br0, pod CIDR 10.R.1.0/24 / 10.R.2.0/24
  pods a1..a3 on node A, b1..b2 on node B, each running a TCP+UDP echo server on 8080 that
  replies "<pod name> <client address it sees>".
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import time

import pytest

from skiff.proxy.conntrack import delete_flows, stale_udp_flows
from skiff.proxy.model import NodeContext
from skiff.proxy.nft import NftApplier
from skiff.proxy.rules import desired_ruleset

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")

TABLE = "skiff-proxy"

ECHO_SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 8080))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(f"{name} {addr[0]}".encode(), addr)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080))
t.listen(64)
while True:
    c, addr = t.accept()
    try:
        c.sendall(f"{name} {addr[0]}".encode())
    finally:
        c.close()
"""

CLIENT = r"""
import errno, json, socket, sys, time
proto, ip, port, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
out = []
for _ in range(count):
    start = time.monotonic()
    try:
        if proto == "tcp":
            s = socket.create_connection((ip, port), timeout=timeout)
            s.settimeout(timeout)
            data = s.recv(200)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.connect((ip, port))
            s.send(b"hi")
            data = s.recv(200)
        s.close()
        out.append({"reply": data.decode(), "ms": (time.monotonic() - start) * 1000})
    except OSError as e:
        err = "timeout" if isinstance(e, TimeoutError) else errno.errorcode.get(e.errno, str(e))
        out.append({"error": err, "ms": (time.monotonic() - start) * 1000})
print(json.dumps(out))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check)


class Topology:
    def __init__(self) -> None:
        self.sfx = secrets.token_hex(3)
        self.r = random.randint(100, 250)
        r = self.r
        self.host = f"skpx-out-{self.sfx}"
        self.nodes = {"node-a": f"skpx-na-{self.sfx}", "node-b": f"skpx-nb-{self.sfx}"}
        self.node_ip = {"node-a": f"172.31.{r}.2", "node-b": f"172.31.{r}.3"}
        self.host_ip = f"172.31.{r}.1"
        self.pod_cidr = f"10.{r}.0.0/17"
        self.service_cidr = f"10.{r}.128.0/24"
        self.pods: dict[str, dict] = {}  # name -> {ns, ip, node}
        self.procs: list[subprocess.Popen] = []
        self.created_ns: list[str] = []
        self.appliers: dict[str, NftApplier] = {}

    def svc_ip(self, n: int) -> str:
        return f"10.{self.r}.128.{n}"

    def lb_ip(self, n: int) -> str:
        return f"10.{self.r}.200.{n}"

    def add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created_ns.append(name)
        in_ns(name, "ip", "link", "set", "lo", "up")

    def setup(self) -> None:
        r = self.r
        self.add_ns(self.host)
        in_ns(self.host, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(self.host, "ip", "addr", "add", f"{self.host_ip}/24", "dev", "br0")
        in_ns(self.host, "ip", "link", "set", "br0", "up")
        for i, (node, ns) in enumerate(self.nodes.items(), start=1):
            self.add_ns(ns)
            in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            in_ns(self.host, "ip", "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            in_ns(self.host, "ip", "link", "set", f"n{i}", "master", "br0", "up")
            in_ns(ns, "ip", "addr", "add", f"{self.node_ip[node]}/24", "dev", "eth0")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            in_ns(ns, "ip", "route", "add", "default", "via", self.host_ip)
            other = 3 - i
            in_ns(ns, "ip", "route", "add", f"10.{r}.{other}.0/24", "via", f"172.31.{r}.{other + 1}")
        in_ns(self.host, "ip", "route", "add", f"10.{r}.200.0/24", "via", self.node_ip["node-a"])
        for node, count, letter in (("node-a", 3, "a"), ("node-b", 2, "b")):
            ns_node = self.nodes[node]
            idx = 1 if node == "node-a" else 2
            for k in range(1, count + 1):
                name = f"{letter}{k}"
                ns = f"skpx-{name}-{self.sfx}"
                ip = f"10.{r}.{idx}.{10 + k}"
                self.add_ns(ns)
                in_ns(ns_node, "ip", "link", "add", f"vp{k}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                in_ns(ns_node, "ip", "addr", "add", f"10.{r}.{idx}.1/32", "dev", f"vp{k}")
                in_ns(ns_node, "ip", "link", "set", f"vp{k}", "up")
                in_ns(ns_node, "ip", "route", "add", f"{ip}/32", "dev", f"vp{k}")
                in_ns(ns, "ip", "addr", "add", f"{ip}/32", "dev", "eth0")
                in_ns(ns, "ip", "link", "set", "eth0", "up")
                in_ns(ns, "ip", "route", "add", f"10.{r}.{idx}.1", "dev", "eth0")
                in_ns(ns, "ip", "route", "add", "default", "via", f"10.{r}.{idx}.1")
                self.pods[name] = {"ns": ns, "ip": ip, "node": node}
                self.procs.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", ns, sys.executable, "-c", ECHO_SERVER, name],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        for node, ns in self.nodes.items():
            self.appliers[node] = NftApplier(TABLE, netns=ns)
        self._wait_for_servers()

    def _wait_for_servers(self) -> None:
        deadline = time.monotonic() + 10
        for pod in self.pods.values():
            while True:
                res = in_ns(pod["ns"], "python3", "-c", CLIENT, "tcp", "127.0.0.1", "8080", "1", "0.5")
                if "reply" in json.loads(res.stdout)[0]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"echo server in {pod['ns']} did not start")
                time.sleep(0.05)

    def teardown(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        for ns in reversed(self.created_ns):
            sh("ip", "netns", "del", ns, check=False)

    def context(self, node: str) -> NodeContext:
        return NodeContext(node, (self.node_ip[node],), self.pod_cidr, service_cidr=self.service_cidr)

    def client(self, where: str, proto: str, ip: str, port: int, count: int = 1, timeout: float = 1.0) -> list[dict]:
        ns = self.pods[where]["ns"] if where in self.pods else self.nodes.get(where, where)
        res = in_ns(ns, "python3", "-c", CLIENT, proto, ip, str(port), str(count), str(timeout))
        return json.loads(res.stdout)

    async def program(self, services: list[dict], slices: list[dict]) -> None:
        for node, applier in self.appliers.items():
            await applier.sync(desired_ruleset(services, slices, self.context(node)))


def service(name: str, ip: str, port: int = 80, proto: str = "TCP", **spec) -> dict:
    ports = [{"name": "p", "port": port, "protocol": proto, "targetPort": 8080}]
    if "nodePort" in spec:
        ports[0]["nodePort"] = spec.pop("nodePort")
    status = spec.pop("status", {})
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": ports, **spec},
        "status": status,
    }


def endpoint_slice(topo: Topology, svc: str, pods: list[str], proto: str = "TCP") -> dict:
    return {
        "metadata": {"namespace": "default", "name": f"{svc}-x", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080, "protocol": proto}],
        "endpoints": [
            {"addresses": [topo.pods[p]["ip"]], "nodeName": topo.pods[p]["node"], "conditions": {"ready": True}}
            for p in pods
        ],
    }


def objects(topo: Topology) -> tuple[list[dict], list[dict]]:
    services = [
        service(
            "web", topo.svc_ip(10), type="LoadBalancer", nodePort=30080,
            status={"loadBalancer": {"ingress": [{"ip": topo.lb_ip(10)}]}},
        ),
        service(
            "sticky", topo.svc_ip(11), sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
        service("local", topo.svc_ip(12), type="NodePort", nodePort=30081, externalTrafficPolicy="Local"),
        service("empty", topo.svc_ip(13), type="NodePort", nodePort=30083),
        service("hairpin", topo.svc_ip(14)),
        service("dns", topo.svc_ip(15), port=53, proto="UDP"),
        service("itp", topo.svc_ip(16), internalTrafficPolicy="Local"),
        service(
            "fw", topo.svc_ip(17), type="LoadBalancer", nodePort=30087,
            loadBalancerSourceRanges=["192.0.2.0/24"],
            status={"loadBalancer": {"ingress": [{"ip": topo.lb_ip(17)}]}},
        ),
    ]
    slices = [
        endpoint_slice(topo, "web", ["a1", "a2", "b1"]),
        endpoint_slice(topo, "sticky", ["a1", "a2", "a3", "b1", "b2"]),
        endpoint_slice(topo, "local", ["a1"]),
        endpoint_slice(topo, "hairpin", ["a2"]),
        endpoint_slice(topo, "dns", ["b1", "b2"], proto="UDP"),
        endpoint_slice(topo, "itp", ["a3", "b2"]),
        endpoint_slice(topo, "fw", ["a1"]),
    ]
    return services, slices


def running(t: Topology):
    """Set `t` up for the fixture that yields from this, and always tear it down."""
    try:
        t.setup()
        yield t
    finally:
        t.teardown()


@pytest.fixture(scope="module")
def topo():
    yield from running(Topology())


@pytest.fixture
async def programmed(topo):
    services, slices = objects(topo)
    await topo.program(services, slices)
    return topo


def names(results: list[dict]) -> list[str]:
    return [r["reply"].split()[0] if "reply" in r else r["error"] for r in results]


async def test_cluster_ip_from_pod_spreads_and_keeps_client_ip(programmed):
    t = programmed
    res = t.client("a3", "tcp", t.svc_ip(10), 80, count=30)
    got = names(res)
    assert set(got) <= {"a1", "a2", "b1"} and len(set(got)) > 1, got
    # Pod-to-ClusterIP traffic is not masqueraded: the endpoint sees the pod's own address.
    assert {r["reply"].split()[1] for r in res} == {t.pods["a3"]["ip"]}


async def test_cluster_ip_from_node(programmed):
    t = programmed
    for node in ("node-a", "node-b"):
        got = names(t.client(node, "tcp", t.svc_ip(10), 80, count=5))
        assert set(got) <= {"a1", "a2", "b1"}, got


async def test_node_port_on_both_nodes_and_load_balancer_ip(programmed):
    t = programmed
    for node in ("node-a", "node-b"):
        got = names(t.client(t.host, "tcp", t.node_ip[node], 30080, count=6))
        assert set(got) <= {"a1", "a2", "b1"}, (node, got)
    got = names(t.client(t.host, "tcp", t.lb_ip(10), 80, count=6))
    assert set(got) <= {"a1", "a2", "b1"}, got


async def test_session_affinity_pins_client(programmed):
    t = programmed
    got = names(t.client("b2", "tcp", t.svc_ip(11), 80, count=12))
    assert len(set(got)) == 1 and got[0] in {"a1", "a2", "a3", "b1", "b2"}, got


async def test_external_traffic_policy_local(programmed):
    t = programmed
    res = t.client(t.host, "tcp", t.node_ip["node-a"], 30081, count=3)
    assert names(res) == ["a1"] * 3
    # No masquerade: the pod sees the real outside client.
    assert {r["reply"].split()[1] for r in res} == {t.host_ip}
    # node-b has no local endpoint: the packet is dropped (a timeout, not a refusal).
    res = t.client(t.host, "tcp", t.node_ip["node-b"], 30081, count=1, timeout=0.5)
    assert names(res) == ["timeout"]
    # Pods on node-b still reach the service (short-circuit as if via the load balancer).
    assert names(t.client("b1", "tcp", t.node_ip["node-b"], 30081)) == ["a1"]


async def test_no_endpoints_is_refused_immediately(programmed):
    t = programmed
    for where, ip, port in (("a1", t.svc_ip(13), 80), ("node-b", t.svc_ip(13), 80), (t.host, t.node_ip["node-a"], 30083)):
        res = t.client(where, "tcp", ip, port, timeout=2)
        assert res[0].get("error") == "ECONNREFUSED", (where, res)
        assert res[0]["ms"] < 100, res
    # A port that no Service defines on a ClusterIP is rejected as well (here over UDP).
    res = t.client("a1", "udp", t.svc_ip(13), 81, timeout=1)
    assert res[0].get("error") == "ECONNREFUSED", res


async def test_hairpin_pod_reaches_itself_through_its_service(programmed):
    t = programmed
    res = t.client("a2", "tcp", t.svc_ip(14), 80, count=2)
    assert names(res) == ["a2", "a2"]
    # Masqueraded, otherwise the reply would go straight back inside the pod and be dropped.
    assert {r["reply"].split()[1] for r in res} != {t.pods["a2"]["ip"]}


async def test_udp_cluster_ip(programmed):
    t = programmed
    got = names(t.client("a1", "udp", t.svc_ip(15), 53, count=10))
    assert set(got) <= {"b1", "b2"} and got, got


async def test_internal_traffic_policy_local(programmed):
    t = programmed
    assert set(names(t.client("a1", "tcp", t.svc_ip(16), 80, count=5))) == {"a3"}
    assert set(names(t.client("b1", "tcp", t.svc_ip(16), 80, count=5))) == {"b2"}


async def test_load_balancer_source_ranges(programmed):
    t = programmed
    # The outside client is not in 192.0.2.0/24: the LB IP drops it, the NodePort does not filter.
    assert names(t.client(t.host, "tcp", t.lb_ip(17), 80, timeout=0.5)) == ["timeout"]
    assert names(t.client(t.host, "tcp", t.node_ip["node-a"], 30087)) == ["a1"]


async def test_partial_sync_moves_traffic_and_udp_conntrack_is_flushed(programmed):
    t = programmed
    services, slices = objects(t)
    node = "node-a"
    before = desired_ruleset(services, slices, t.context(node))
    # A long-lived UDP "flow" from a1 to the dns service, then the endpoint it hit goes away.
    first = names(t.client("a1", "udp", t.svc_ip(15), 53))[0]
    remaining = "b2" if first == "b1" else "b1"
    slices = [s for s in slices if s["metadata"]["name"] != "dns-x"] + [
        endpoint_slice(t, "dns", [remaining], proto="UDP"),
    ]
    slices = [s for s in slices if s["metadata"]["name"] != "web-x"] + [endpoint_slice(t, "web", ["b1"])]
    after = desired_ruleset(services, slices, t.context(node))
    result = await t.appliers[node].sync(after)
    assert result.kind == "partial"
    assert "sticky" not in result.transaction and "web" in result.transaction
    flows = stale_udp_flows(before.udp_destinations, after.udp_destinations)
    assert [(f.orig_dst, f.reply_src) for f in flows] == [(t.svc_ip(15), t.pods[first]["ip"])]
    listed = in_ns(t.nodes[node], "conntrack", "-L", "-p", "udp", "--orig-dst", t.svc_ip(15), check=False)
    assert t.pods[first]["ip"] in listed.stdout
    assert await delete_flows(flows, netns=t.nodes[node]) == 1
    listed = in_ns(t.nodes[node], "conntrack", "-L", "-p", "udp", "--orig-dst", t.svc_ip(15), check=False)
    assert t.pods[first]["ip"] not in listed.stdout
    assert set(names(t.client("a3", "tcp", t.svc_ip(10), 80, count=6))) == {"b1"}
    assert set(names(t.client("a1", "udp", t.svc_ip(15), 53, count=4))) == {remaining}


async def test_full_sync_replaces_table_and_cleanup(topo):
    applier = NftApplier(f"skpx-tmp-{topo.sfx}", netns=topo.nodes["node-b"])
    services, slices = objects(topo)
    rs = desired_ruleset(services, slices, topo.context("node-b"))
    assert (await applier.sync(rs)).kind == "full"
    assert (await applier.sync(rs)).kind == "noop"
    applier.force_full_sync()
    assert (await applier.sync(rs)).kind == "full"
    await applier.delete_table()
    tables = in_ns(topo.nodes["node-b"], "nft", "list", "tables").stdout
    assert f"skpx-tmp-{topo.sfx}" not in tables
