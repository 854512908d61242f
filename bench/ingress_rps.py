"""Ingress proxy throughput: the same wrk load straight to a backend, through Skiff's proxy, and
through nginx (a reverse proxy with upstream keep-alive to the same backends), all on loopback.

    .venv/bin/python bench/ingress_rps.py [--duration 5] [--connections 50] [--workers 2]

Prints requests/s and p50/p99 latency per target, and Skiff's numbers as ratios to nginx's.
Goal: Skiff >= 0.5 x nginx requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import service_traffic  # noqa: E402
from skiff.ingress.routes import build_route_table  # noqa: E402
from skiff.ingress.supervisor import ProxySupervisor  # noqa: E402

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = HOST) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {host}:{port}") from None
            time.sleep(0.05)


def start_backends(n: int) -> tuple[list[subprocess.Popen], list[int]]:
    """hello-app processes (Skiff's built-in image): a fast asyncio HTTP server."""
    procs, ports = [], []
    for _ in range(n):
        port = free_port()
        env = {**os.environ, "PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "skiff.images", "hello-app"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(port)
    for p in ports:
        wait_port(p)
    return procs, ports


def start_nginx(upstreams: list[str], workers: int, tmp: Path) -> tuple[subprocess.Popen, int]:
    """nginx as a reverse proxy with upstream keep-alive to `upstreams` ("ip:port"), on a free
    loopback port, in the foreground; stop it with stop_nginx()."""
    port = free_port()
    servers = "\n".join(f"    server {u};" for u in upstreams)
    conf = f"""
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {tmp}/access.log combined buffer=64k flush=1s;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream backends {{
{servers}
    keepalive 64;
  }}
  server {{
    listen {HOST}:{port} reuseport;
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""
    (tmp / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except BaseException:
        stop_nginx(proc)
        raise
    return proc, port


def stop_nginx(proc: subprocess.Popen) -> None:
    # SIGTERM is nginx's fast shutdown: the master stops its workers before it exits.
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(port: int, duration: float, connections: int, threads: int) -> dict:
    return service_traffic.wrk(f"http://{HOST}:{port}/", duration, connections, threads, host_header="bench.test")


async def run_skiff(backend_ports: list[int], workers: int) -> ProxySupervisor:
    svc = {"metadata": {"name": "hello", "namespace": "bench"}, "spec": {"ports": [{"port": 80}]}}
    slices = [{"metadata": {"name": f"hello-{p}", "namespace": "bench",
                            "labels": {"kubernetes.io/service-name": "hello"}},
               "ports": [{"name": "", "port": p}], "endpoints": [{"addresses": [HOST]}]} for p in backend_ports]
    ing = {"metadata": {"name": "bench", "namespace": "bench", "creationTimestamp": "2024-01-01T00:00:00Z"},
           "spec": {"ingressClassName": "skiff", "rules": [{"host": "bench.test", "http": {"paths": [
               {"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "hello", "port": {"number": 80}}}}]}}]}}
    table = build_route_table([ing], [svc], slices, [], [])
    sup = ProxySupervisor((HOST, 0), None, workers=workers, stdout=subprocess.DEVNULL)
    await sup.start(table)
    return sup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=3, help="seconds per round and target")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="proxy workers, for both")
    ap.add_argument("--backends", type=int, default=2)
    args = ap.parse_args()

    procs, ports = start_backends(args.backends)
    tmp = Path(tempfile.mkdtemp(prefix="skiff-bench-nginx-"))
    nginx = None
    loop = asyncio.new_event_loop()
    sup = None
    try:
        nginx, nginx_port = start_nginx([f"{HOST}:{p}" for p in ports], args.workers, tmp)
        sup = loop.run_until_complete(run_skiff(ports, args.workers))
        targets = (("backend", ports[0]), ("nginx", nginx_port), ("skiff", sup.http_port))
        for _, port in targets:
            wrk(port, 1, args.connections, args.threads)  # warm pools and caches
        # Interleaved rounds, median per target: other load on the machine hits all targets alike.
        runs: dict[str, list[dict]] = {name: [] for name, _ in targets}
        for _ in range(args.rounds):
            for name, port in targets:
                runs[name].append(wrk(port, args.duration, args.connections, args.threads))
        results = {name: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for name, rs in runs.items()}
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            print(f"warning: backend processes {dead} died during the run", file=sys.stderr)
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s x {args.rounds} interleaved rounds "
              f"(median), {args.workers} proxy workers, "
              f"{args.backends} hello-app backends, {os.cpu_count()} CPUs")
        print(f"{'target':10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8}")
        for name, r in results.items():
            print(f"{name:10} {r['rps']:10.0f} {r['p50']:8.3f} {r['p99']:8.3f} {r['errors']:8d}")
        s, n, b = results["skiff"], results["nginx"], results["backend"]
        print(f"skiff/nginx: req/s {s['rps'] / n['rps']:.2f}x  p50 {s['p50'] / n['p50']:.2f}x  "
              f"p99 {s['p99'] / n['p99']:.2f}x")
        print(f"skiff/backend-direct: req/s {s['rps'] / b['rps']:.2f}x  nginx/backend-direct: "
              f"{n['rps'] / b['rps']:.2f}x")
        print("goal skiff >= 0.5 x nginx req/s:", "met" if s["rps"] >= 0.5 * n["rps"] else "NOT met")
    finally:
        if sup is not None:
            loop.run_until_complete(sup.stop())
        loop.close()
        if nginx is not None:
            stop_nginx(nginx)
        for p in procs:
            p.terminate()
            p.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
