import asyncio
import time

import pytest

from skiff.node import probes
from skiff.node.runtime import ExecResult


@pytest.fixture
async def http_server():
    """A loopback HTTP server whose status code the test sets; records request headers."""
    state = {"code": 200, "delay": 0.0, "requests": []}

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        state["requests"].append(head.decode())
        if state["delay"]:
            await asyncio.sleep(state["delay"])
        writer.write(f"HTTP/1.1 {state['code']} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state["port"] = server.sockets[0].getsockname()[1]
    yield state
    server.close()
    await server.wait_closed()


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_http_get_codes_headers_and_refused(http_server):
    port = http_server["port"]
    ok, _ = await probes.http_get("127.0.0.1", port, "/healthz", headers=[{"name": "X-Custom", "value": "1"}])
    assert ok
    req = http_server["requests"][-1]
    assert req.startswith("GET /healthz HTTP/1.1") and "X-Custom: 1" in req and "kube-probe/1.33" in req
    http_server["code"] = 302
    assert (await probes.http_get("127.0.0.1", port))[0]
    http_server["code"] = 500
    assert await probes.http_get("127.0.0.1", port) == (False, "HTTP probe failed with statuscode: 500")
    dead = free_port()
    ok, msg = await probes.http_get("127.0.0.1", dead, "/x")
    assert not ok
    assert msg == f'Get "http://127.0.0.1:{dead}/x": dial tcp 127.0.0.1:{dead}: connect: connection refused'


async def test_http_timeout(http_server):
    http_server["delay"] = 0.5
    t0 = time.monotonic()
    ok, msg = await probes.http_get("127.0.0.1", http_server["port"], timeout=0.1)
    assert not ok and "context deadline exceeded" in msg
    assert time.monotonic() - t0 < 0.4


async def test_tcp_socket(http_server):
    assert await probes.tcp_socket("127.0.0.1", http_server["port"]) == (True, "")
    dead = free_port()
    assert await probes.tcp_socket("127.0.0.1", dead) == (
        False, f"dial tcp 127.0.0.1:{dead}: connect: connection refused")


async def test_exec_check_and_named_port():
    async def run(argv, timeout):
        return ExecResult(0 if argv[0] == "true" else 1, b"", b"boom\n" if argv[0] != "true" else b"")

    assert (await probes.exec_check(run, ["true"], 1))[0]
    assert await probes.exec_check(run, ["false"], 1) == (False, "boom\n")
    assert probes.resolve_port("http", {"ports": [{"name": "http", "containerPort": 8080}]}) == 8080
    with pytest.raises(ValueError):
        probes.resolve_port("nope", {"name": "c"})


async def test_readiness_thresholds_against_real_server(http_server):
    """failureThreshold 2 / successThreshold 2 with 50 ms periods, driven by a real server."""
    results: list[bool] = []
    failures: list[str] = []
    spec = {"httpGet": {"port": http_server["port"], "path": "/ready"}, "periodSeconds": 0.05,
            "timeoutSeconds": 1, "successThreshold": 2, "failureThreshold": 2}
    check = probes.make_check(spec, "127.0.0.1", {"name": "c"}, None)
    w = probes.ProbeWorker(probes.READINESS, spec, check, results.append, failures.append)
    w.start()

    async def until(cond):
        while not cond():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(until(lambda: results), 1)
        # Two successes were needed: the second probe ran one period after the first.
        assert results == [True] and len(http_server["requests"]) == 2
        http_server["code"] = 503
        await asyncio.wait_for(until(lambda: failures), 1)
        assert results == [True]  # one failure is not enough
        await asyncio.wait_for(until(lambda: len(results) == 2), 1)
        assert results == [True, False] and len(failures) == 2
        assert failures[0] == "HTTP probe failed with statuscode: 503"
    finally:
        w.stop()


async def test_liveness_stops_after_failure_and_initial_delay():
    calls: list[float] = []

    async def failing():
        calls.append(time.monotonic())
        return False, "nope"

    results: list[bool] = []
    spec = {"initialDelaySeconds": 0.1, "periodSeconds": 0.02, "failureThreshold": 3}
    t0 = time.monotonic()
    w = probes.ProbeWorker(probes.LIVENESS, spec, failing, results.append, started_at=time.time())
    await asyncio.wait_for(w.run(), 2)
    assert results == [False]
    assert len(calls) == 3  # exactly failureThreshold runs, then the worker stops
    assert calls[0] - t0 >= 0.09


def test_observe_counts_consecutive_results():
    w = probes.ProbeWorker(probes.READINESS, {"failureThreshold": 3, "successThreshold": 1}, None, print)
    assert w.observe(True) is True
    assert [w.observe(False), w.observe(False), w.observe(True)] == [False, False, False]
    assert [w.observe(False), w.observe(False), w.observe(False)] == [False, False, True]
    assert w.result is False
