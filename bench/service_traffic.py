"""Services in the kernel, in a real cluster: traffic through a ClusterIP, a NodePort and a
LoadBalancer IP as a fraction of the same load sent straight to a pod, and network programming
latency (Service POST -> first TCP connection to its ClusterIP from a pod).

Run as root: .venv/bin/python bench/service_traffic.py [--duration 2] [--rounds 5] [--services 20]

- Load: wrk (-t2 -c20 by default, bounded duration). The ratios that the target applies to compare
  the same backend process reached two ways: one hello-app pod ("solo", on a worker node) behind
  its own LoadBalancer Service, against that pod's IP. The client pod and the NodePort node (the
  control-plane) are on another node, so those Service connections cross nodes, the costliest
  path (kube-proxy's second hop). The LB address is routed to a node that has an endpoint (the
  LoadBalancer controller prefers one), here the backend's own. The ClusterIP and its baseline are
  loaded from inside the client pod's network namespace (`ip netns exec`); the NodePort, the LB IP
  and their baseline from the host. Also shown: the NodePort of the backend's own node, where the
  Service costs only its DNAT.
- Also shown: the same Service types in front of 3 replicas, against the same one-pod baseline.
  Those ratios also carry the cost of spreading the load over three backend processes on a
  2-core machine (more user CPU per request: fewer requests per wakeup, more context switches),
  which is not the proxy's; the bench prints user/system/softirq CPU per request to show it.
- Targets run in interleaved rounds and the median round per target is reported, so other load
  on the machine hits all targets alike. A ratio is the median of per-round ratios (target vs the
  baseline of the same round), which cancels the machine's drift between rounds.
- Programming latency: a small connect loop runs in the client pod's netns; the bench POSTs a
  ClusterIP Service selecting the ready pods and times until that loop's first successful connect.
- Then bench/proxy_sync.py (5,000 Services, one endpoint change) runs as its own process, after
  the cluster is gone, and its summary is printed (skip with --no-proxy-sync).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_workloads import api_session, check_root, pct, pod_netns, wait_pods_ready  # noqa: E402
from tests.support import Cluster  # noqa: E402

HELLO = "gcr.io/google-samples/hello-app:1.0"

def hello_app(name: str, replicas: int, node: str | None = None, service_type: str = "LoadBalancer") -> str:
    """A hello-app Deployment (pinned to `node` if given) behind a Service, both `name`."""
    pin = f"\n      nodeName: {node}" if node else ""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{pin}
      containers:
      - name: hello
        image: {HELLO}
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: {service_type}
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {bench: client}}
spec:
  nodeName: CLIENT_NODE
  containers:
  - {name: pause, image: "registry.k8s.io/pause:3.10"}
"""

# Runs in the client pod's netns. For each "ip port" line: connect until one succeeds (a refused
# or unreachable attempt fails at once; a dropped SYN is cut short by the 20 ms timeout) and
# answer with the CLOCK_MONOTONIC time of that success, which the bench's clock shares.
POLLER = """
import socket, sys, time
for line in sys.stdin:
    host, port = line.split()
    deadline = time.monotonic() + 15
    while True:
        s = socket.socket()
        s.settimeout(0.02)
        try:
            s.connect((host, int(port)))
            print(time.monotonic(), flush=True)
            break
        except OSError:
            if time.monotonic() > deadline:
                print("timeout", flush=True)
                break
            time.sleep(0.0005)
        finally:
            s.close()
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, duration: float, connections: int = 20, threads: int = 2, netns: str | None = None,
        host_header: str | None = None) -> dict:
    """One bounded wrk run: {"rps", "p50" (ms), "p99" (ms), "errors" (socket errors + non-2xx/3xx)}."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if host_header:
        argv += ["-H", f"Host: {host_header}"]
    argv.append(url)
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    before = _cpu_ticks()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30).stdout
    after = _cpu_ticks()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk {url} failed:\n{out}")
    lat = {}
    for q in ("50", "99"):
        lm = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[q] = float(lm.group(1)) * _UNITS[lm.group(2)]
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = float(m.group(1)) * max(1, round(duration))
    cpu = {k: (after[k] - before[k]) / _HZ / requests * 1e6 for k in after}
    return {"rps": float(m.group(1)), "p50": lat["50"], "p99": lat["99"], "cpu_us": cpu,
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}


