"""`python -m skiff.ingress`: the Ingress controller (image skiff/ingress-controller).

The parent process watches the API (source.py), writes Ingress status, serves /healthz on 10254
like ingress-nginx, and runs the proxy workers (supervisor.py) that carry the traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from aiohttp import web

from skiff.ingress.manifests import CLASS_NAME, CONTROLLER, HEALTH_PORT, NAME, NAMESPACE
from skiff.ingress.routes import RouteTable
from skiff.ingress.supervisor import ProxySupervisor

log = logging.getLogger("skiff.ingress")


async def run(args: argparse.Namespace) -> None:
    from skiff.client.rest import Client
    from skiff.ingress.source import IngressSource

    sup = ProxySupervisor((args.bind_address, args.http_port),
                          (args.bind_address, args.https_port) if args.https_port else None,
                          workers=args.workers)
    await sup.start(RouteTable())
    client = Client.for_state_dir(os.environ["SKIFF_STATE_DIR"], in_cluster=True,
                                  user_agent="skiff-ingress-controller")
    source = IngressSource(client, sup.update, args.ingress_class, args.controller_class, args.publish_service)

    async def healthz(_: web.Request) -> web.Response:
        if sup.alive() and source.synced.is_set():
            return web.Response(text="ok")
        return web.Response(status=500, text="not ready: " + ("waiting for the first sync" if sup.alive()
                                                               else "proxy workers are not running"))
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.health_port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await source.start()
    log.info("serving Ingresses of class %s on :%d and :%d with %d workers", args.ingress_class,
             args.http_port, args.https_port, sup.n)

    async def watch_workers() -> None:
        while sup.alive():
            await asyncio.sleep(1.0)
        log.error("a proxy worker exited; stopping so the kubelet restarts us")
        stop.set()
    watcher = loop.create_task(watch_workers())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await source.stop()
        await sup.stop()
        await runner.cleanup()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="skiff.ingress", description="Skiff's Ingress controller")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--https-port", type=int, default=443, help="0 disables HTTPS")
    ap.add_argument("--health-port", type=int, default=HEALTH_PORT)
    ap.add_argument("--bind-address", default="0.0.0.0")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ingress-class", default=CLASS_NAME)
    ap.add_argument("--controller-class", default=CONTROLLER)
    ap.add_argument("--publish-service", default=f"{NAMESPACE}/{NAME}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
