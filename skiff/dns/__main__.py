"""`python -m skiff.dns`: the cluster DNS server (image `skiff/dns`).

    python -m skiff.dns [--listen 0.0.0.0] [--port 53] [--upstream IP[:PORT] ...]
                        [--domain cluster.local] [--service-cidr CIDR] [--pod-cidr CIDR ...]

The sockets are bound before the API client is even imported, so the pod answers (SERVFAIL for
unknown cluster names, forwarding for the rest) within a few hundred milliseconds; /ready turns
200 once the informers have synced. Without SKIFF_STATE_DIR (or --state-dir) it runs with an
empty zone and no API, which is useful for trying the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="skiff-dns", description="Skiff cluster DNS (the CoreDNS role)")
    p.add_argument("--listen", default="0.0.0.0", help="address to serve DNS, health and readiness on")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--upstream", action="append", default=[], metavar="IP[:PORT]",
                   help="resolver for names outside the cluster (repeatable); default: /etc/resolv.conf")
    p.add_argument("--domain", default="cluster.local", help="the cluster domain")
    p.add_argument("--service-cidr", action="append", default=[], help="reverse lookups answered locally")
    p.add_argument("--pod-cidr", action="append", default=[], help="reverse lookups answered locally")
    p.add_argument("--dns-ip", action="append", default=[], help="the kube-dns Service IP, for ns.dns.<domain>")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--pods", choices=("disabled", "insecure", "verified"), default="insecure")
    p.add_argument("--health-port", type=int, default=8080)
    p.add_argument("--ready-port", type=int, default=8181)
    p.add_argument("--lameduck", type=float, default=5.0,
                   help="seconds to keep answering after SIGTERM while /ready fails")
    p.add_argument("--state-dir", default=os.environ.get("SKIFF_STATE_DIR", ""),
                   help="cluster state directory (default: $SKIFF_STATE_DIR)")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    from skiff.dns.records import Zone
    from skiff.dns.server import DNSServer

    zone = Zone(args.domain, ttl=args.ttl, pods=args.pods, reverse_cidrs=args.service_cidr + args.pod_cidr,
                dns_ips=args.dns_ip, synced=not args.state_dir)
    server = DNSServer(zone, args.listen, args.port, upstreams=args.upstream or None,
                       health_port=args.health_port, ready_port=args.ready_port)
    await server.start()
    logging.getLogger("skiff.dns").info("serving DNS on %s:%d (upstreams %s)", args.listen, server.port,
                                        server.upstreams)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    source = None
    source_task = None
    if args.state_dir:
        os.environ["SKIFF_STATE_DIR"] = args.state_dir
        from skiff.dns.source import ZoneSource

        source = ZoneSource.in_cluster(zone)
        source_task = loop.create_task(source.run())
    await stop.wait()
    # Lame duck: readiness fails at once so the Service drops us, queries keep working meanwhile.
    server.shutting_down = True
    if args.lameduck > 0:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), args.lameduck)
        except TimeoutError:
            pass
    if source_task is not None:
        source_task.cancel()
    if source is not None:
        await source.stop()
    await server.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
