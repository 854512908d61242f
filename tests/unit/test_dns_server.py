"""The real DNS server on 127.0.0.x, queried over UDP and TCP with dnspython (and dig if present).

The server and a tiny upstream resolver (also started here, never the host's) run on an event
loop in a background thread, so the tests can use blocking clients as users do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from skiff.config import ClusterConfig
from skiff.dns.corefile import parse as parse_corefile
from skiff.dns.manifests import system_objects
from skiff.dns.records import Zone
from skiff.dns.server import DNSServer, parse_upstream

Z = "cluster.local."


def _loopback() -> str:
    return f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"


class Upstream(asyncio.DatagramProtocol):
    """A minimal authoritative server for example.com names, over UDP and TCP. `big.example.com`
    answers truncated over UDP so the forwarder must retry over TCP."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def reply(self, wire: bytes, tcp: bool) -> bytes:
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        name, qtype = q.question[0].name, q.question[0].rdtype
        self.queries.append(name.to_text())
        if name.to_text() == "big.example.com." and not tcp:
            r.flags |= dns.flags.TC
        elif name.to_text() == "big.example.com.":
            r.answer.append(dns.rrset.from_text_list(name, 60, "IN", "A", [f"192.0.2.{i}" for i in range(1, 60)]))
        elif qtype == T.A and name.to_text() in ("www.example.com.", "example.com."):
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
        elif qtype == T.PTR and name.to_text() == "1.2.0.192.in-addr.arpa.":
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "PTR", "www.example.com."))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.transport.sendto(self.reply(data, False), addr)

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(2), "big")
        out = self.reply(await reader.readexactly(size), True)
        writer.write(len(out).to_bytes(2, "big") + out)
        await writer.drain()
        writer.close()


def objects() -> list[dict]:
    return [
        {"kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
        {"kind": "Service", "metadata": {"name": "many", "namespace": "default"},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}},
        {"kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": "many-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "many"}},
         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
         "endpoints": [{"addresses": [f"10.244.7.{i}"], "conditions": {"ready": True}} for i in range(1, 101)]},
        {"kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "www.example.com"}},
    ]


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def env():
    h = Harness()
    upstream = Upstream()
    up_ip = _loopback()

    async def start():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: upstream, local_addr=(up_ip, 0))
        port = transport.get_extra_info("sockname")[1]
        tcp = await asyncio.start_server(upstream.serve_tcp, up_ip, port)
        zone = Zone.from_objects(objects(), reverse_cidrs=["10.96.0.0/12", "10.244.0.0/16"])
        server = DNSServer(zone, _loopback(), 0, upstreams=[f"{up_ip}:{port}"], timeout=1.0,
                           health_port=0, ready_port=0)
        await server.start()
        return transport, tcp, server

    transport, tcp, server = h.run(start())
    try:
        yield h, server, upstream
    finally:
        async def stop():
            await server.close()
            transport.close()
            tcp.close()
            await tcp.wait_closed()
        h.run(stop())
        h.stop()


def query(server: DNSServer, name: str, qtype=T.A, tcp=False, **kw) -> dns.message.Message:
    q = dns.message.make_query(name, qtype, **kw)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, server.listen, timeout=3, port=server.port)


def answers(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rr in msg.answer for rd in rr)


