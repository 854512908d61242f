"""Rule strings, set elements and affinity sets -> nf_tables netlink encodings (no root).

The kernel test (tests/kernel/test_proxy_netlink.py) checks that nft lists what these encodings
create exactly as it lists what it created itself; here the shapes, fallbacks and bytes are pinned.
"""

from __future__ import annotations

import struct
import sys

import pytest

from skiff.net.netlink import NLA_F_NESTED
from skiff.proxy.expressions import compile_element, compile_rule, compile_set, encode_key, encode_map_value
from skiff.proxy.model import NamedSet
from skiff.proxy.netlink import Batch
from skiff.proxy.nft import netlink_batch
from skiff.proxy.render import diff, render_diff
from skiff.proxy.rules import NODEPORT_KEY, SERVICE_KEY, desired_ruleset
from tests.unit.test_proxy_rules import NODE, ep, eps, svc


def names(rule: str) -> list[str]:
    exprs = compile_rule(rule)
    assert exprs is not None, rule
    return [e.name for e in exprs]


def attrs(data: bytes) -> list[tuple[int, bytes]]:
    """Decode one level of netlink attributes as (type without flags, payload)."""
    out, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        out.append((kind & ~NLA_F_NESTED, data[offset + 4: offset + length]))
        offset += (length + 3) & ~3
    return out


def tree(data: bytes) -> list:
    """Decode attributes fully, descending into those flagged nested."""
    out, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        payload = data[offset + 4: offset + length]
        out.append((kind & ~NLA_F_NESTED, tree(payload) if kind & NLA_F_NESTED else payload))
        offset += (length + 3) & ~3
    return out


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("ip saddr @affinity-x goto endpoint-x", ["payload", "lookup", "immediate"]),
        ("numgen random mod 3 == 0 goto endpoint-x", ["numgen", "cmp", "immediate"]),
        ("goto endpoint-x", ["immediate"]),
        ("jump mark-for-masquerade", ["immediate"]),
        ("ip saddr 10.50.1.2 jump mark-for-masquerade", ["payload", "cmp", "immediate"]),
        ("ip daddr 10.60.0.10 jump mark-for-masquerade", ["payload", "cmp", "immediate"]),
        # Byte-aligned prefixes compare only their bytes; others are masked first, as nft does.
        (
            "ip daddr 10.60.0.10 ip saddr != 10.50.0.0/16 jump mark-for-masquerade",
            ["payload", "cmp", "payload", "cmp", "immediate"],
        ),
        (
            "ip daddr 10.60.0.10 ip saddr != 10.50.0.0/17 jump mark-for-masquerade",
            ["payload", "cmp", "payload", "bitwise", "cmp", "immediate"],
        ),
        ("ip saddr 10.50.0.0/16 goto service-x", ["payload", "cmp", "immediate"]),
        ("update @affinity-x { ip saddr }", ["payload", "dynset"]),
        ("meta l4proto tcp dnat to 10.50.1.2:8080", ["meta", "cmp", "immediate", "immediate", "nat"]),
        ("meta l4proto udp dnat to 10.50.1.2:53", ["meta", "cmp", "immediate", "immediate", "nat"]),
        ("meta l4proto sctp dnat to 10.50.1.2:9", ["meta", "cmp", "immediate", "immediate", "nat"]),
        ("fib saddr type local jump mark-for-masquerade", ["fib", "cmp", "immediate"]),
        ("fib saddr type local goto service-x", ["fib", "cmp", "immediate"]),
        ("drop", ["immediate"]),
    ],
)
def test_every_rule_shape_compiles(rule, expected):
    assert names(rule) == expected


@pytest.mark.parametrize(
    "rule",
    [
        "ip saddr != { 192.0.2.0/24, 198.51.100.0/24 } drop",  # anonymous set: nft does it
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "ip daddr @cluster-ips reject",
        "meta mark set meta mark or 0x4000",
        "masquerade fully-random",
        "dnat to 10.50.1.2:8080",  # a port needs a transport protocol match first
        "meta l4proto tcp dnat to 10.50.1.2",
        "ip saddr 10.50.1.0/16 goto x",  # host bits set
        "ip saddr 2001:db8::1 goto x",
        "numgen random mod 3 == 3 goto x",
        "goto",
        "goto a b",
        "drop accept",
        'goto "quoted"',
        "update @aff { ip saddr } drop",
    ],
)
def test_unknown_shapes_are_left_to_nft(rule):
    assert compile_rule(rule) is None


