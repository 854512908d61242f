"""Container lifecycle hook handlers (skiff.node.lifecycle), with a real local HTTP server."""

from __future__ import annotations

import asyncio
import time

from skiff.node.lifecycle import run_handler
from skiff.node.runtime import ExecResult


async def _no_exec(argv, timeout):
    raise AssertionError("no exec expected")


def test_sleep_is_bounded_by_the_time_left():
    async def main():
        t0 = time.monotonic()
        ok, _ = await run_handler({"sleep": {"seconds": 5}}, "127.0.0.1", {}, _no_exec, 0.2)
        return ok, time.monotonic() - t0
    ok, took = asyncio.run(main())
    assert ok and 0.15 < took < 1


async def _host_exec(argv, timeout):
    """Runs the hook's command as a real process (here on the host rather than in a pod)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return ExecResult(exit_code=proc.returncode, stdout=out, stderr=err)


def test_exec_and_http_handlers_report_failure():

    async def main():
        async def serve(reader, writer):
            await reader.readline()
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            http = await run_handler({"httpGet": {"port": "web", "path": "/quit"}}, "127.0.0.1",
                                     {"ports": [{"name": "web", "containerPort": port}]}, _no_exec, 2)
        finally:
            server.close()
        ex = await run_handler({"exec": {"command": ["sh", "-c", "echo nope >&2; exit 1"]}}, "127.0.0.1", {},
                               _host_exec, 2)
        ok = await run_handler({"exec": {"command": ["true"]}}, "127.0.0.1", {}, _host_exec, 2)
        empty = await run_handler({}, "127.0.0.1", {}, _no_exec, 2)
        return http, ex, ok, empty
    http, ex, ok, empty = asyncio.run(main())
    assert http == (False, "HTTP probe failed with statuscode: 500")
    assert ex == (False, "nope\n") and ok == (True, "")
    assert empty[0] is False
