"""Partial syncs through raw nf_tables netlink against the real kernel and nft (root needed).

Everything happens in a scratch network namespace with a random name, deleted afterwards
(its nftables tables go with it). What is compared is what a user sees: `nft list` output of
what netlink created against what `nft -f` created from the same text.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import subprocess

import pytest

from skiff.proxy.expressions import compile_element, compile_rule, compile_set
from skiff.proxy.model import NamedSet, NodeContext
from skiff.proxy.netlink import Batch, NetlinkError, NftSocket
from skiff.proxy.nft import NftApplier
from skiff.proxy.rules import NODEPORT_KEY, SERVICE_KEY, desired_ruleset

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")

NODE = NodeContext("n1", ("172.30.0.2",), "10.50.0.0/16", service_cidr="10.60.0.0/24")

# Every rule shape rules.py emits in per-Service chains (and the prefix variants nft encodes differently).
SHAPES = [
    "ip saddr @aff goto target",
    "numgen random mod 3 == 0 goto target",
    "numgen random mod 2 == 0 goto target",
    "goto target",
    "jump mark-for-masquerade",
    "ip saddr 10.50.1.2 jump mark-for-masquerade",
    "ip daddr 10.60.0.10 jump mark-for-masquerade",
    "ip daddr 10.60.0.10 ip saddr != 10.50.0.0/16 jump mark-for-masquerade",
    "ip daddr 10.60.0.10 ip saddr != 10.50.0.0/17 jump mark-for-masquerade",
    "ip daddr 10.60.0.10 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
    "ip saddr 10.50.0.0/16 goto target",
    "ip saddr 10.128.0.0/9 goto target",
    "ip saddr 10.50.1.0/24 goto target",
    "ip saddr 10.50.1.7/32 goto target",
    "update @aff { ip saddr }",
    "meta l4proto tcp dnat to 10.50.1.2:8080",
    "meta l4proto udp dnat to 10.50.1.2:53",
    "meta l4proto sctp dnat to 10.50.1.2:9",
    "fib saddr type local jump mark-for-masquerade",
    "fib saddr type local goto target",
    "drop",
]


def sh(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), input=stdin, check=check, capture_output=True, text=True)


@pytest.fixture
def netns():
    name = f"skpxnl-{secrets.token_hex(4)}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def nft(ns: str, script: str) -> None:
    sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=script)


def nft_list(ns: str, *what: str) -> str:
    return sh("ip", "netns", "exec", ns, "nft", *what).stdout


def bytecode(ns: str, chain: str) -> str:
    """The chain's rules as the kernel stores them, without handles."""
    out = nft_list(ns, "--debug=netlink", "list", "chain", "ip", "t", chain)
    body = [line for line in out.splitlines() if line.startswith("  [")]
    return "\n".join(body)


def commit(ns: str, batch: Batch) -> None:
    sock = NftSocket(ns)
    try:
        sock.commit(batch)
    finally:
        sock.close()


BASE = """
add table ip t
add set ip t aff { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }
add chain ip t mark-for-masquerade
add chain ip t target
add chain ip t via-netlink
add chain ip t via-nft
"""


def test_every_rule_shape_lists_as_nft_lists_it(netns):
    nft(netns, BASE)
    b = Batch("t")
    for rule in SHAPES:
        exprs = compile_rule(rule)
        assert exprs is not None, rule
        b.add_rule("via-netlink", exprs, rule)
    commit(netns, b)
    nft(netns, "".join(f"add rule ip t via-nft {rule}\n" for rule in SHAPES))
    listed = nft_list(netns, "list", "chain", "ip", "t", "via-netlink")
    expected = nft_list(netns, "list", "chain", "ip", "t", "via-nft").replace("chain via-nft", "chain via-netlink")
    assert listed == expected
    assert listed.count("\n\t\t") == len(SHAPES)
    assert bytecode(netns, "via-netlink") == bytecode(netns, "via-nft")


