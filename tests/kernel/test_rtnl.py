"""Pod networks made with in-process rtnetlink (skiff.net.rtnl) against the real kernel (root needed).

Everything happens in scratch network namespaces with random names, deleted afterwards (their
links, addresses and routes go with them). What is checked is what a user sees: `ip -j` output,
compared with what `ip -batch` makes from create_sandbox's commands, and a real TCP connection.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial

import pytest

from skiff.net.ipcmd import ip_batch_sync
from skiff.net.names import ROUTE_PROTO
from skiff.net.ns import netns_path
from skiff.net.rtnl import Rtnl, RtnlError
from skiff.node.sandbox import ip_wiring, wire_pod_network

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

GATEWAY = "10.244.7.1"
POD_IP = "10.244.7.5"


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def ip_json(netns: str, *args: str) -> list[dict]:
    return json.loads(sh("ip", "-n", netns, "-j", *args).stdout or "[]")


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """Creates scratch namespaces on demand; deletes them all afterwards (veths go with them)."""
    created: list[str] = []

    def make() -> str:
        name = f"skrtnl-{secrets.token_hex(4)}"
        sh("ip", "netns", "add", name)
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            sh("ip", "netns", "del", name, check=False)
        left = set(created) & set(os.listdir("/run/netns"))
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    """Sockets and namespace fds pin a namespace after `ip netns del`: close them all at the end."""
    with ExitStack() as stack:
        yield stack


def open_netns_fd(stack: ExitStack, netns: str) -> int:
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    stack.callback(os.close, fd)
    return fd


def veth_pair(make_netns, closing: ExitStack, veth: str) -> tuple[str, str, int, Rtnl, Rtnl]:
    """Two scratch namespaces joined by veth `veth` <-> eth0 (up on the far side): (near namespace,
    far namespace, far side's namespace fd, Rtnl of the near side, Rtnl of the far side)."""
    node, pod = make_netns(), make_netns()
    pod_fd = open_netns_fd(closing, pod)
    a = closing.enter_context(Rtnl.in_netns(node))
    b = closing.enter_context(Rtnl.in_netns_fd(pod_fd, pod))
    a.add_veth(veth, "eth0", pod_fd)
    b.set_up("eth0")
    return node, pod, pod_fd, a, b


def pod_network_ip(node_ns: str, pod_ns: str, veth: str, ip: str, gateway: str) -> None:
    """The same with `ip`: the lines create_sandbox runs when it has no fork server."""
    node_lines, pod_lines = ip_wiring(pod_ns, veth, ip, gateway)
    ip_batch_sync(node_lines, node_ns)
    ip_batch_sync(pod_lines, pod_ns)


def node_setup_ip(node_ns: str, gateway: str) -> None:
    ip_batch_sync(["link set lo up", f"addr add {gateway}/32 dev lo"], node_ns)


def wait_for_carrier(netns: str, link: str, timeout: float = 3.0) -> None:
    """Carrier (operstate UP) follows a veth's IFF_UP asynchronously, in the kernel's linkwatch work."""
    deadline = time.monotonic() + timeout
    while ip_json(netns, "link", "show", link)[0]["operstate"] != "UP":
        assert time.monotonic() < deadline, f"{link} in {netns} has no carrier"
        time.sleep(0.01)


def visible_state(netns: str) -> dict:
    """Links (name, flags, state, IPv4 addresses) and IPv4 routes as `ip -j` shows them, minus the
    ifindexes and MAC addresses that differ between two otherwise identical setups."""
    links = sorted(
        (link["ifname"], tuple(sorted(link["flags"])), link["operstate"],
         tuple((a["local"], a["prefixlen"], a["scope"]) for a in link.get("addr_info", []) if a["family"] == "inet"))
        for link in ip_json(netns, "addr", "show")
    )
    routes = ip_json(netns, "-4", "route", "show")
    return {"links": links, "routes": routes}


def test_veth_across_namespaces_addresses_and_routes_show_as_ip_made_them(make_netns, closing):
    node, pod, pod_fd, a, b = veth_pair(make_netns, closing, "vethT0")
    wait_for_carrier(pod, "eth0")
    node_link = ip_json(node, "-d", "link", "show", "vethT0")[0]
    pod_link = ip_json(pod, "-d", "link", "show", "eth0")[0]
    assert node_link["linkinfo"]["info_kind"] == pod_link["linkinfo"]["info_kind"] == "veth"
    assert "UP" in node_link["flags"] and "UP" in pod_link["flags"]
    assert node_link["operstate"] == pod_link["operstate"] == "UP"  # both ends up: carrier on
    # Each end points at the other, across the namespaces.
    assert pod_link["link_index"] == node_link["ifindex"] and node_link["link_index"] == pod_link["ifindex"]
    assert a.link_index("vethT0") == node_link["ifindex"] and b.link_index("eth0") == pod_link["ifindex"]
    assert a.link_index("eth0") is None

    b.set_up("lo")
    assert "UP" in ip_json(pod, "link", "show", "lo")[0]["flags"]
    b.add_address("eth0", f"{POD_IP}/32")
    addrs = [x for x in ip_json(pod, "addr", "show", "dev", "eth0")[0]["addr_info"] if x["family"] == "inet"]
    assert [(x["local"], x["prefixlen"], x["scope"]) for x in addrs] == [(POD_IP, 32, "global")]

    a.add_route(f"{POD_IP}/32", dev="vethT0", scope="link", proto=ROUTE_PROTO)
    b.add_route(f"{GATEWAY}/32", dev="eth0", scope="link")
    b.add_route("default", via=GATEWAY, dev="eth0")
    assert [(r["dst"], r["dev"], r.get("scope"), r.get("protocol")) for r in ip_json(node, "-4", "route")] == [
        (POD_IP, "vethT0", "link", str(ROUTE_PROTO))
    ]
    assert {(r["dst"], r["dev"], r.get("scope"), r.get("gateway"), r.get("protocol")) for r in ip_json(pod, "-4", "route")} == {
        ("default", "eth0", None, GATEWAY, None),  # ip shows neither scope global nor proto boot
        (GATEWAY, "eth0", "link", None, None),
    }

    # The very same as create_sandbox's `ip -batch` commands make, seen from either side.
    node2, pod2 = make_netns(), make_netns()
    pod_network_ip(node2, pod2, "vethT0", POD_IP, GATEWAY)
    wait_for_carrier(pod2, "eth0")
    assert visible_state(pod) == visible_state(pod2)
    assert visible_state(node)["routes"] == visible_state(node2)["routes"]
    assert [link for link in visible_state(node)["links"] if link[0] == "vethT0"] == \
        [link for link in visible_state(node2)["links"] if link[0] == "vethT0"]


def test_sandbox_wiring_matches_ip(make_netns):
    """wire_pod_network (the node agent's way, pod side batched) against the `ip` lines."""
    node, pod, node2, pod2 = make_netns(), make_netns(), make_netns(), make_netns()
    wire_pod_network(node, pod, "vethB0", POD_IP, GATEWAY)
    pod_network_ip(node2, pod2, "vethB0", POD_IP, GATEWAY)
    for netns in (pod, pod2):
        wait_for_carrier(netns, "eth0")
    assert visible_state(pod) == visible_state(pod2)
    assert visible_state(node) == visible_state(node2)


def test_tcp_from_pod_to_node_through_the_veth(make_netns, closing):
    node, pod = make_netns(), make_netns()
    a = closing.enter_context(Rtnl.in_netns(node))
    a.set_up("lo")
    a.add_address("lo", f"{GATEWAY}/32")
    wire_pod_network(node, pod, "vethP0", POD_IP, GATEWAY)

    server = (
        "import socket\n"
        f"s = socket.create_server(({GATEWAY!r}, 8080))\n"
        "print('ready', flush=True)\n"
        "s.settimeout(10)\n"
        "c, peer = s.accept()\n"
        "c.sendall(('hello ' + peer[0]).encode())\n"
        "c.close()\n"
    )
    client = (
        "import socket\n"
        f"s = socket.create_connection(({GATEWAY!r}, 8080), timeout=5)\n"
        "print(s.recv(100).decode())\n"
    )
    listener = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", server],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        out = sh("ip", "netns", "exec", pod, sys.executable, "-c", client, timeout=20).stdout
        # The node saw the connection come from the pod's own address.
        assert out.strip() == f"hello {POD_IP}"
        assert listener.wait(timeout=10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_errors_name_the_operation_and_carry_the_errno(make_netns, closing):
    node, pod, pod_fd, a, b = veth_pair(make_netns, closing, "vethE0")
    b.add_address("eth0", f"{POD_IP}/32")

    with pytest.raises(RtnlError) as info:
        b.add_address("eth0", f"{POD_IP}/32")
    assert isinstance(info.value, OSError) and info.value.errno == errno.EEXIST
    assert str(info.value).startswith(f"ip -n {pod} addr add {POD_IP}/32 dev eth0: File exists")

    a.add_route(f"{POD_IP}/32", dev="vethE0", scope="link", proto=ROUTE_PROTO)
    with pytest.raises(RtnlError) as info:
        a.add_route(f"{POD_IP}/32", dev="vethE0", scope="link", proto=ROUTE_PROTO)
    assert info.value.errno == errno.EEXIST
    assert str(info.value).startswith(f"ip -n {node} route add {POD_IP}/32 dev vethE0 scope link proto 95: File exists")

    with pytest.raises(RtnlError) as info:
        a.add_veth("vethE0", "eth1", pod_fd)
    assert info.value.errno == errno.EEXIST and "link add vethE0 up type veth peer name eth1" in str(info.value)

    with pytest.raises(RtnlError) as info:
        b.add_route("10.244.9.0/24", dev="nosuchdev")
    assert info.value.errno == errno.ENODEV and "route add 10.244.9.0/24 dev nosuchdev" in str(info.value)

    # In a batch every request is tried; the first failure is raised once all have been answered.
    with pytest.raises(RtnlError) as info, b.batch():
        b.add_route(f"{GATEWAY}/32", dev="eth0", scope="link")
        b.add_address("eth0", f"{POD_IP}/32")
        b.add_route("default", via=GATEWAY, dev="eth0")
    assert info.value.errno == errno.EEXIST and "addr add" in str(info.value)
    assert {r["dst"] for r in ip_json(pod, "-4", "route")} == {GATEWAY, "default"}

    assert a.delete_link("nosuchlink") is False
    assert a.delete_link("vethE0") is True
    assert a.link_index("vethE0") is None and b.link_index("eth0") is None  # the peer went with it
    assert ip_json(node, "-4", "route") == []  # and the route through it
    with pytest.raises(FileNotFoundError):
        Rtnl.in_netns(f"skrtnl-missing-{secrets.token_hex(4)}")


def test_timing_of_one_pod_network_rtnl_vs_ip_batch(make_netns, capsys):
    """Not a pass/fail test: prints what one pod's network costs each way."""
    rounds = 30
    node = make_netns()
    node_setup_ip(node, GATEWAY)
    pods = [make_netns() for _ in range(2 * rounds)]
    samples: dict[str, list[tuple[float, float]]] = {"ip -batch x2": [], "wire_pod_network": []}

    def measure(label: str, fn: Callable[[], None]) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        # getrusage, not os.times: the latter counts children in 10 ms clock ticks.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        fn()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        samples[label].append((time.perf_counter() - t0, time.process_time() - c0 + children))

    # Interleaved, so that load from elsewhere on the machine hits both alike.
    for i in range(rounds):
        ips = [f"10.244.{8 + k}.{i + 2}" for k in range(2)]
        measure("ip -batch x2", partial(pod_network_ip, node, pods[2 * i], f"vethi{i}", ips[0], GATEWAY))
        measure("wire_pod_network", partial(wire_pod_network, node, pods[2 * i + 1], f"vethr{i}", ips[1], GATEWAY))

    assert len(ip_json(node, "-4", "route")) == 2 * rounds  # every pod got its route
    with capsys.disabled():
        print(f"\none pod's network ({rounds} pods each; wall / CPU incl. child processes, ms):")
        for label, values in samples.items():
            wall = [w * 1000 for w, _ in values]
            cpu = [c * 1000 for _, c in values]
            print(f"  {label:24s} wall median {statistics.median(wall):6.2f} mean {statistics.mean(wall):6.2f}"
                  f"   cpu median {statistics.median(cpu):6.2f} mean {statistics.mean(cpu):6.2f}")
