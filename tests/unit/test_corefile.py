"""Reading the Corefile (skiff.dns.corefile); the server serving as it says is tested in
test_dns_server.py."""

from __future__ import annotations

import dns.name
import pytest

from skiff.dns.corefile import CorefileError, parse
from skiff.dns.manifests import corefile as render_default

N = dns.name.from_text


def test_the_kubeadm_corefile_reads_as_the_server_serves_it(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    cf = parse(render_default("cluster.local", 30, []).replace("/etc/resolv.conf", str(resolv)))
    (block,) = cf.blocks
    assert block.zones == (dns.name.root,)
    assert block.kubernetes.zones == (N("cluster.local"), N("in-addr.arpa"), N("ip6.arpa"))
    assert (block.kubernetes.ttl, block.kubernetes.pods) == (30, "insecure")
    assert block.forward.zone == dns.name.root and block.forward.upstreams == ("192.0.2.53", "192.0.2.54")
    assert block.forward.max_concurrent == 1000 and not block.log and block.hosts is None
    assert parse(render_default("cluster.local", 30, ["172.18.0.1:5353"])).blocks[0].forward.upstreams == (
        "172.18.0.1:5353",)


def test_stub_domains_take_the_most_specific_server_block():
    cf = parse("""
.:53 {
    kubernetes cluster.local
    forward . 192.0.2.53
}
consul.local:53 {
    errors
    cache 30
    forward . 10.150.0.1
}
""")
    assert cf.block_for(N("db.service.consul.local")).forward.upstreams == ("10.150.0.1",)
    assert cf.block_for(N("example.com")).forward.upstreams == ("192.0.2.53",)
    assert parse("example.org {\n  forward . 192.0.2.1\n}").block_for(N("example.com")) is None


@pytest.mark.parametrize("text,error", [
    (".:53 {\n    errors\n    frobnicate\n}", "Corefile:3 - Error during parsing: Unknown directive 'frobnicate'"),
    (".:53 {\n    kubernetes cluster.local {\n        podz insecure\n    }\n}",
     "Corefile:3 - Error during parsing: unknown property 'podz'"),
    (".:53 {\n    forward . not-an-ip\n}", "Corefile:2 - Error during parsing: not an IP address or file: 'not-an-ip'"),
    (".:53 {\n    errors\n", "Corefile:1 - Error during parsing: Unexpected EOF"),
    (".:5300 {\n    errors\n}", "Corefile:1 - Skiff's cluster DNS serves port 53 only, not 5300"),
])
def test_what_coredns_would_refuse_is_refused_with_the_line(text, error):
    with pytest.raises(CorefileError) as e:
        parse(text)
    assert str(e.value) == error
