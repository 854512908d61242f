"""The cluster network in the kernel: bridge, node namespaces, routes; and its cleanup.

Needs root. Uses a random cluster name and unusual ranges so it can run beside other tests.
"""

import asyncio
import json
import os
import random
import socket
import subprocess
import time

import pytest

from skiff.config import ClusterConfig
from skiff.net import names
from skiff.net.cleanup import destroy_cluster_network, destroy_cluster_network_sync
from skiff.net.nodes import NetworkConflict, create_cluster_network, node_netns
from skiff.net.ns import PIN_ROOT, call_in_netns, list_netns, netns_pids, read_sysctl, run_in_netns_argv
from skiff.net.plan import overlapping_routes, plan_cluster_network
from tests.support import routed_networks, unrouted

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def random_config(nodes: int = 3) -> ClusterConfig:
    # Above 10.96.0.0/12 (10.96-10.111), the default service range, and clear of every range in use
    # (skiff refuses to overlap them; another test's cluster may be up).
    used = routed_networks()
    r = random.choice([r for r in range(112, 240) if unrouted(f"172.31.{r}.0/24", f"10.{r}.0.0/16", used=used)])
    return ClusterConfig(
        name=f"kt{random.randrange(16**5):05x}",
        nodes=nodes,
        node_cidr=f"172.31.{r}.0/24",
        pod_cidr=f"10.{r}.0.0/20",
        service_cidr=f"10.{r}.240.0/20",
    )


def leftovers(cfg: ClusterConfig) -> list[str]:
    tag = names.link_prefix(cfg.name)
    found = [ns for ns in list_netns() if names.belongs_to_cluster(cfg.name, ns)]
    found += [link for link in os.listdir("/sys/class/net") if link.startswith(tag)]
    routes = json.loads(subprocess.run(["ip", "-4", "-j", "route", "show", "proto", str(names.ROUTE_PROTO)],
                                       capture_output=True, text=True).stdout or "[]")
    found += [r["dst"] for r in routes
              if r.get("dev") in (names.bridge_name(cfg.name), names.host_link_name(cfg.name)) or r.get("metric") == names.service_route_metric(cfg.name)]
    found += [d for d in os.listdir("/etc/netns") if names.belongs_to_cluster(cfg.name, d)] \
        if os.path.isdir("/etc/netns") else []
    found += [d for d in os.listdir(PIN_ROOT) if names.belongs_to_cluster(cfg.name, d)] \
        if os.path.isdir(PIN_ROOT) else []
    found += [line.split()[4] for line in open("/proc/self/mountinfo")
              if line.split()[4].startswith(PIN_ROOT + "/") and names.belongs_to_cluster(
                  cfg.name, line.split()[4][len(PIN_ROOT) + 1:].split("/")[0])]
    return found


def route_get(dst: str, netns: str | None = None) -> subprocess.CompletedProcess:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["route", "get", dst]
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture
def cfg():
    cfg = random_config()
    try:
        yield cfg
    finally:
        destroy_cluster_network_sync(cfg.name)
        assert leftovers(cfg) == []


# ---- pure ---------------------------------------------------------------------------------------


def test_names_fit_linux_limits_and_never_claim_another_cluster():
    assert len(names.host_link_name("a-very-long1")) <= names.IFNAMSIZ
    assert len(names.bridge_name("x")) <= names.IFNAMSIZ
    c = ClusterConfig(name="a")
    assert node_netns(c, 0) == "skiff-a-control-plane"
    assert names.belongs_to_cluster("a", "skiff-a-worker2")
    assert names.belongs_to_cluster("a", "skiff-a-worker.default.web.1234abcd")
    for other in ("a-worker", "a-worker2-pod", "a-control", "ab"):
        oc = ClusterConfig(name=other, nodes=3)
        for i in range(3):
            ns = node_netns(oc, i)
            assert not names.belongs_to_cluster("a", ns), ns
            assert not names.belongs_to_cluster("a", names.pod_netns_name(ns, "default", "p", "u1"))
    long = names.pod_netns_name("skiff-a-worker", "ns" * 30, "p" * 253, "0123456789abcdef")
    assert len(long) <= 200 and long.endswith(".01234567")


