"""Runs the proxy's worker processes and hands them route tables.

Why the parent watches the API and workers don't: one set of watches instead of N on the API
server, every worker switches to the same table generation, and workers stay pure data plane.
Each worker gets a socketpair; the parent sends pickled tables (see proxy.encode_message) and waits
for each worker's acknowledgement, so `update()` returning means every worker routes by the new
table. A worker swaps one reference, so open keep-alive connections carry on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys

from skiff.ingress.proxy import encode_message, read_message
from skiff.ingress.routes import RouteTable

log = logging.getLogger("skiff.ingress.supervisor")


class _WorkerHandle:
    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer


class ProxySupervisor:
    """`http`/`https` are (host, port) or None; port 0 picks a free port shared by all workers."""

    def __init__(self, http: tuple[str, int] | None = ("0.0.0.0", 80),
                 https: tuple[str, int] | None = ("0.0.0.0", 443), workers: int | None = None,
                 access_log: bool = True, stdout: int | None = None) -> None:
        self.http = http
        self.https = https
        self.n = workers or os.cpu_count() or 1
        self.access_log = access_log
        self.stdout = stdout
        self.workers: list[_WorkerHandle] = []
        self.generation = 0
        self.table = RouteTable()
        self._lock = asyncio.Lock()
        self._probes: list[socket.socket] = []

    @property
    def http_port(self) -> int:
        return self.http[1] if self.http else 0

    @property
    def https_port(self) -> int:
        return self.https[1] if self.https else 0

    def _resolve_port(self, addr: tuple[str, int] | None) -> tuple[str, int] | None:
        if addr is None or addr[1] != 0:
            return addr
        # Bound (not listening, so it takes no connections) with SO_REUSEPORT until the workers
        # have bound the same port, so nobody else gets it in between.
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr[0], 0))
        self._probes.append(s)
        return addr[0], s.getsockname()[1]

    async def start(self, table: RouteTable | None = None, fake_cert: tuple[bytes, bytes] | None = None,
                    timeout: float = 20.0) -> None:
        from skiff.ingress import tls
        self.http = self._resolve_port(self.http)
        self.https = self._resolve_port(self.https)
        if table is not None:
            self.table = table
        self.generation = self.table.generation
        cert = fake_cert or (tls.fake_certificate() if self.https else None)
        try:
            await asyncio.wait_for(asyncio.gather(*(self._spawn(cert) for _ in range(self.n))), timeout)
        except BaseException:
            await self.stop()
            raise
        finally:
            for s in self._probes:
                s.close()
            self._probes = []

    async def _spawn(self, cert: tuple[bytes, bytes] | None) -> None:
        ours, theirs = socket.socketpair()
        args = [sys.executable, "-m", "skiff.ingress.proxy", "--control-fd", str(theirs.fileno())]
        if self.http:
            args += ["--http", f"{self.http[0]}:{self.http[1]}"]
        if self.https:
            args += ["--https", f"{self.https[0]}:{self.https[1]}"]
        if not self.access_log:
            args.append("--no-access-log")
        proc = await asyncio.create_subprocess_exec(*args, pass_fds=(theirs.fileno(),),
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=self.stdout)
        theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        handle = _WorkerHandle(proc, reader, writer)
        self.workers.append(handle)
        writer.write(encode_message({"table": self.table, "fake_cert": cert}))
        kind, _ = await read_message(reader)
        if kind != "ready":
            raise RuntimeError(f"proxy worker {proc.pid} did not start")

    async def update(self, table: RouteTable, timeout: float = 10.0) -> None:
        """Send a new table to every worker; returns once all of them route by it."""
        async with self._lock:
            self.generation += 1
            table.generation = self.generation
            self.table = table
            msg = encode_message(("table", table))
            for w in self.workers:
                w.writer.write(msg)

            async def ack(w: _WorkerHandle) -> None:
                while True:
                    kind, gen = await read_message(w.reader)
                    if kind == "ack" and gen == table.generation:
                        return
            await asyncio.wait_for(asyncio.gather(*(ack(w) for w in self.workers)), timeout)

    def alive(self) -> bool:
        return bool(self.workers) and all(w.proc.returncode is None for w in self.workers)

    async def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.writer.write(encode_message(("stop", None)))
                w.writer.close()
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 3.0)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
        self.workers = []
