"""Workloads in a real cluster: `skiff up` time, pod start latency, pod-to-pod TCP throughput.

Run as root: .venv/bin/python bench/cluster_workloads.py [--clusters 3] [--pods 100] [--rate 10] [--seconds 3]
             [--pods-only] [--no-fork-server]

Each figure is printed next to a baseline measured in the same run:
- `skiff up` (3 nodes, to all nodes Ready; median of N fresh clusters) vs the kernel plumbing alone:
  the same number of bare network namespaces + macvlans on a bridge created with `ip`, so the ratio
  is the cost of everything Skiff does on top (control plane, agents, nftables, system pods).
- pod start: bare hello-app pods POSTed through the API while a watch runs, once the cluster's
  system pods are Ready (as after `skiff up --wait`): first all at once (a burst), then at a
  steady pace (--rate per second); each pod's latency is taken client-side from
  its ADDED event to its first Ready=True event (the API's timestamps are whole seconds).
  POST-sent -> Ready is printed too. The burst's namespace is gone before the paced run starts.
  --no-fork-server starts the cluster with SKIFF_FORK_SERVER=off (built-ins via nsenter), the
  "before" of the node agent's fork server.
- TCP throughput from a pod on one node to a pod on another vs the same sender/receiver programs
  over 127.0.0.1 on the host.
Every cluster, namespace and process the bench starts is removed before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skiff.net import names  # noqa: E402
from tests.support import Cluster, free_port  # noqa: E402

HELLO = "gcr.io/google-samples/hello-app:1.0"

# Receiver: counts the bytes of each connection until EOF and answers with the count, so the
# sender's clock stops only once every byte has arrived.
SINK = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    buf = bytearray(1 << 20)
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    c.sendall(str(n).encode())
    c.close()
"""

SEND = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
data = memoryview(bytearray(1 << 20))
c = socket.create_connection((host, port))
sent = 0
t0 = time.perf_counter()
while time.perf_counter() - t0 < seconds:
    sent += c.send(data)
c.shutdown(socket.SHUT_WR)
got = int(c.recv(64) or 0)
elapsed = time.perf_counter() - t0
assert got == sent, (got, sent)
print(sent * 8 / elapsed / 1e9)
"""


# ---- small helpers shared with the other cluster benches -------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def api_session(cluster: Cluster, limit: int = 32) -> aiohttp.ClientSession:
    """An aiohttp session that talks to the cluster's API server with its CA and token."""
    cfg = cluster.cfg
    ctx = ssl.create_default_context(cafile=str(cluster.home / cluster.name / "pki" / "ca.crt"))
    return aiohttp.ClientSession(
        base_url=cfg.server_url, connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
        headers={"Authorization": f"Bearer {cfg.token}", "Content-Type": "application/json"})


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def pod_netns(pod: dict) -> str:
    node_ns = names.node_netns_name(pod["spec"]["nodeName"])
    meta = pod["metadata"]
    return names.pod_netns_name(node_ns, meta["namespace"], meta["name"], meta["uid"])


def wait_pods_ready(cluster: Cluster, selector: str, count: int, namespace: str = "default",
                    timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json"))["items"]
        ready = [p for p in items if is_ready(p) and not p["metadata"].get("deletionTimestamp")]
        if len(ready) >= count:
            return ready
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ready)}/{count} pods {selector} Ready after {timeout}s")
        time.sleep(0.1)


def check_root() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (skiff up creates network namespaces)")


# ---- skiff up vs the kernel plumbing alone ----------------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def bare_plumbing_seconds(nodes: int) -> float:
    """A port-less bridge, the host's macvlan on it with an address, and `nodes` namespaces each
    with a macvlan eth0 and an address, all up: what a cluster's node network is before any Skiff
    process runs (see skiff/net/plan.py)."""
    tag = secrets.token_hex(3)
    octet = int(tag[:2], 16) % 200 + 20
    bridge = f"skb{tag}br"
    spaces = [f"skbench-{tag}-{i}" for i in range(nodes)]
    t0 = time.perf_counter()
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "set", bridge, "up")
        ip("link", "add", f"skb{tag}h", "link", bridge, "type", "macvlan", "mode", "bridge")
        ip("addr", "add", f"172.31.{octet}.1/24", "dev", f"skb{tag}h")
        ip("link", "set", f"skb{tag}h", "up")
        for i, ns in enumerate(spaces):
            ip("netns", "add", ns)
            ip("link", "add", "eth0", "link", bridge, "netns", ns, "type", "macvlan", "mode", "bridge")
            ip("-n", ns, "addr", "add", f"172.31.{octet}.{i + 2}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return time.perf_counter() - t0
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)  # takes every macvlan along
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def skiff_up_seconds(cluster: Cluster) -> tuple[float, float]:
    """(wall time of the `skiff up` command, the time skiff reports as "Cluster ready in")."""
    cluster.up()
    m = re.search(r"Cluster ready in ([\d.]+)s", cluster.up_output)
    return cluster.up_seconds, float(m.group(1)) if m else float("nan")