def test_affinity_set_lists_as_nft_lists_it(netns):
    nft(netns, BASE)
    s = NamedSet("aff-netlink", "ipv4_addr", flags=("dynamic", "timeout"), timeout=10800)
    b = Batch("t")
    b.new_set(s.name, compile_set(s))  # type: ignore[arg-type]
    # The set is usable by rules later in the same batch.
    b.add_rule("via-netlink", compile_rule("update @aff-netlink { ip saddr }"))  # type: ignore[arg-type]
    b.add_rule("via-netlink", compile_rule("ip saddr @aff-netlink goto target"))  # type: ignore[arg-type]
    commit(netns, b)
    nft(netns, f"add set ip t aff-nft {s.body()}\nadd rule ip t via-nft update @aff-nft {{ ip saddr }}\n")
    listed = nft_list(netns, "list", "set", "ip", "t", "aff-netlink")
    # (The kernel sizes a set that a dynset updates at 65535 unless it has a size.)
    assert "flags dynamic,timeout" in listed and "timeout 3h" in listed and "size 65535" in listed
    assert listed == nft_list(netns, "list", "set", "ip", "t", "aff-nft").replace("aff-nft", "aff-netlink")
    assert "update @aff-netlink { ip saddr }" in nft_list(netns, "list", "chain", "ip", "t", "via-netlink")


def test_elements_with_concatenated_keys_and_verdicts(netns):
    nft(netns, BASE + "".join(
        f"add map ip t {name}-{way} {{ type {key} : verdict ; }}\n"
        for name, key in (("svc", SERVICE_KEY), ("np", NODEPORT_KEY)) for way in ("netlink", "nft")
    ) + "add set ip t ips-netlink { type ipv4_addr ; }\nadd set ip t ips-nft { type ipv4_addr ; }\n")
    elements = {
        ("svc", SERVICE_KEY): [
            ("10.60.0.10 . tcp . 80", "goto target"),
            ("10.60.0.11 . udp . 53", "jump mark-for-masquerade"),
            ("10.60.0.12 . sctp . 9", "drop"),
            ("10.60.0.13 . tcp . 65535", "accept"),
        ],
        ("np", NODEPORT_KEY): [("tcp . 30080", "goto target"), ("udp . 30081", "drop"), ("sctp . 30082", "accept")],
        ("ips", "ipv4_addr"): [("172.30.0.2", ""), ("10.60.0.10", "")],
    }

    def apply(verb: str, items_for) -> None:
        b = Batch("t")
        script = []
        for (name, key), items in elements.items():
            items = items_for(items)
            s = NamedSet(f"{name}-netlink", key, "verdict" if name != "ips" else None)
            encoded = [compile_element(s, k, v if verb == "add" else "") for k, v in items]
            assert None not in encoded
            (b.add_elements if verb == "add" else b.delete_elements)(s.name, encoded)  # type: ignore[arg-type]
            texts = [f"{k} : {v}" if v and verb == "add" else k for k, v in items]
            script.append(f"{verb} element ip t {name}-nft {{ {', '.join(texts)} }}")
        commit(netns, b)
        nft(netns, "\n".join(script) + "\n")

    def same() -> None:
        for name, _ in elements:
            listed = nft_list(netns, "list", "set" if name == "ips" else "map", "ip", "t", f"{name}-netlink")
            expected = nft_list(netns, "list", "set" if name == "ips" else "map", "ip", "t", f"{name}-nft")
            assert listed == expected.replace(f"{name}-nft", f"{name}-netlink")

    apply("add", lambda items: items)
    same()
    listed = nft_list(netns, "list", "map", "ip", "t", "svc-netlink")
    assert "10.60.0.11 . udp . 53 : jump mark-for-masquerade" in listed
    assert "10.60.0.10 . tcp . 80 : goto target" in listed
    apply("delete", lambda items: items[:2])
    same()
    listed = nft_list(netns, "list", "map", "ip", "t", "svc-netlink")
    assert "10.60.0.10" not in listed and "10.60.0.12 . sctp . 9 : drop" in listed


def test_chain_flush_and_delete(netns):
    nft(netns, BASE + "add rule ip t via-netlink goto target\nadd rule ip t via-netlink drop\n")
    b = Batch("t")
    b.flush_chain("via-netlink")
    commit(netns, b)
    assert nft_list(netns, "list", "chain", "ip", "t", "via-netlink").count("\n\t\t") == 0
    b = Batch("t")
    b.new_chain("fresh")
    b.add_rule("fresh", compile_rule("goto target"))  # type: ignore[arg-type]
    b.flush_chain("target")
    b.delete_chain("via-nft")
    commit(netns, b)
    table = nft_list(netns, "list", "table", "ip", "t")
    assert "chain fresh {\n\t\tgoto target\n\t}" in table
    assert "via-nft" not in table
    b = Batch("t")
    b.flush_chain("fresh")
    b.delete_chain("fresh")
    commit(netns, b)
    assert "fresh" not in nft_list(netns, "list", "table", "ip", "t")


