"""Cluster DNS throughput and latency on loopback, against a UDP echo responder as the baseline.

    .venv/bin/python bench/dns_qps.py [--services 1000] [--queries 20000] [--seconds 10] [--concurrency 32]

Runs the Skiff DNS server (a zone of N Services with one ready endpoint each) in a child
process, then a trivial UDP echo responder in another, and drives both with the same
dnspython-based load generator: `concurrency` workers, each with its own socket and one query
in flight, cycling through A and SRV questions for the zone's names. Both runs stop after
`queries` answers or `seconds`, whichever comes first. Prints queries/s, p50/p99 latency and
the ratio to the echo baseline, and the time from starting `python -m skiff.dns` to its first
answer. No root needed; everything stays on 127.0.0.x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402


def zone_objects(n: int) -> list[dict]:
    objs = []
    for i in range(n):
        name = f"svc{i}"
        objs.append({"kind": "Service", "metadata": {"name": name, "namespace": "bench"},
                     "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250}.{i % 250 + 2}",
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        objs.append({"kind": "EndpointSlice", "addressType": "IPv4",
                     "metadata": {"name": f"{name}-x", "namespace": "bench",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                     "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 2}"],
                                    "conditions": {"ready": True}}]})
    return objs


# ---- child processes -----------------------------------------------------------------------
async def serve_dns(listen: str, n: int) -> None:
    from skiff.dns.records import Zone
    from skiff.dns.server import DNSServer

    zone = Zone.from_objects(zone_objects(n), reverse_cidrs=["10.96.0.0/12"])
    server = DNSServer(zone, listen, 0, upstreams=[], health_port=None, ready_port=None)
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.transport.sendto(data, addr)


async def serve_echo(listen: str) -> None:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Echo, local_addr=(listen, 0))
    print(transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()


def spawn(mode: str, listen: str, n: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--listen", listen, "--services", str(n)],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


# ---- load generator ------------------------------------------------------------------------
class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None

    def datagram_received(self, data, addr) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def load(addr: tuple[str, int], queries: list[bytes], total: int, seconds: float, concurrency: int,
               check: bool) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = timeouts = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(total))

    async def worker(offset: int) -> None:
        nonlocal errors, timeouts
        transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=addr)
        try:
            i = offset
            for _ in counter:
                if time.perf_counter() > deadline:
                    return
                wire = queries[i % len(queries)]
                i += 1
                proto.waiter = loop.create_future()
                t0 = time.perf_counter()
                transport.sendto(wire)
                try:
                    data = await asyncio.wait_for(proto.waiter, 1.0)
                except TimeoutError:
                    timeouts += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                msg = dns.message.from_wire(data)  # the client parses every reply in both runs
                if check and (msg.rcode() != dns.rcode.NOERROR or not msg.answer):
                    errors += 1
        finally:
            transport.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k * 7919) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"answered": len(latencies), "elapsed": elapsed, "qps": len(latencies) / elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "errors": errors, "timeouts": timeouts}


def startup_time(listen: str) -> float:
    """Seconds from exec of `python -m skiff.dns` to its first answer over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((listen, 0))
        port = s.getsockname()[1]
    q = dns.message.make_query("dns-version.cluster.local.", dns.rdatatype.TXT).to_wire()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "skiff.dns", "--listen", listen, "--port", str(port),
                             "--health-port", "0", "--ready-port", "0", "--lameduck", "0", "--upstream",
                             "127.0.0.1:9"], cwd=ROOT, stderr=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if k != "SKIFF_STATE_DIR"})
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.005)
            while time.perf_counter() - t0 < 10:
                s.sendto(q, (listen, port))
                try:
                    s.recv(512)
                    return time.perf_counter() - t0
                except OSError:
                    continue
        raise RuntimeError("skiff.dns did not answer within 10 s")
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--child", choices=("dns", "echo"))
    ap.add_argument("--listen", default="")
    args = ap.parse_args()
    if args.child == "dns":
        asyncio.run(serve_dns(args.listen, args.services))
        return
    if args.child == "echo":
        asyncio.run(serve_echo(args.listen))
        return

    listen = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
    rng = random.Random(1)
    queries = []
    for _ in range(2000):
        i = rng.randrange(args.services)
        if rng.random() < 0.8:
            q = dns.message.make_query(f"svc{i}.bench.svc.cluster.local.", dns.rdatatype.A)
        else:
            q = dns.message.make_query(f"_http._tcp.svc{i}.bench.svc.cluster.local.", dns.rdatatype.SRV)
        queries.append(q.to_wire())

    results = {}
    for mode in ("echo", "dns"):
        proc, port = spawn(mode, listen, args.services)
        try:
            asyncio.run(load((listen, port), queries[:200], 2000, 2.0, args.concurrency, mode == "dns"))  # warm-up
            results[mode] = asyncio.run(load((listen, port), queries, args.queries, args.seconds,
                                             args.concurrency, mode == "dns"))
        finally:
            proc.terminate()
            proc.wait(5)

    starts = sorted(startup_time(listen) for _ in range(5))
    print(f"zone: {args.services} services; load: {args.concurrency} concurrent clients, "
          f"up to {args.queries} queries or {args.seconds:.0f} s; 80% A, 20% SRV")
    for mode, label in (("echo", "UDP echo baseline"), ("dns", "skiff.dns")):
        r = results[mode]
        print(f"{label:18s} {r['qps']:9.0f} q/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   "
              f"answered {r['answered']}  timeouts {r['timeouts']}  bad answers {r['errors']}")
    print(f"ratio skiff.dns / echo: throughput {results['dns']['qps'] / results['echo']['qps']:.2f}, "
          f"p50 latency x{results['dns']['p50_ms'] / results['echo']['p50_ms']:.2f}")
    print(f"start-up to first answer (python -m skiff.dns): median {1000 * statistics.median(starts):.0f} ms, "
          f"min {1000 * starts[0]:.0f} ms")


if __name__ == "__main__":
    main()