def test_address_match_bytes():
    masked = compile_rule("ip saddr != 10.50.0.0/17 drop")
    assert masked is not None
    payload, bitwise, cmp, _ = masked
    # payload: dreg 1, network header, offset 12 (saddr), 4 bytes.
    assert attrs(payload.data) == [(1, b"\0\0\0\1"), (2, b"\0\0\0\1"), (3, b"\0\0\0\x0c"), (4, b"\0\0\0\4")]
    mask = dict(attrs(bitwise.data))[4]
    assert dict(attrs(mask))[1] == bytes([255, 255, 128, 0])
    cmp_attrs = dict(attrs(cmp.data))
    assert cmp_attrs[2] == b"\0\0\0\1"  # NFT_CMP_NEQ
    assert dict(attrs(cmp_attrs[3]))[1] == bytes([10, 50, 0, 0])
    aligned = compile_rule("ip daddr 10.60.0.0/24 drop")
    assert aligned is not None
    assert dict(attrs(aligned[0].data))[4] == b"\0\0\0\3"  # loads 3 bytes of daddr
    assert dict(attrs(dict(attrs(aligned[1].data))[3]))[1] == bytes([10, 60, 0])


def test_dnat_registers_hold_address_and_port_in_network_order():
    exprs = compile_rule("meta l4proto tcp dnat to 10.50.1.2:8080")
    assert exprs is not None
    addr, port = (dict(attrs(dict(attrs(e.data))[2]))[1] for e in exprs[2:4])
    assert addr == bytes([10, 50, 1, 2])
    assert port == b"\x1f\x90"


def test_concatenated_keys_pad_every_field_to_four_bytes():
    assert encode_key(SERVICE_KEY, "10.60.0.10 . tcp . 80") == bytes.fromhex("0a3c000a" "06000000" "00500000")
    assert encode_key(NODEPORT_KEY, "sctp . 30081") == bytes.fromhex("84000000" "75810000")
    assert encode_key(NODEPORT_KEY, "udp . 53") == bytes.fromhex("11000000" "00350000")
    assert encode_key("ipv4_addr", "172.30.0.2") == bytes([172, 30, 0, 2])
    # A lone field is not padded.
    assert encode_key("inet_service", "443") == b"\x01\xbb"
    assert encode_key(SERVICE_KEY, "10.60.0.10 . tcp") is None
    assert encode_key(SERVICE_KEY, "10.60.0.10 . icmp . 80") is None
    assert encode_key(NODEPORT_KEY, "tcp . 70000") is None


def test_verdict_values():
    # NFTA_SET_ELEM_DATA { NFTA_DATA_VERDICT { code, chain } }, codes as in nf_tables.h.
    goto = tree(encode_map_value("goto service-x"))
    assert goto == [(2, [(2, [(1, struct.pack(">i", -4)), (2, b"service-x\0")])])]
    jump = tree(encode_map_value("jump reject-chain"))
    assert jump == [(2, [(2, [(1, struct.pack(">i", -3)), (2, b"reject-chain\0")])])]
    assert tree(encode_map_value("drop")) == [(2, [(2, [(1, b"\0\0\0\0")])])]
    assert tree(encode_map_value("accept")) == [(2, [(2, [(1, b"\0\0\0\1")])])]
    assert encode_map_value("return") is None
    assert encode_map_value("goto") is None


