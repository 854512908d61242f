"""Cluster DNS measured from inside a pod of a real cluster, with a pod-network baseline in the same run.

Run as root: .venv/bin/python bench/dns_cluster.py [--services 200] [--seconds 3] [--rounds 5] [--concurrency 32]

Starts a 2-node cluster (`tests.support.Cluster`), creates `--services` ClusterIP Services with a
named port in a namespace of their own, waits for the `coredns` Deployment to be Available, then
runs two pods: a `busybox sleep` client on the control-plane node and a `python` pod whose command
is a small asyncio UDP echo responder, on the node of the coredns pod used as the direct target
(one on the other node than the client if the scheduler put one there). The load generator of bench/dns_qps.py
(`concurrency` workers, one query in flight each, 80% A / 20% SRV questions for existing names,
every reply parsed, stop at `--queries` answers or `--seconds`) runs in the client pod's network
namespace (`ip netns exec`) against three targets, in interleaved rounds:

- the cluster DNS Service IP (10.96.0.10:53), through the nftables DNAT as a pod's resolver uses it;
- the UDP echo pod by pod IP: the baseline, what the pod network alone costs for this load;
- one coredns pod by pod IP (on the echo pod's node): DNS without the Service hop.

Prints q/s, p50, p99 (median round) per target and the ratios. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dns.message  # noqa: E402
import dns.rdatatype  # noqa: E402

from bench.dns_qps import _Client, load  # noqa: E402

NAMESPACE = "dnsbench"
ECHO_PORT = 5300

# The baseline responder, run as the python pod's command: the same asyncio datagram path as the
# DNS server's, minus parsing and answering.
ECHO = """
import asyncio, sys

class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

async def main():
    await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("0.0.0.0", int(sys.argv[1])))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def services(n: int) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i}", "namespace": NAMESPACE},
              "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
             for i in range(n)]


def query_mix(services: int, namespace: str = NAMESPACE, count: int = 2000, seed: int = 1) -> list[bytes]:
    """Wire-format questions for existing names: 80% A for a Service, 20% SRV for its named port."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        i = rng.randrange(services)
        if rng.random() < 0.8:
            q = dns.message.make_query(f"svc{i}.{namespace}.svc.cluster.local.", dns.rdatatype.A)
        else:
            q = dns.message.make_query(f"_http._tcp.svc{i}.{namespace}.svc.cluster.local.", dns.rdatatype.SRV)
        out.append(q.to_wire())
    return out


# ---- inside the client pod's network namespace ---------------------------------------------


async def probe(addr: tuple[str, int], wire: bytes, want_answer: bool, timeout: float) -> None:
    """Until `addr` gives a (non-empty, if `want_answer`) reply to `wire`: the server is up and
    has the whole zone, the DNAT rules are in place."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=addr)
        try:
            proto.waiter = loop.create_future()
            transport.sendto(wire)
            data = await asyncio.wait_for(proto.waiter, 0.2)
            if not want_answer or dns.message.from_wire(data).answer:
                return
        except TimeoutError:
            pass
        finally:
            transport.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{addr[0]}:{addr[1]} gave no good answer within {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def child_load(targets: dict[str, tuple[str, int, bool]], servers: list[str], services: int, rounds: int,
                     total: int, seconds: float, concurrency: int) -> dict[str, list[dict]]:
    queries = query_mix(services)
    last = dns.message.make_query(f"svc{services - 1}.{NAMESPACE}.svc.cluster.local.", dns.rdatatype.A).to_wire()
    # Every replica behind the Service must have the whole zone before its numbers count.
    for host in servers:
        await probe((host, 53), last, True, 30)
    for host, port, is_dns in targets.values():
        await probe((host, port), last, is_dns, 30)
    for host, port, is_dns in targets.values():
        await load((host, port), queries[:200], 2000, 1.0, concurrency, is_dns)  # warm-up
    results: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (host, port, is_dns) in targets.items():
            results[name].append(await load((host, port), queries, total, seconds, concurrency, is_dns))
    return results


# ---- the cluster side --------------------------------------------------------------------------


def wait_for(what: str, pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def coredns_available(cluster) -> bool:
    d = json.loads(cluster.kubectl("get", "deploy", "coredns", "-n", "kube-system", "-o", "json"))
    st = d.get("status", {})
    available = any(c["type"] == "Available" and c["status"] == "True" for c in st.get("conditions") or [])
    return available and st.get("availableReplicas", 0) == d["spec"]["replicas"]


def client_pod(node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "dnsbench-client", "namespace": NAMESPACE, "labels": {"bench": "dns"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}]}}


