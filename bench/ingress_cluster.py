"""Ingress in a real cluster: the same wrk load straight to a backend pod, through Skiff's Ingress
controller (the LoadBalancer address of skiff-system/skiff-ingress, routed by Host header), and
through nginx started by the bench on the host, reverse-proxying to the same pod IPs.

Run as root: .venv/bin/python bench/ingress_cluster.py [--duration 3] [--rounds 3] [--connections 50]

nginx gets as many workers as Skiff's controller (one per CPU) and keep-alive to its upstreams, as
ingress-nginx configures it. Targets run in interleaved rounds; the median round per target is
printed, with Skiff's req/s as a ratio of nginx's (goal >= 0.5). The cluster and nginx are removed
before the bench exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_workloads import check_root, wait_pods_ready  # noqa: E402
from bench.ingress_rps import start_nginx, stop_nginx  # noqa: E402
from bench.service_traffic import hello_app, interleaved  # noqa: E402
from tests.support import Cluster, curl  # noqa: E402

HOST = "bench.test"

APP = hello_app("hello", 3, service_type="ClusterIP") + f"""---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: bench}}
spec:
  ingressClassName: skiff
  rules:
  - host: {HOST}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: hello, port: {{number: 80}}}}}}}}
"""


def ingress_address(cluster: Cluster, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        svc = json.loads(cluster.kubectl("get", "svc", "skiff-ingress", "-n", "skiff-system", "-o", "json"))
        ip = (svc["status"].get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip")
        if ip and "Hello, world!" in curl(f"http://{ip}/", "-H", f"Host: {HOST}", timeout=1).stdout:
            return ip
        if time.monotonic() > deadline:
            raise RuntimeError("the Ingress did not route to hello-app")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    check_root()
    workers = os.cpu_count() or 2

    cluster = Cluster(nodes=3)
    tmp = Path(tempfile.mkdtemp(prefix="skiff-bench-nginx-"))
    nginx = None
    try:
        cluster.up()
        cluster.kubectl("apply", "-f", "-", input=APP)
        pods = wait_pods_ready(cluster, "app=hello", 3)
        pod_ips = [p["status"]["podIP"] for p in pods]
        lb = ingress_address(cluster)
        nginx, nginx_port = start_nginx([f"{ip}:8080" for ip in pod_ips], workers, tmp)
        targets = {
            "backend pod (direct)": {"url": f"http://{pod_ips[0]}:8080/"},
            "nginx on the host": {"url": f"http://127.0.0.1:{nginx_port}/"},
            "skiff Ingress (LB IP)": {"url": f"http://{lb}/"},
        }
        res = interleaved(targets, args.rounds, args.duration, connections=args.connections,
                          threads=args.threads, host_header=HOST)
        if nginx.poll() is not None:
            raise RuntimeError("nginx exited during the run:\n" + (tmp / "error.log").read_text())
        load = os.getloadavg()
    finally:
        if nginx is not None:
            stop_nginx(nginx)
        cluster.down()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"load average during run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs; "
          f"3 hello-app pods, {workers} workers for nginx and for Skiff's controller")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s -H 'Host: {HOST}', "
          f"{args.rounds} interleaved rounds (median)")
    print(f"{'target':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in res.items():
        print(f"{name:24} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:7d}")
    s, n, b = res["skiff Ingress (LB IP)"], res["nginx on the host"], res["backend pod (direct)"]
    print(f"skiff/nginx: req/s {s['rps'] / n['rps']:.2f}x  p50 {s['p50'] / n['p50']:.2f}x  p99 {s['p99'] / n['p99']:.2f}x"
          f"   (goal req/s >= 0.5x: {'met' if s['rps'] >= 0.5 * n['rps'] else 'NOT met'})")
    print(f"vs backend direct: skiff {s['rps'] / b['rps']:.2f}x  nginx {n['rps'] / b['rps']:.2f}x")


if __name__ == "__main__":
    main()