def test_failed_batch_applies_nothing_and_names_the_operation(netns):
    nft(netns, BASE + "add map ip t svc { type " + SERVICE_KEY + " : verdict ; }\n")
    before = nft_list(netns, "list", "table", "ip", "t")
    svc = NamedSet("svc", SERVICE_KEY, "verdict")
    b = Batch("t")
    b.new_chain("half")
    b.add_rule("half", compile_rule("goto target"))  # type: ignore[arg-type]
    b.flush_chain("via-netlink")
    b.add_elements("svc", [compile_element(svc, "10.60.0.10 . tcp . 80", "goto half")])  # type: ignore[list-item]
    b.delete_chain("no-such-chain")
    sock = NftSocket(netns)
    try:
        with pytest.raises(NetlinkError) as info:
            sock.commit(b)
        assert info.value.errno == errno.ENOENT
        assert info.value.operation == "delete chain ip t no-such-chain"
        assert "delete chain ip t no-such-chain" in str(info.value)
        assert nft_list(netns, "list", "table", "ip", "t") == before
        # The socket stays usable after a refused batch.
        ok = Batch("t")
        ok.new_chain("after")
        sock.commit(ok)
    finally:
        sock.close()
    assert "chain after" in nft_list(netns, "list", "table", "ip", "t")


def test_a_verdict_to_a_missing_chain_is_refused(netns):
    nft(netns, BASE)
    b = Batch("t")
    b.add_rule("via-netlink", compile_rule("goto nowhere"), "goto nowhere")  # type: ignore[arg-type]
    with pytest.raises(NetlinkError) as info:
        commit(netns, b)
    assert info.value.operation == "add rule ip t via-netlink goto nowhere"


# --- NftApplier end to end ------------------------------------------------------------------------


def svc(name: str, ip: str, port: int = 80, proto: str = "TCP", **spec) -> dict:
    p = {"name": "http", "port": port, "protocol": proto, "targetPort": 8080}
    if "nodePort" in spec:
        p["nodePort"] = spec.pop("nodePort")
    status = spec.pop("status", {})
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"clusterIP": ip, "ports": [p], **spec}, "status": status}


