"""The control plane: the API server process, which runs the controller manager (scheduler and
controllers) as a supervised child process, both in the host network namespace.

They are separate processes, as kube-apiserver and kube-controller-manager are: controllers are
clients of the API like any other (list + watch over HTTPS), and on a small machine the API server
then gets a core of its own instead of sharing one event loop with every controller. The child is
in the control plane's process group, so stopping the group stops both, and it asks the kernel to
stop it when the control plane dies: two controller managers must never act on one cluster (a
kube-controller-manager elects a leader for the same reason), and after a `kill -9` of the control
plane, `skiff up` starts a new one on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from skiff.apiserver.certs import ensure_certificates
from skiff.apiserver.server import APIServer
from skiff.config import ClusterConfig
from skiff.lifetime import die_with_parent
from skiff.store import open_store

log = logging.getLogger("skiff.controlplane")

PARENT_ENV = "SKIFF_CONTROLPLANE_PID"  # set for the controller manager by the control plane


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

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = loop.create_task(_supervise_controller_manager(state_dir, stop))
    # Ready as soon as the API answers, so node agents start while the controller manager does;
    # it writes controller-manager.ready once its informers are in sync.
    (state_dir / "controlplane.ready").write_text(str(os.getpid()))

    await stop.wait()
    log.info("shutting down")
    await supervisor
    await server.stop()
    await store.close()


async def _supervise_controller_manager(state_dir: Path, stop: asyncio.Event) -> None:
    """Run `skiff controller-manager` and restart it if it dies, until `stop` is set."""
    (state_dir / "controller-manager.ready").unlink(missing_ok=True)
    log_path = state_dir / "logs" / "controller-manager.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    backoff = 1.0
    while not stop.is_set():
        with open(log_path, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "skiff", "controller-manager", "--state-dir", str(state_dir),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, PARENT_ENV: str(os.getpid())})
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(waiter, 2)
                except TimeoutError:
                    proc.kill()
                    await waiter
            return
        stopper.cancel()
        log.error("controller manager exited with %s; restarting it in %.0f s", proc.returncode, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


async def run_controller_manager(state_dir: Path) -> int:
    """Run every controller until SIGTERM (exit status 0) or until one of them crashes (1): the
    supervisor then restarts the whole process, with back-off, as a kubelet restarts a crashed
    kube-controller-manager, rather than leave the cluster without that controller."""
    from skiff.controllers import manager

    cfg = ClusterConfig.load_dir(state_dir)
    stop = asyncio.Event()
    controllers = await manager.start_all(cfg, state_dir, on_crash=stop.set)
    await asyncio.sleep(0.01)  # let every controller create its informers before waiting on them
    await asyncio.gather(*(i.synced.wait() for i in controllers.ctx.informers.values()))
    (state_dir / "controller-manager.ready").write_text(str(os.getpid()))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await manager.stop_all(controllers)
    return 1 if controllers.crashed else 0


def _logging() -> None:
    logging.basicConfig(level=os.environ.get("SKIFF_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(state_dir: str, listen: list[str] | None = None) -> None:
    _logging()
    asyncio.run(run(Path(state_dir), listen))


def controller_manager_main(state_dir: str) -> int:
    _logging()
    parent = os.environ.get(PARENT_ENV)
    if parent and not die_with_parent(signal.SIGTERM, int(parent)):
        log.error("the control plane (pid %s) is gone; not starting", parent)
        return 1
    return asyncio.run(run_controller_manager(Path(state_dir)))