@pytest.mark.parametrize("tcp", [False, True])
def test_cluster_names_over_udp_and_tcp(env, tcp):
    _, server, upstream = env
    r = query(server, "kubernetes.default.svc." + Z, tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert answers(r) == ["10.96.0.1"]
    r = query(server, "_https._tcp.kubernetes.default.svc." + Z, T.SRV, tcp=tcp)
    assert answers(r) == ["0 100 443 kubernetes.default.svc.cluster.local."]
    r = query(server, "nope.default.svc." + Z, tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == T.SOA
    r = query(server, "1.0.96.10.in-addr.arpa.", T.PTR, tcp=tcp)
    assert answers(r) == ["kubernetes.default.svc.cluster.local."]
    assert upstream.queries == []


def test_query_case_is_kept_on_the_wire(env):
    _, server, _ = env
    r = query(server, "KuberNetes.default.SVC.cluster.local.")
    assert r.answer[0].name.to_text() == "KuberNetes.default.SVC.cluster.local."


def test_large_answer_truncates_over_udp_and_is_whole_over_tcp(env):
    _, server, _ = env
    r = query(server, "many.default.svc." + Z)
    assert r.flags & dns.flags.TC and not r.answer
    r = query(server, "many.default.svc." + Z, tcp=True)
    assert len(answers(r)) == 100
    # With EDNS the client offers a bigger buffer and gets it all over UDP.
    r = query(server, "many.default.svc." + Z, use_edns=0, payload=4096)
    assert len(answers(r)) == 100 and not r.flags & dns.flags.TC


def test_forwarding_to_upstream_with_tcp_fallback(env):
    _, server, upstream = env
    r = query(server, "www.example.com.")
    assert answers(r) == ["192.0.2.1"] and not r.flags & dns.flags.AA
    assert query(server, "nothing.example.com.").rcode() == dns.rcode.NXDOMAIN
    r = query(server, "big.example.com.", tcp=True)
    assert len(answers(r)) == 59  # the server had to use TCP to the upstream
    r = query(server, "big.example.com.", use_edns=0, payload=4096)
    assert len(answers(r)) == 59
    # Reverse names outside the cluster ranges go upstream too.
    assert answers(query(server, "1.2.0.192.in-addr.arpa.", T.PTR)) == ["www.example.com."]
    assert "1.2.0.192.in-addr.arpa." in upstream.queries


def test_externalname_target_resolved_upstream(env):
    _, server, _ = env
    r = query(server, "ext.default.svc." + Z)
    assert [rr.rdtype for rr in r.answer] == [T.CNAME, T.A]
    assert answers(r) == ["192.0.2.1", "www.example.com."]


def test_servfail_when_upstream_is_down(env):
    h, server, _ = env
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    server.upstreams = [parse_upstream(f"127.0.0.1:{port}")]
    server.timeout = 5.0
    t0 = time.monotonic()
    r = query(server, "www.example.com.")
    assert r.rcode() == dns.rcode.SERVFAIL
    # Nothing listens there: the kernel says so (ICMP port unreachable) and the query fails at once,
    # not after the timeout, as CoreDNS's connected sockets see it.
    assert time.monotonic() - t0 < 1.0
    # Cluster names do not depend on the upstream.
    assert answers(query(server, "kubernetes.default.svc." + Z)) == ["10.96.0.1"]


def test_refused_beyond_max_concurrent_forwards(env):
    _, server, _ = env
    server.max_concurrent = 0
    assert query(server, "www.example.com.").rcode() == dns.rcode.REFUSED
    assert answers(query(server, "kubernetes.default.svc." + Z)) == ["10.96.0.1"]


def test_itself_is_never_an_upstream():
    h = Harness()
    try:
        ip = _loopback()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
            port = probe.getsockname()[1]

        async def start():
            loopy = DNSServer(Zone(), ip, port, upstreams=[f"{ip}:{port}", "192.0.2.53"],
                              health_port=None, ready_port=None)
            await loopy.start()
            await loopy.close()
            return loopy.upstreams

        assert h.run(start()) == [("192.0.2.53", 53)]
    finally:
        h.stop()


def test_garbage_gets_formerr_or_is_dropped_and_the_server_keeps_going(env):
    _, server, _ = env
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\xbe\xef" + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3fgarbage", (server.listen, server.port))
        reply = dns.message.from_wire(s.recv(512))
        assert reply.id == 0xBEEF and reply.rcode() == dns.rcode.FORMERR and reply.flags & dns.flags.QR
        s.sendto(b"\x01\x02\x03", (server.listen, server.port))  # shorter than a header: dropped
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(512)
    with socket.create_connection((server.listen, server.port), timeout=2) as c:
        c.sendall(b"\x00\x05hello")  # too short to carry an ID: the connection is closed
        c.settimeout(2)
        assert c.recv(2) == b""
    assert answers(query(server, "kubernetes.default.svc." + Z)) == ["10.96.0.1"]
    assert answers(query(server, "kubernetes.default.svc." + Z, tcp=True)) == ["10.96.0.1"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_and_ready(env):
    _, server, _ = env
    assert _get(f"http://{server.listen}:{server.health_port}/health") == (200, "OK")
    assert _get(f"http://{server.listen}:{server.ready_port}/ready") == (200, "OK")
    server.zone.synced = False
    assert _get(f"http://{server.listen}:{server.ready_port}/ready")[0] == 503
    assert query(server, "nope.default.svc." + Z).rcode() == dns.rcode.SERVFAIL
    server.zone.synced = True
    server.shutting_down = True
    assert _get(f"http://{server.listen}:{server.ready_port}/ready")[0] == 503
    assert _get(f"http://{server.listen}:{server.ready_port}/nothing")[0] == 404


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig(env):
    _, server, _ = env
    for proto in ("+notcp", "+tcp"):
        out = subprocess.run(["dig", f"@{server.listen}", "-p", str(server.port), proto, "+short",
                              "kubernetes.default.svc.cluster.local", "A"],
                             capture_output=True, text=True, timeout=10).stdout
        assert out.strip() == "10.96.0.1"
        out = subprocess.run(["dig", f"@{server.listen}", "-p", str(server.port), proto, "+short",
                              "_http._tcp.many.default.svc.cluster.local", "SRV"],
                             capture_output=True, text=True, timeout=10).stdout
        # Over UDP the answer is truncated and dig retries over TCP, as resolvers do.
        assert len(out.strip().splitlines()) == 100


def test_parse_upstream():
    assert parse_upstream("1.2.3.4") == ("1.2.3.4", 53)
    assert parse_upstream("1.2.3.4:5353") == ("1.2.3.4", 5353)
    assert parse_upstream("[::1]:5353") == ("::1", 5353)
    assert parse_upstream("fd00::1") == ("fd00::1", 53)
    with pytest.raises(ValueError):
        parse_upstream("dns.google")


def test_system_objects_are_valid_and_shaped_like_kubeadm():
    import kubernetes_validate

    cfg = ClusterConfig(dns_upstreams=["192.0.2.53"])
    objs = system_objects(cfg)
    for obj in objs:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    by_kind = {o["kind"]: o for o in objs}
    svc = by_kind["Service"]
    assert svc["metadata"]["name"] == "kube-dns" and svc["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    c = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "skiff/dns" and c["readinessProbe"]["httpGet"]["port"] == 8181
    assert c["args"][c["args"].index("--upstream") + 1] == "192.0.2.53"
    assert "10.244.0.0/16" in c["args"] and "cluster.local" in c["args"]


async def _eventually(check, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the zone did not follow the API"
        await asyncio.sleep(0.02)


async def test_source_follows_the_api_server():
    """The informers against a real Skiff control plane on 127.0.0.1 (no cluster, no root)."""
    from skiff.client.rest import Client, resource
    from skiff.dns.source import ZoneSource
    from tests.support import ControlPlane

    cp = ControlPlane()
    try:
        cp.start()
        client = Client.for_state_dir(cp.state_dir)
        zone = Zone(synced=False)
        source = ZoneSource(zone, client)
        await asyncio.wait_for(source.run(), 10)
        assert zone.synced
        assert [rd.to_text() for rd in zone.answer("kubernetes.default.svc." + Z, T.A).answer[0]] == ["10.96.0.1"]
        await client.create(resource("v1", "namespaces"), None, {"metadata": {"name": "dnssrc"}})
        await _eventually(lambda: zone.answer("dnssrc.svc." + Z, T.A).rcode == dns.rcode.NOERROR)
        svc = {"metadata": {"name": "pets", "namespace": "dnssrc"},
               "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}
        await client.create(resource("v1", "services"), "dnssrc", svc)
        await client.create(resource("discovery.k8s.io/v1", "endpointslices"), "dnssrc", {
            "metadata": {"name": "pets-1", "labels": {"kubernetes.io/service-name": "pets"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.3.3"], "hostname": "pet-0", "conditions": {"ready": True}}]})
        await _eventually(lambda: zone.answer("pet-0.pets.dnssrc.svc." + Z, T.A).rcode == dns.rcode.NOERROR)
        await client.delete(resource("v1", "services"), "dnssrc", "pets")
        await _eventually(lambda: zone.answer("pets.dnssrc.svc." + Z, T.A).rcode == dns.rcode.NXDOMAIN)
        await source.stop()
    finally:
        cp.cleanup()


# ---- serving as the Corefile says ---------------------------------------------------------


def corefile_for(upstream: str, extra: str = "", stub: str = "") -> str:
    return f"""
.:53 {{
    errors
    {extra}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 7
    }}
    forward . {upstream}
}}
{stub}
"""


def test_hosts_entries_answer_before_the_cluster_and_fall_through(env):
    _, server, upstream = env
    up = f"{server.upstreams[0][0]}:{server.upstreams[0][1]}"
    server.apply_corefile(parse_corefile(corefile_for(up, extra="hosts {\n 192.0.2.99 printer.lab\n 2001:db8::9 printer.lab\n"
                                                       " fallthrough\n }")))
    assert answers(query(server, "printer.lab.")) == ["192.0.2.99"]
    assert answers(query(server, "printer.lab.", T.AAAA)) == ["2001:db8::9"]
    # Names hosts does not have go on: the cluster's, with the Corefile's ttl, and upstream.
    r = query(server, "kubernetes.default.svc." + Z)
    assert answers(r) == ["10.96.0.1"] and r.answer[0].ttl == 7
    assert answers(query(server, "www.example.com.")) == ["192.0.2.1"]
    # Without fallthrough, an unknown name is hosts' NXDOMAIN.
    server.apply_corefile(parse_corefile(corefile_for(up, extra="hosts {\n 192.0.2.99 printer.lab\n }")))
    assert query(server, "www.example.com.").rcode() == dns.rcode.NXDOMAIN


def test_a_stub_domain_goes_to_its_own_upstream(env):
    _, server, upstream = env
    up = f"{server.upstreams[0][0]}:{server.upstreams[0][1]}"
    # The root block forwards nowhere useful; example.com has its own block with the real upstream.
    server.apply_corefile(parse_corefile(corefile_for("127.0.0.1:9", stub=f"example.com:53 {{\n forward . {up}\n}}")))
    assert answers(query(server, "www.example.com.")) == ["192.0.2.1"]
    assert query(server, "www.example.org.").rcode() == dns.rcode.SERVFAIL
    assert "www.example.org." not in upstream.queries


def test_the_log_plugin_logs_each_query_as_coredns_does(env, caplog):
    _, server, _ = env
    up = f"{server.upstreams[0][0]}:{server.upstreams[0][1]}"
    server.apply_corefile(parse_corefile(corefile_for(up, extra="log")))
    with caplog.at_level(logging.INFO, logger="skiff.dns.log"):
        query(server, "kubernetes.default.svc." + Z)
        query(server, "nosuch.default.svc." + Z)
    lines = [r.getMessage() for r in caplog.records if r.name == "skiff.dns.log"]
    assert len(lines) == 2, lines
    assert '"A IN kubernetes.default.svc.cluster.local. udp ' in lines[0] and " NOERROR qr,aa,rd,ra " in lines[0]
    assert " NXDOMAIN " in lines[1]