# ---- pod start latency -----------------------------------------------------------------------


def settle(cluster: Cluster) -> None:
    """Pod start is measured on a cluster that is up: its system pods (DNS, Ingress controller)
    Ready and past their start-up, as after `skiff up --wait`, not while they still start."""
    cluster.kubectl("wait", "--for=condition=Ready", "pods", "--all", "-n", "skiff-system", "--timeout=50s")
    time.sleep(1.0)


async def pod_start_latency(cluster: Cluster, n: int, rate: float | None = None
                            ) -> tuple[list[float], list[float], float, float]:
    """(ADDED->Ready per pod, POST sent->Ready per pod, seconds until the first and until all were
    Ready, from the first POST). All POSTs at once, or `rate` per second."""
    ns = f"bench-{secrets.token_hex(3)}"
    posted: dict[str, float] = {}
    added: dict[str, float] = {}
    ready: dict[str, float] = {}
    async with api_session(cluster) as s:
        async with s.post("/api/v1/namespaces", data=json.dumps({"metadata": {"name": ns}})) as r:
            if r.status != 201:
                raise RuntimeError(f"namespace create: {r.status} {await r.text()}")
        base = f"/api/v1/namespaces/{ns}/pods"
        async with s.get(base) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        async with s.get(base, params={"watch": "true", "resourceVersion": rv},
                         timeout=aiohttp.ClientTimeout(total=None)) as w:
            async def create(i: int) -> None:
                if rate:
                    await asyncio.sleep(max(0.0, t_start + i / rate - time.perf_counter()))
                name = f"p{i:03d}"
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "start"}},
                       "spec": {"containers": [{"name": "hello", "image": HELLO,
                                                "ports": [{"containerPort": 8080}]}]}}
                posted[name] = time.perf_counter()
                async with s.post(base, data=json.dumps(pod)) as r:
                    if r.status != 201:
                        raise RuntimeError(f"pod create: {r.status} {await r.text()}")
                    await r.read()

            t_start = time.perf_counter()
            creates = asyncio.gather(*(create(i) for i in range(n)))
            deadline = time.monotonic() + 60 + (n / rate if rate else 0)
            while len(ready) < n:
                line = await asyncio.wait_for(w.content.readline(), max(0.1, deadline - time.monotonic()))
                now = time.perf_counter()
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                if ev["type"] == "ADDED":
                    added.setdefault(name, now)
                elif ev["type"] == "MODIFIED" and name not in ready and is_ready(ev["object"]):
                    ready[name] = now
            all_ready = time.perf_counter() - t_start
            await creates
        async with s.delete(f"/api/v1/namespaces/{ns}") as r:
            await r.read()
        # Its pods' teardown must not weigh on the next measurement.
        gone_by = time.monotonic() + 90
        while time.monotonic() < gone_by:
            async with s.get(f"/api/v1/namespaces/{ns}") as r:
                await r.read()
                if r.status == 404:
                    break
            await asyncio.sleep(0.2)
    first_ready = min(ready.values()) - t_start
    return ([ready[k] - added[k] for k in ready], [ready[k] - posted[k] for k in ready], first_ready, all_ready)


# ---- pod-to-pod TCP throughput ---------------------------------------------------------------