def eps(name: str, *endpoints: tuple[str, str], proto: str = "TCP") -> dict:
    return {
        "metadata": {"namespace": "ns", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": proto}],
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": True}} for ip, node in endpoints],
    }


def normalized(listing: str, table: str) -> list[str]:
    """`nft list table` as sorted blocks: chains, sets and maps appear in creation order and
    elements in hash order, neither of which is part of the ruleset's meaning."""
    lines = listing.replace(table, "T").strip().splitlines()
    assert lines[0] == "table ip T {" and lines[-1] == "}", listing[:200]
    blocks = re.split(r"\n(?=\t(?:chain|set|map) )", "\n".join(lines[1:-1]))
    out = []
    for block in blocks:
        block = block.rstrip()
        m = re.search(r"elements = \{(.*?)\}", block, re.S)
        if m:
            items = sorted(x.strip() for x in m.group(1).split(","))
            block = block[: m.start()] + "elements = {" + ", ".join(items) + "}" + block[m.end():]
        out.append(block)
    return sorted(out)


async def test_applier_partial_syncs_via_netlink_match_full_syncs(netns):
    table, reference = f"skpx-nl-{secrets.token_hex(3)}", f"skpx-ref-{secrets.token_hex(3)}"
    applier = NftApplier(table, netns=netns)
    services = [
        svc("web", "10.60.0.10"),
        svc("np", "10.60.0.11", type="NodePort", nodePort=30080),
        svc("dns", "10.60.0.12", port=53, proto="UDP"),
        svc("lb", "10.60.0.13", type="LoadBalancer", nodePort=30081,
            status={"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}),
    ]
    slices = [
        eps("web", ("10.50.1.2", "n1"), ("10.50.2.2", "n2")),
        eps("np", ("10.50.1.3", "n1"), ("10.50.2.3", "n2")),
        eps("dns", ("10.50.2.4", "n2"), proto="UDP"),
        eps("lb", ("10.50.2.5", "n2")),
    ]

    async def check(expect_via: str | None = "netlink") -> None:
        rs = desired_ruleset(services, slices, NODE)
        result = await applier.sync(rs)
        assert result.kind == ("full" if expect_via is None else "partial")
        if expect_via:
            assert result.via == expect_via, result.transaction
        ref = NftApplier(reference, netns=netns)
        assert (await ref.sync(rs)).kind == "full"
        assert normalized(await applier.list_table(), table) == normalized(await ref.list_table(), reference)

    def replace(name: str, new: dict, objs: list[dict]) -> None:
        objs[:] = [o for o in objs if o["metadata"]["name"] not in (name, f"{name}-1")] + [new]

    try:
        await check(None)
        # An endpoint appears, another disappears.
        replace("web", eps("web", ("10.50.1.2", "n1"), ("10.50.2.2", "n2"), ("10.50.1.9", "n1")), slices)
        await check()
        replace("web", eps("web", ("10.50.1.9", "n1")), slices)
        await check()
        # Session affinity: new dynamic sets and the rules that update and consult them.
        replace("web", svc("web", "10.60.0.10", sessionAffinity="ClientIP",
                           sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}), services)
        await check()
        assert "affinity-" in applier.last_result.transaction
        # externalTrafficPolicy Local: fib and pod-CIDR rules, a local chain.
        replace("np", svc("np", "10.60.0.11", type="NodePort", nodePort=30080, externalTrafficPolicy="Local"), services)
        await check()
        # All endpoints gone: the service moves to the no-endpoint maps.
        replace("dns", eps("dns", proto="UDP"), slices)
        await check()
        # A service with affinity is deleted: its chains and sets go.
        services = [s for s in services if s["metadata"]["name"] != "web"]
        slices = [s for s in slices if s["metadata"]["name"] != "web-1"]
        await check()
        assert "delete set" in applier.last_result.transaction
        # Source ranges need an anonymous set, which only nft writes; the result is the same.
        replace("lb", svc("lb", "10.60.0.13", type="LoadBalancer", nodePort=30081,
                          loadBalancerSourceRanges=["198.51.100.0/24"],
                          status={"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}), services)
        await check("nft")
        # And back to netlink for the next ordinary change.
        replace("np", eps("np", ("10.50.1.3", "n1")), slices)
        await check()
    finally:
        await applier.delete_table()
        await NftApplier(reference, netns=netns).delete_table()
    assert table not in nft_list(netns, "list", "tables")


async def test_applier_recovers_when_the_kernel_state_drifted(netns):
    """A partial batch the kernel refuses falls back to nft and then to a full sync."""
    table = f"skpx-nl-{secrets.token_hex(3)}"
    applier = NftApplier(table, netns=netns)
    services = [svc("web", "10.60.0.10")]
    slices = [eps("web", ("10.50.1.2", "n1"))]
    try:
        assert (await applier.sync(desired_ruleset(services, slices, NODE))).kind == "full"
        # Someone removes an element behind the applier's back; the next diff deletes it again.
        nft(netns, f"delete element ip {table} service-ips {{ 10.60.0.10 . tcp . 80 }}\n")
        result = await applier.sync(desired_ruleset([], [], NODE))
        assert result.kind == "full"
        assert "10.60.0.10" not in await applier.list_table()
        result = await applier.sync(desired_ruleset(services, slices, NODE))
        assert (result.kind, result.via) == ("partial", "netlink")
        assert "10.60.0.10 . tcp . 80 : goto service-" in await applier.list_table()
    finally:
        await applier.delete_table()


async def test_applier_follows_a_namespace_created_again_under_the_same_name(netns):
    """nft resolves the namespace by name on every call; the kept socket must not stay behind in
    a deleted namespace and report success there."""
    table = f"skpx-nl-{secrets.token_hex(3)}"
    applier = NftApplier(table, netns=netns)
    services = [svc("web", "10.60.0.10")]
    try:
        assert (await applier.sync(desired_ruleset(services, [eps("web", ("10.50.1.2", "n1"))], NODE))).kind == "full"
        result = await applier.sync(desired_ruleset(services, [eps("web", ("10.50.1.3", "n1"))], NODE))
        assert (result.kind, result.via) == ("partial", "netlink")
        sh("ip", "netns", "del", netns)
        sh("ip", "netns", "add", netns)
        result = await applier.sync(desired_ruleset(services, [eps("web", ("10.50.1.4", "n1"))], NODE))
        assert result.kind == "full"
        assert "dnat to 10.50.1.4:8080" in await applier.list_table()
    finally:
        await applier.delete_table()