def echo_pod(node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "dnsbench-echo", "namespace": NAMESPACE, "labels": {"bench": "dns"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "echo", "image": "python:3.11",
                                     "command": ["python3", "-c", ECHO, str(ECHO_PORT)],
                                     "ports": [{"containerPort": ECHO_PORT, "protocol": "UDP"}]}]}}


async def create_services(cluster, objs: list[dict], parallel: int = 16) -> None:
    """POSTed concurrently: setup time, not what is measured."""
    from bench.cluster_workloads import api_session

    gate = asyncio.Semaphore(parallel)
    async with api_session(cluster, limit=parallel) as s:
        async def post(obj: dict) -> None:
            async with gate, s.post(f"/api/v1/namespaces/{NAMESPACE}/services", data=json.dumps(obj)) as r:
                if r.status != 201:
                    raise RuntimeError(f"create Service {obj['metadata']['name']}: {r.status} {await r.text()}")
                await r.read()

        await asyncio.gather(*(post(o) for o in objs))


def run_in_pod(netns: str, targets: dict[str, tuple[str, int, bool]], servers: list[str],
               args: argparse.Namespace) -> dict:
    spec = ",".join(f"{name}={host}:{port}:{int(is_dns)}" for name, (host, port, is_dns) in targets.items())
    argv = ["ip", "netns", "exec", netns, sys.executable, str(Path(__file__).resolve()), "--child", spec,
            "--servers", ",".join(servers),
            "--services", str(args.services), "--rounds", str(args.rounds), "--queries", str(args.queries),
            "--seconds", str(args.seconds), "--concurrency", str(args.concurrency)]
    budget = 30 + len(targets) * (2 + args.rounds * (args.seconds + 2))
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=budget)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed in {netns}:\n{out.stderr}")
    return json.loads(out.stdout)