def send_gbps(argv_prefix: list[str], host: str, port: int, seconds: float) -> float:
    out = subprocess.run([*argv_prefix, sys.executable, "-c", SEND, host, str(port), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"sender failed: {out.stderr}")
    return float(out.stdout.strip())


def throughput(cluster: Cluster, seconds: float, rounds: int) -> tuple[list[float], list[float]]:
    """(cross-node pod-to-pod Gbit/s per round, loopback Gbit/s per round), rounds interleaved."""
    cfg = cluster.cfg
    port = 5201
    manifest = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tput-sink", "labels": {"bench": "tput"}},
         "spec": {"nodeName": cfg.node_name(1), "containers": [{
             "name": "sink", "image": "python:3.11", "command": ["python3", "-c", SINK, "0.0.0.0", str(port)],
             "ports": [{"containerPort": port}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tput-client", "labels": {"bench": "tput"}},
         "spec": {"nodeName": cfg.node_name(2), "containers": [{
             "name": "pause", "image": "registry.k8s.io/pause:3.10"}]}},
    ]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifest))
    pods = {p["metadata"]["name"]: p for p in wait_pods_ready(cluster, "bench=tput", 2)}
    sink_ip = pods["tput-sink"]["status"]["podIP"]
    client_ns = pod_netns(pods["tput-client"])
    lo_port = free_port()
    local = subprocess.Popen([sys.executable, "-c", SINK, "127.0.0.1", str(lo_port)], stdout=subprocess.PIPE,
                             text=True)
    try:
        local.stdout.readline()
        pod_runs, lo_runs = [], []
        for _ in range(rounds):
            pod_runs.append(send_gbps(["ip", "netns", "exec", client_ns], sink_ip, port, seconds))
            lo_runs.append(send_gbps([], "127.0.0.1", lo_port, seconds))
        return pod_runs, lo_runs
    finally:
        local.terminate()
        local.wait(5)
        cluster.kubectl("delete", "pods", "-l", "bench=tput", "--wait=false", check=False)


def print_pod_start(label: str, added_ready: list[float], posted_ready: list[float], first_ready: float,
                    all_ready: float) -> None:
    p50, p99 = statistics.median(added_ready), pct(added_ready, 0.99)
    print(f"pod start, {len(added_ready)} pods {label + ', ADDED->Ready:':27} p50 {p50 * 1000:7.0f} ms   "
          f"p99 {p99 * 1000:7.0f} ms   (target p99 < 1 s: {'met' if p99 < 1 else 'NOT met'})")
    print(f"{'  POST sent->Ready:':48} p50 {statistics.median(posted_ready) * 1000:7.0f} ms"
          f"   p99 {pct(posted_ready, 0.99) * 1000:7.0f} ms")
    print(f"  from the first POST: first pod Ready after {first_ready:.2f} s, all {len(added_ready)} after "
          f"{all_ready:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=3, help="fresh 3-node clusters to time")
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="pods per second in the paced run")
    ap.add_argument("--seconds", type=float, default=2.0, help="per throughput round")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (interleaved, median)")
    ap.add_argument("--pods-only", action="store_true", help="one cluster, pod start latency only")
    ap.add_argument("--no-fork-server", action="store_true",
                    help="agents start built-in images with nsenter (SKIFF_FORK_SERVER=off)")
    args = ap.parse_args()
    check_root()
    if args.no_fork_server:
        os.environ["SKIFF_FORK_SERVER"] = "off"  # inherited by `skiff up` and its node agents
    clusters = 1 if args.pods_only else args.clusters

    ups, reported, bare = [], [], []
    pod_gbps = lo_gbps = None
    cluster = None
    try:
        for i in range(clusters):
            bare.append(bare_plumbing_seconds(3))
            cluster = Cluster(nodes=3)
            wall, rep = skiff_up_seconds(cluster)
            ups.append(wall)
            reported.append(rep)
            if i < clusters - 1:
                cluster.down()
                cluster = None
        # The last cluster stays up for the pod measurements; the quiet one (throughput) goes first.
        if not args.pods_only:
            pod_gbps, lo_gbps = throughput(cluster, args.seconds, args.rounds)
        settle(cluster)
        burst = asyncio.run(pod_start_latency(cluster, args.pods))
        paced = asyncio.run(pod_start_latency(cluster, args.pods, args.rate))
    finally:
        if cluster is not None:
            cluster.down()

    up, base = statistics.median(ups), statistics.median(bare)
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} CPUs; built-in images started by "
          f"{'nsenter (SKIFF_FORK_SERVER=off)' if args.no_fork_server else 'the fork server'}")
    print(f"{'measure':46} {'value':>12} {'baseline':>12} {'ratio':>8}")
    print(f"{'skiff up, 3 nodes Ready (median of ' + str(len(ups)) + ')':46} {up:11.2f}s {base:11.3f}s "
          f"{up / base:8.1f}   (baseline: bare netns+macvlan+bridge with ip)")
    print(f"{'  as reported by skiff (Cluster ready in)':46} {statistics.median(reported):11.2f}s")
    print(f"  target skiff up < 2 s: {'met' if up < 2 else 'NOT met'}   runs: "
          + " ".join(f"{u:.2f}" for u in ups))
    print_pod_start("burst", *burst)
    print_pod_start(f"at {args.rate:g}/s", *paced)
    if pod_gbps is not None and lo_gbps is not None:
        pg, lg = statistics.median(pod_gbps), statistics.median(lo_gbps)
        print(f"{'TCP pod->pod across nodes vs host loopback':46} {pg:8.2f}Gb/s {lg:8.2f}Gb/s {pg / lg:8.2f}   "
              f"(median of {args.rounds} x {args.seconds:g} s, one Python stream)")


if __name__ == "__main__":
    main()