def test_plan_routes_every_pod_cidr_and_nothing_outside():
    c = ClusterConfig(name="p", nodes=3)
    plan = plan_cluster_network(c)
    host = "\n".join(plan.host_lines)
    # One layer-2 segment of macvlans: the host's holds its address, each node's eth0 is made in place.
    assert f"addr add {c.host_ip}/16 dev {plan.host_link}" in host
    assert host.count(f"link {plan.bridge} netns ") == 3 and "veth" not in host
    for i in range(3):
        assert f"route add {c.node_pod_cidr(i)} via {c.node_ip(i)}" in host
    assert f"route add unreachable {c.service_cidr}" in host
    worker = plan.nodes[1]
    assert worker.pod_gateway == "10.244.1.1"
    node_routes = [line for line in worker.lines if line.startswith("route add")]
    assert sorted(r.split()[2] for r in node_routes) == ["10.244.0.0/24", "10.244.2.0/24", c.service_cidr]
    assert not any("default" in line for line in worker.lines)
    assert worker.sysctls == {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0"}


def test_overlapping_routes_are_reported():
    c = ClusterConfig(name="p")
    routes = [
        {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"},
        {"dst": "172.18.0.0/16", "dev": "br-123"},
        {"dst": "10.96.0.0/12", "type": "unreachable"},  # another cluster's service route: fine
        {"dst": "192.168.1.0/24", "dev": "eth0"},
    ]
    assert overlapping_routes(c, routes) == [
        "the node network 172.18.0.0/16 overlaps the existing route 172.18.0.0/16 dev br-123"
    ]


def test_a_loadbalancer_pool_outside_the_node_network_must_not_take_routed_addresses():
    # Another cluster's node network, and one of its LoadBalancer addresses (a host route via a node).
    routes = [{"dst": "172.31.77.0/24", "dev": "skabc"}, {"dst": "172.31.90.210", "gateway": "172.31.77.4", "dev": "skabc"}]
    inside = ClusterConfig(name="p", node_cidr="172.31.78.0/24", lb_pool="172.31.78.200-172.31.78.220")
    assert overlapping_routes(inside, routes) == []
    for pool in ("172.31.77.210-172.31.77.220", "172.31.90.208/29"):
        c = ClusterConfig(name="p", node_cidr="172.31.78.0/24", lb_pool=pool)
        assert len(overlapping_routes(c, routes)) == 1
        assert overlapping_routes(c, routes)[0].startswith(f"the LoadBalancer pool {pool} overlaps the existing route")


# ---- kernel -------------------------------------------------------------------------------------


@needs_root
async def test_create_is_fast_reaches_nodes_and_routes_services_nowhere(cfg):
    before_forward = open("/proc/sys/net/ipv4/ip_forward").read()
    started = time.perf_counter()
    await create_cluster_network(cfg)
    elapsed = time.perf_counter() - started
    print(f"create_cluster_network({cfg.nodes} nodes): {elapsed * 1000:.1f} ms")
    assert elapsed < 0.3

    # Idempotent: a second call sees a complete network and leaves it alone.
    await create_cluster_network(cfg)
    assert open("/proc/sys/net/ipv4/ip_forward").read() == before_forward

    for i in range(cfg.nodes):
        ns = node_netns(cfg, i)
        assert read_sysctl(ns, "net.ipv4.ip_forward") == "1"
        assert read_sysctl(ns, "net.ipv4.conf.all.send_redirects") == "0"
        assert "unreachable" not in route_get(cfg.kubernetes_service_ip, ns).stdout
        # Nodes have no default route: nothing leaves the machine through them.
        assert route_get("8.8.8.8", ns).returncode != 0

    host_route = route_get(cfg.kubernetes_service_ip)
    assert host_route.returncode != 0 and "No route to host" in host_route.stderr
    assert f"via {cfg.node_ip(1)}" in route_get(cfg.node_pod_cidr(1).replace(".0/24", ".9")).stdout

    # Real TCP: a listener in node 0, reached from the host and from node 1.
    server = call_in_netns(node_netns(cfg, 0), lambda: socket.create_server(("0.0.0.0", 0)))
    port = server.getsockname()[1]
    try:
        with socket.create_connection((cfg.node_ip(0), port), timeout=2):
            pass
        client = call_in_netns(node_netns(cfg, 1), lambda: socket.socket())
        with client:
            client.settimeout(2)
            client.connect((cfg.node_ip(0), port))
    finally:
        server.close()


@needs_root
async def test_destroy_kills_processes_and_is_safe_twice(cfg):
    await create_cluster_network(cfg)
    ns = node_netns(cfg, 2)
    proc = subprocess.Popen(run_in_netns_argv(ns, ["sleep", "300"]))
    try:
        for _ in range(100):
            if netns_pids([ns])[ns]:
                break
            await asyncio.sleep(0.01)
        assert netns_pids([ns])[ns] == [proc.pid]  # nsenter execs sleep: same pid
        # Only the network namespace differs from ours: the mount namespace is the host's.
        assert os.readlink(f"/proc/{proc.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        started = time.perf_counter()
        await destroy_cluster_network(cfg.name)
        print(f"destroy_cluster_network: {(time.perf_counter() - started) * 1000:.1f} ms")
        assert proc.wait(timeout=2) == -9
        assert leftovers(cfg) == []
        await destroy_cluster_network(cfg.name)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_root
async def test_pin_directories_share_one_tmpfs_that_goes_with_the_last(cfg):
    # Another cluster of this test run may hold /run/skiff: it must then stay, with its entries.
    others = os.listdir(PIN_ROOT) if os.path.isdir(PIN_ROOT) else []
    await create_cluster_network(cfg)
    try:
        dirs = [os.path.join(PIN_ROOT, node_netns(cfg, i)) for i in range(cfg.nodes)]
        # One private tmpfs per node inside the private tmpfs at /run/skiff (a pod sheds them all
        # with one unmount; mount namespaces can be pinned only on mounts that do not propagate).
        mounts = {line.split()[4]: line.split() for line in open("/proc/self/mountinfo")}
        for path in [PIN_ROOT, *dirs]:
            assert path in mounts and mounts[path][mounts[path].index("-") + 1] == "tmpfs", path
            assert not any(tag.startswith(("shared:", "master:")) for tag in mounts[path][6:mounts[path].index("-")])
        assert all(mounts[d][1] == mounts[PIN_ROOT][0] for d in dirs)  # mounted inside /run/skiff
    finally:
        await destroy_cluster_network(cfg.name)
    assert leftovers(cfg) == []
    if not others:
        assert not os.path.ismount(PIN_ROOT) and not os.path.exists(PIN_ROOT)
    else:
        assert os.path.ismount(PIN_ROOT) and set(os.listdir(PIN_ROOT)) >= set(others)


@needs_root
async def test_conflicting_ranges_are_refused_and_leave_nothing(cfg):
    await create_cluster_network(cfg)
    other = random_config(nodes=1)
    other.pod_cidr = cfg.pod_cidr
    try:
        with pytest.raises(NetworkConflict, match=f"pod network {cfg.pod_cidr} overlaps"):
            await create_cluster_network(other)
        assert leftovers(other) == []
    finally:
        destroy_cluster_network_sync(other.name)


@needs_root
async def test_partial_network_is_rebuilt(cfg):
    await create_cluster_network(cfg)
    subprocess.run(["ip", "netns", "del", node_netns(cfg, 1)], check=True)
    await create_cluster_network(cfg)
    assert read_sysctl(node_netns(cfg, 1), "net.ipv4.ip_forward") == "1"
    assert subprocess.run(["ip", "-n", node_netns(cfg, 1), "-br", "addr", "show", "eth0"],
                          capture_output=True, text=True).stdout.count(cfg.node_ip(1)) == 1