def median_round(rounds: list[dict]) -> dict:
    return sorted(rounds, key=lambda r: r["qps"])[len(rounds) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--queries", type=int, default=20000, help="per target and round")
    ap.add_argument("--seconds", type=float, default=3.0, help="per target and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--child", help="(internal) name=host:port:is_dns,... to load from this netns")
    ap.add_argument("--servers", default="", help="(internal) every coredns pod IP, comma-separated")
    args = ap.parse_args()
    if args.services < 1 or args.rounds < 1:
        ap.error("--services and --rounds must be at least 1")
    if args.child:
        targets = {}
        for item in args.child.split(","):
            name, rest = item.split("=")
            host, port, is_dns = rest.split(":")
            targets[name] = (host, int(port), is_dns == "1")
        servers = [h for h in args.servers.split(",") if h]
        res = asyncio.run(child_load(targets, servers, args.services, args.rounds, args.queries, args.seconds,
                                     args.concurrency))
        print(json.dumps(res))
        return

    from bench.cluster_workloads import check_root, pod_netns, wait_pods_ready
    from tests.support import Cluster

    check_root()
    t0 = time.monotonic()
    cluster = Cluster(nodes=2)
    try:
        cluster.up()
        t_up = time.monotonic() - t0
        cfg = cluster.cfg
        k = cluster.kubectl
        k("create", "namespace", NAMESPACE)
        client_node = cfg.node_name(0)
        k("create", "-f", "-", input=json.dumps(client_pod(client_node)))
        t1 = time.monotonic()
        asyncio.run(create_services(cluster, services(args.services)))
        t_svcs = time.monotonic() - t1
        wait_for("coredns Deployment Available", lambda: coredns_available(cluster), 30)
        replicas = json.loads(k("get", "deploy", "coredns", "-n", "kube-system", "-o", "json"))["spec"]["replicas"]
        dns_pods = wait_pods_ready(cluster, "k8s-app=kube-dns", replicas, "kube-system")
        # The direct coredns target is preferably on the other node than the client, and the echo
        # pod goes on that pod's node: both pod-IP targets then take the same path.
        direct = next((p for p in dns_pods if p["spec"]["nodeName"] != client_node), dns_pods[0])
        k("create", "-f", "-", input=json.dumps(echo_pod(direct["spec"]["nodeName"])))
        pods = {p["metadata"]["name"]: p for p in wait_pods_ready(cluster, "bench=dns", 2, NAMESPACE)}
        echo = pods["dnsbench-echo"]
        targets = {
            "dns-service": (cfg.dns_service_ip, 53, True),
            "echo-pod": (echo["status"]["podIP"], ECHO_PORT, False),
            "dns-pod": (direct["status"]["podIP"], 53, True),
        }
        t_ready = time.monotonic() - t0
        servers = [p["status"]["podIP"] for p in dns_pods]
        res = run_in_pod(pod_netns(pods["dnsbench-client"]), targets, servers, args)
        load_avg = os.getloadavg()
        placement = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in [*pods.values(), *dns_pods]}
    finally:
        cluster.down()
    total = time.monotonic() - t0

    print(f"cluster: 2 nodes up in {t_up:.1f}s; {args.services} ClusterIP Services POSTed in {t_svcs:.1f}s; "
          f"ready to load after {t_ready:.1f}s; whole run {total:.1f}s")
    print("placement: " + ", ".join(f"{name} on {node}" for name, node in placement.items()))
    print(f"load average at end of the load: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}, "
          f"{os.cpu_count()} CPUs")
    print(f"from pod dnsbench-client's netns: {args.concurrency} concurrent clients, up to {args.queries} "
          f"queries or {args.seconds:g}s per round, {args.rounds} interleaved rounds (median by q/s); "
          f"80% A, 20% SRV")
    labels = {"echo-pod": f"UDP echo pod {targets['echo-pod'][0]}:{ECHO_PORT} (baseline)",
              "dns-pod": f"coredns pod {targets['dns-pod'][0]}:53 (no Service hop)",
              "dns-service": f"cluster DNS Service {cfg.dns_service_ip}:53"}
    med = {name: median_round(res[name]) for name in labels}
    for name, label in labels.items():
        r = med[name]
        bad = sum(x["errors"] for x in res[name])
        lost = sum(x["timeouts"] for x in res[name])
        each = " ".join(f"{x['qps']:.0f}" for x in res[name])
        print(f"{label:48s} {r['qps']:8.0f} q/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   "
              f"(rounds: {each} q/s; "
              f"timeouts {lost}, bad answers {bad})")
    for num, den, label in (("dns-service", "echo-pod", "Service / echo"), ("dns-pod", "echo-pod", "pod IP / echo"),
                            ("dns-service", "dns-pod", "Service / pod IP")):
        a, b = med[num], med[den]
        # Rounds are interleaved, so a round's ratio compares the two under the same background load.
        per_round = statistics.median(x["qps"] / y["qps"] for x, y in zip(res[num], res[den], strict=True))
        print(f"ratio {label + ':':18s} throughput {a['qps'] / b['qps']:.2f} (per-round median {per_round:.2f})   "
              f"p50 x{a['p50_ms'] / b['p50_ms']:.2f}   p99 x{a['p99_ms'] / b['p99_ms']:.2f}")

if __name__ == "__main__":
    main()