_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> dict[str, int]:
    """Machine-wide CPU ticks by kind, from /proc/stat (user+nice, system, softirq+irq)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return {"user": f[0] + f[1], "system": f[2], "softirq": f[5] + f[6]}


def interleaved(targets: dict[str, dict], rounds: int, duration: float, **wrk_args) -> dict[str, dict]:
    """Median-by-req/s run per target over `rounds` interleaved rounds, after a 1 s warm-up each; its
    "per_round" holds every round's req/s in round order, for paired ratios (`paired_ratio`)."""
    for t in targets.values():
        wrk(duration=1, **t, **wrk_args)
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, t in targets.items():
            runs[name].append(wrk(duration=duration, **t, **wrk_args))
    return {name: {**sorted(rs, key=lambda r: r["rps"])[len(rs) // 2], "per_round": [r["rps"] for r in rs]}
            for name, rs in runs.items()}


def paired_ratio(r: dict, base: dict) -> float:
    """Median over rounds of (target req/s / baseline req/s in the same round). The machine's speed
    drifts by 10-20% between rounds; a ratio taken within a round cancels that drift, which a ratio
    of the two medians does not."""
    return statistics.median(a / b for a, b in zip(r["per_round"], base["per_round"], strict=True))


def wait_connectable(host: str, port: int, netns: str | None = None, timeout: float = 15) -> None:
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "1", f"http://{host}:{port}/"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    deadline = time.monotonic() + timeout
    while subprocess.run(argv).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}:{port} did not answer within {timeout}s")
        time.sleep(0.1)


def wait_lb_ip(cluster: Cluster, name: str) -> tuple[dict, str]:
    deadline = time.monotonic() + 15
    while True:
        svc = json.loads(cluster.kubectl("get", "svc", name, "-o", "json"))
        lb = (svc["status"].get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip")
        if lb:
            return svc, lb
        if time.monotonic() > deadline:
            raise RuntimeError(f"no LoadBalancer address for {name}")
        time.sleep(0.1)


def lb_node(lb_ip: str) -> str:
    """The node IP the host routes a LoadBalancer address to."""
    out = subprocess.run(["ip", "-j", "route", "get", lb_ip], capture_output=True, text=True).stdout
    return (json.loads(out or "[{}]")[0]).get("gateway", "?")


def setup(cluster: Cluster) -> dict:
    k = cluster.kubectl
    manifests = [hello_app("hello", 3), hello_app("solo", 1, cluster.cfg.node_name(1)),
                 CLIENT.replace("CLIENT_NODE", cluster.cfg.node_name(0))]
    k("apply", "-f", "-", input="\n---".join(manifests))
    hello = wait_pods_ready(cluster, "app=hello", 3)
    solo = wait_pods_ready(cluster, "app=solo", 1)[0]
    client = wait_pods_ready(cluster, "bench=client", 1)[0]
    svc, lb = wait_lb_ip(cluster, "hello")
    solo_svc, solo_lb = wait_lb_ip(cluster, "solo")
    info = {"client_ns": pod_netns(client), "pod_ip": solo["status"]["podIP"], "pod_node": solo["spec"]["nodeName"],
            "pod_node_ip": cluster.cfg.node_ip(1),
            "cluster_ip": svc["spec"]["clusterIP"], "node_port": svc["spec"]["ports"][0]["nodePort"],
            "node_ip": cluster.cfg.node_ip(0), "lb_ip": lb,
            "solo_cluster_ip": solo_svc["spec"]["clusterIP"], "solo_node_port": solo_svc["spec"]["ports"][0]["nodePort"],
            "solo_lb_ip": solo_lb, "solo_lb_node": lb_node(solo_lb),
            "pod_nodes": sorted(p["spec"]["nodeName"] for p in hello), "client_node": client["spec"]["nodeName"]}
    for host, port in ((info["cluster_ip"], 80), (info["solo_cluster_ip"], 80)):
        wait_connectable(host, port, info["client_ns"])
    for host, port in ((info["node_ip"], info["node_port"]), (info["node_ip"], info["solo_node_port"]),
                       (info["pod_node_ip"], info["solo_node_port"]),
                       (lb, 80), (solo_lb, 80)):
        wait_connectable(host, port)
    return info


async def programming_latency(cluster: Cluster, client_ns: str, n: int) -> list[float]:
    poller = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", client_ns, sys.executable, "-c", POLLER,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lat: list[float] = []
    try:
        async with api_session(cluster) as s:
            for i in range(n):
                body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"prog{i}"},
                        "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]}}
                t0 = time.monotonic()
                async with s.post("/api/v1/namespaces/default/services", data=json.dumps(body)) as r:
                    if r.status != 201:
                        raise RuntimeError(f"service create: {r.status} {await r.text()}")
                    ip = (await r.json())["spec"]["clusterIP"]
                poller.stdin.write(f"{ip} 80\n".encode())
                await poller.stdin.drain()
                answer = (await poller.stdout.readline()).decode().strip()
                if answer == "timeout":
                    raise RuntimeError(f"Service {ip}:80 never accepted a connection")
                lat.append(float(answer) - t0)
    finally:
        await close_poller(poller)
    return lat


async def close_poller(poller: asyncio.subprocess.Process) -> None:
    """End a connect loop that reads targets from its stdin: EOF, then a kill if it lingers."""
    poller.stdin.close()
    try:
        await asyncio.wait_for(poller.wait(), 5)
    except TimeoutError:
        poller.kill()
        await poller.wait()


def row(name: str, r: dict, base: dict | None) -> str:
    ratio = f"{paired_ratio(r, base):8.2f}" if base else f"{'-':>8}"
    cpu = r["cpu_us"]
    return (f"{name:36} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:7d} {ratio}   "
            f"{cpu['user']:5.1f} {cpu['system']:6.1f} {cpu['softirq']:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=2, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--services", type=int, default=20, help="Services for the programming latency")
    ap.add_argument("--no-proxy-sync", action="store_true")
    args = ap.parse_args()
    check_root()

    cluster = Cluster(nodes=3)
    try:
        cluster.up()
        info = setup(cluster)
        ns = info["client_ns"]
        pod = f"http://{info['pod_ip']}:8080/"
        targets = {
            # One backend pod, reached directly and through its Service: the data path's cost.
            "pod IP, from a pod (baseline)": {"url": pod, "netns": ns},
            "ClusterIP, from a pod": {"url": f"http://{info['solo_cluster_ip']}/", "netns": ns},
            "pod IP, from the host (baseline)": {"url": pod},
            "NodePort, from the host": {"url": f"http://{info['node_ip']}:{info['solo_node_port']}/"},
            "LoadBalancer IP, from the host": {"url": f"http://{info['solo_lb_ip']}/"},
            # For comparison, not in the target: the NodePort of the backend's own node (no second hop).
            "NodePort on the pod's node, host": {"url": f"http://{info['pod_node_ip']}:{info['solo_node_port']}/"},
            # Three replicas behind the Service, against the same one-pod baselines.
            "3 replicas: ClusterIP, from a pod": {"url": f"http://{info['cluster_ip']}/", "netns": ns},
            "3 replicas: NodePort, from the host": {"url": f"http://{info['node_ip']}:{info['node_port']}/"},
            "3 replicas: LoadBalancer IP, host": {"url": f"http://{info['lb_ip']}/"},
        }
        res = interleaved(targets, args.rounds, args.duration, connections=args.connections, threads=args.threads)
        prog = asyncio.run(programming_latency(cluster, ns, args.services))
        load = os.getloadavg()
    finally:
        cluster.down()

    print(f"load average during run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs; "
          f"client pod and NodePort node: {info['client_node']}; the one backend pod on {info['pod_node']}, "
          f"its LB address routed to node {info['solo_lb_node']}; 3 replicas on {', '.join(info['pod_nodes'])}")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {args.rounds} interleaved rounds "
          f"(median); ratio = median over rounds of req/s vs the same round's baseline of the same client; "
          f"CPU = machine-wide microseconds per request")
    print(f"{'target':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>8}   "
          f"{'user':>5} {'system':>6} {'softirq':>7}")
    pod_base, host_base = res["pod IP, from a pod (baseline)"], res["pod IP, from the host (baseline)"]
    ratios = {}
    for name, r in res.items():
        base = None if "baseline" in name else pod_base if "from a pod" in name else host_base
        if base is not None:
            ratios[name] = paired_ratio(r, base)
        print(row(name, r, base))
    solo = [v for n, v in ratios.items() if not n.startswith("3 replicas") and "pod's node" not in n]
    print(f"target ratio >= 0.9 (one backend, Service vs pod IP): {'met' if min(solo) >= 0.9 else 'NOT met'} "
          f"(lowest {min(solo):.2f}); with 3 replicas: lowest {min(v for n, v in ratios.items() if n.startswith('3')):.2f}")
    print(f"network programming latency, Service POST -> first connect to ClusterIP from a pod, "
          f"{len(prog)} Services: p50 {statistics.median(prog) * 1000:.0f} ms   p99 {pct(prog, 0.99) * 1000:.0f} ms"
          f"   max {max(prog) * 1000:.0f} ms")
    if not args.no_proxy_sync:
        print("bench/proxy_sync.py (5,000 Services / 25,000 endpoints, scratch netns, no cluster):")
        out = subprocess.run([sys.executable, str(Path(__file__).with_name("proxy_sync.py"))],
                             capture_output=True, text=True, timeout=300)
        for line in (out.stdout + out.stderr).strip().splitlines():
            print("  " + line)


if __name__ == "__main__":
    main()
