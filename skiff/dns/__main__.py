"""`python -m skiff.dns`: the cluster DNS server (image `skiff/dns`).

    python -m skiff.dns [--listen 0.0.0.0] [--port 53] [--upstream IP[:PORT] ...]
                        [--domain cluster.local] [--service-cidr CIDR] [--pod-cidr CIDR ...]
                        [-conf /etc/coredns/Corefile]

With -conf (as CoreDNS is started), the Corefile decides forwarding, hosts entries, query logging
and the kubernetes plugin's ttl and pods mode (skiff.dns.corefile); it is read again within
about 2 s of a change, and a Corefile that does not parse is refused at start and kept out on
reload, with CoreDNS's error.

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
    p.add_argument("-conf", "--conf", default="", metavar="FILE", help="a Corefile, as CoreDNS's -conf")
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
    corefile = None
    if args.conf:
        from skiff.dns.corefile import CorefileError, parse

        try:
            with open(args.conf) as f:
                corefile = parse(f.read(), args.conf)
        except (OSError, CorefileError) as e:
            logging.getLogger("skiff.dns").error("%s", e)
            raise SystemExit(1) from None
    server = DNSServer(zone, args.listen, args.port, upstreams=args.upstream or None,
                       health_port=args.health_port, ready_port=args.ready_port)
    await server.start()
    reload_task = None
    if corefile is not None:
        server.apply_corefile(corefile)
        reload_task = asyncio.get_running_loop().create_task(_reload(server, args.conf))
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
    if reload_task is not None:
        reload_task.cancel()
    if source_task is not None:
        source_task.cancel()
    if source is not None:
        await source.stop()
    await server.close()


RELOAD_CHECK_SECONDS = 2.0


async def _reload(server, path: str) -> None:
    """CoreDNS's reload plugin, checking every 2 s instead of 30: a ConfigMap volume swaps the file
    when the ConfigMap changes; a Corefile that does not parse is logged and the old one kept."""
    from skiff.dns.corefile import CorefileError, parse

    log = logging.getLogger("skiff.dns")

    def read() -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None

    current = read()
    while True:
        await asyncio.sleep(RELOAD_CHECK_SECONDS)
        text = read()
        if text is None or text == current:
            continue
        current = text
        try:
            server.apply_corefile(parse(text, path))
        except CorefileError as e:
            log.error("Restart failed: %s (the previous Corefile stays in force)", e)
            continue
        log.info("Reloading complete")


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