@pytest.mark.skipif(sys.byteorder != "little", reason="netlink headers are in host byte order")
def test_map_element_bytes():
    service_ips = NamedSet("service-ips", SERVICE_KEY, "verdict")
    element = compile_element(service_ips, "10.60.0.10 . udp . 53", "drop")
    assert element == bytes.fromhex(
        "28000180"  # NFTA_LIST_ELEM (nested), 40 bytes
        "14000180" "10000100" "0a3c000a" "11000000" "00350000"  # KEY { VALUE 12 bytes }
        "10000280" "0c000280" "08000100" "00000000"  # DATA { VERDICT { CODE NF_DROP } }
    )
    # Deletes send the key only.
    assert compile_element(service_ips, "10.60.0.10 . udp . 53") == bytes.fromhex(
        "18000180" "14000180" "10000100" "0a3c000a" "11000000" "00350000"
    )
    cluster_ips = NamedSet("cluster-ips", "ipv4_addr")
    assert compile_element(cluster_ips, "10.60.0.10") == bytes.fromhex("10000180" "0c000180" "08000100" "0a3c000a")
    assert compile_element(cluster_ips, "10.60.0.10", "drop") is None  # a set has no values
    assert compile_element(service_ips, "10.60.0.10 . udp . 53", "return") is None


def test_affinity_sets_compile_and_other_sets_do_not():
    aff = compile_set(NamedSet("affinity-x", "ipv4_addr", flags=("dynamic", "timeout"), timeout=10800))
    assert aff is not None
    fields = dict(attrs(aff))
    assert fields[3] == struct.pack(">I", 0x30)  # NFT_SET_TIMEOUT | NFT_SET_EVAL
    assert fields[4] == struct.pack(">I", 7) and fields[5] == struct.pack(">I", 4)  # ipv4_addr, 4 bytes
    assert fields[11] == struct.pack(">Q", 10800 * 1000)  # milliseconds
    assert compile_set(NamedSet("service-ips", SERVICE_KEY, "verdict")) is None
    assert compile_set(NamedSet("cluster-ips", "ipv4_addr", comment="Active ClusterIPs")) is None
    assert compile_set(NamedSet("x", "ipv4_addr", flags=("interval",))) is None


def test_batch_follows_render_diff_order():
    """Every netlink operation is the nft command render_diff writes at the same position."""
    old = desired_ruleset(
        [svc("web", type="NodePort", nodePort=30080), svc("gone", ip="10.60.0.11")],
        [eps("web", ep("10.50.1.2")), eps("gone", ep("10.50.1.9"))],
        NODE,
    )
    new = desired_ruleset(
        [svc("web", type="NodePort", nodePort=30080, sessionAffinity="ClientIP"), svc("added", ip="10.60.0.12")],
        [eps("web", ep("10.50.1.2"), ep("10.50.2.2", "n2")), eps("added", ep("10.50.1.7"))],
        NODE,
    )
    d = diff(old, new)
    assert d is not None and d.new_sets and d.stale_chains and d.element_deletes and d.element_adds
    batch = netlink_batch(d, new, "t")
    assert batch is not None
    lines = render_diff(d, new, "t").splitlines()
    ops = [m.what for m in batch.messages]
    # Element commands are summarised differently; everything else is word for word.
    assert [x for x in ops if " element " not in x] == [x for x in lines if " element " not in x]
    assert [x.split(" {")[0] for x in ops] == [x.split(" {")[0] for x in lines]


def test_batch_falls_back_when_any_rule_does_not_compile():
    s = svc(
        "fw", type="LoadBalancer", nodePort=30087, loadBalancerSourceRanges=["192.0.2.0/24"],
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}},
    )
    old = desired_ruleset([], [], NODE)
    new = desired_ruleset([s], [eps("fw", ep("10.50.1.2"))], NODE)
    d = diff(old, new)
    assert d is not None
    assert netlink_batch(d, new, "t") is None  # the firewall chain's anonymous set


def test_large_element_lists_are_split_across_messages():
    m = NamedSet("service-ips", SERVICE_KEY, "verdict")
    elements = [compile_element(m, f"10.60.{i // 250}.{i % 250} . tcp . 80", "goto x") for i in range(3000)]
    b = Batch("t")
    b.add_elements("service-ips", elements)  # type: ignore[arg-type]
    assert len(b) > 1
    assert all(len(msg.payload) < 65536 for msg in b.messages)
