"""The control plane process: the API server and the controllers, in the host network namespace.

Controllers are clients of the API like any other (list + watch over HTTPS), so they could run
anywhere; they share this process only to save a Python start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from skiff.apiserver.certs import ensure_certificates
from skiff.apiserver.server import APIServer
from skiff.config import ClusterConfig
from skiff.store import open_store

log = logging.getLogger("skiff.controlplane")


async def run(state_dir: Path, listen: list[str] | None = None) -> None:
    cfg = ClusterConfig.load_dir(state_dir)
    pki = state_dir / "pki"
    ensure_certificates(pki, cfg.name, ["127.0.0.1", cfg.host_ip, cfg.kubernetes_service_ip],
                        ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         f"kubernetes.default.svc.{cfg.cluster_domain}"])
    store = open_store(str(state_dir / "state.db"))
    await store.start()
    server = APIServer(cfg, store)
    await server.start(pki, listen or ["127.0.0.1", cfg.host_ip])
    log.info("API server listening on %s, port %d", ", ".join(listen or ["127.0.0.1", cfg.host_ip]), cfg.api_port)

    from skiff.controllers import manager

    controllers = await manager.start_all(cfg, state_dir)
    (state_dir / "controlplane.ready").write_text(str(os.getpid()))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await manager.stop_all(controllers)
    await server.stop()
    await store.close()


def main(state_dir: str, listen: list[str] | None = None) -> None:
    logging.basicConfig(level=os.environ.get("SKIFF_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(Path(state_dir), listen))
